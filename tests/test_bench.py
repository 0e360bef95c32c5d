"""The benchmark package (bench/): its parsers and statistics, and one tiny end-to-end run.

The tiny run loads a small dataset into a fresh migrated database and runs the SQL
scenarios briefly. What it asserts is correctness, never speed: the derived access state
equals its definition, every sampled decision names the path the database's own rule
predicts, both RLS pages equal the explicit service-role pages for every user, and with
many public projects the count through RLS equals the explicit count.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from bench import __main__ as bench_main
from bench import anchors as bench_anchors
from bench import database, queries, report
from bench.cpu import CpuMeter
from bench.http import LoadResult, alternate, combine, parse_wrk, rounds_and_slice
from bench.scale import QUICK
from bench.scenarios import authorize, growth, list_page, memory, public_count
from bench.scenarios import pipeline as pipeline_scenarios
from bench.scenarios import tokens as bench_tokens
from bench.stats import percentile, ratio, summarize
from harness.servers import parent_pid

WRK_REPORT = """\
Running 5s test @ http://127.0.0.1:8000/api/v1/health/live
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    25.77ms   40.12ms 400.00ms   90.00%
    Req/Sec   550.00    100.00   700.00     70.00%
  Latency Distribution
     50%  850.00us
     75%   42.15ms
     90%   66.24ms
     99%    1.20s
  5540 requests in 5.09s, 2.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:   1088.28
Transfer/sec:    422.00KB
"""

TINY = dataclasses.replace(
    QUICK,
    name="tiny",
    users=200,
    teams=20,
    first_generations=300,
    all_generations=1_500,
    authorize_samples_per_path=10,
    authorize_iterations=40,
    list_users=10,
    list_iterations=20,
    public_projects=300,
    count_users=3,
    count_iterations=6,
)


def test_wrk_report_is_parsed_with_units():
    result = parse_wrk(WRK_REPORT)
    assert result.requests_per_second == 1088.28
    assert result.requests == 5540
    assert (result.p50_ms, result.p75_ms, result.p99_ms) == (0.85, 42.15, 1200.0)
    assert result.non_2xx == 3
    assert result.socket_errors == 3


def test_percentiles_are_nearest_rank():
    ordered = [float(value) for value in range(1, 101)]
    assert percentile(ordered, 50) == 50.0
    assert percentile(ordered, 99) == 99.0
    summary = summarize([1000, 2000, 3000, 4000])
    assert (summary.p50, summary.mean) == (2.0, 2.5)
    assert ratio(summary, summarize([1000, 1000]), target=3.0).met


def load(rate: float, p50: float = 1.0, p99: float = 10.0) -> LoadResult:
    return LoadResult(rate, int(rate), p50, p50, p50, p99, non_2xx=0, socket_errors=0)


def test_subject_and_floor_alternate_and_each_round_gives_one_ratio():
    ran: list[str] = []
    subject_rates = iter([400.0, 500.0, 900.0, 450.0, 480.0])
    floor_rates = iter([1000.0, 1000.0, 1000.0, 900.0, 800.0])

    def subject():
        ran.append("subject")
        return load(next(subject_rates))

    def floor():
        ran.append("floor")
        return load(next(floor_rates))

    paired = alternate(subject, floor, rounds=5)
    # the order swaps every round, so a steady drift favours neither side
    assert ran == ["subject", "floor", "floor", "subject"] * 2 + ["subject", "floor"]
    assert paired.ratios("requests_per_second") == [0.4, 0.5, 0.9, 0.5, 0.6]
    assert paired.ratio("requests_per_second") == {
        "median": 0.5,
        "min": 0.4,
        "max": 0.9,
        "rounds": 5,
    }
    combined = combine(paired.subject)
    assert combined["requests_per_second"] == 480.0  # the median slice, not the mean
    assert combined["requests"] == 2730


def test_the_cpu_meter_divides_a_slices_cpu_by_its_requests(db_url):
    class ThisProcess:  # the "server": its one worker is this test's own process
        @staticmethod
        def worker_pids() -> list[int]:
            return [os.getpid()]

    def busy_slice() -> LoadResult:
        spent_until = time.process_time() + 0.3
        while time.process_time() < spent_until:
            pass
        return load(100.0)  # 100 requests

    meter = CpuMeter(ThisProcess(), db_url)
    assert meter.around("subject", busy_slice)() == load(100.0)
    (measured,) = meter.slices["subject"]
    assert 2_800 <= measured["app_us"] <= 4_000  # 0.3 s over 100 requests: 3,000 µs
    assert measured["postgres_us"] < 100  # no backend of that database worked meanwhile
    assert meter.medians() == {"subject": measured}


def test_a_paired_figure_needs_three_rounds():
    with pytest.raises(ValueError, match="at least 3 rounds"):
        alternate(lambda: load(1.0), lambda: load(1.0), rounds=2)
    assert rounds_and_slice(15) == (5, 3)
    assert rounds_and_slice(5) == (3, 1)
    assert rounds_and_slice(3) == (3, 1)  # --quick: 1-second slices


def test_a_round_whose_floor_slice_measured_nothing_gives_no_ratio():
    floors = iter([load(1000.0), load(0.0), load(800.0)])
    paired = alternate(lambda: load(400.0), lambda: next(floors), rounds=3)
    assert paired.ratios("requests_per_second") == [0.4, 0.5]
    assert paired.ratio("requests_per_second")["rounds"] == 2

    silent = alternate(lambda: load(400.0), lambda: load(0.0), rounds=3)
    with pytest.raises(RuntimeError, match="no round's floor slice measured requests_per_second"):
        silent.ratio("requests_per_second")


def test_a_row_shows_the_median_and_the_spread_of_its_rounds():
    row = {
        "scenario": "HTTP something",
        "measured": "1 req/s",
        "baseline": "2 req/s",
        "ratio": 0.52,
        "spread": (0.48, 0.55),
        "ratio_is_share": True,
        "target": "≥ 50%",
        "met": True,
    }
    assert report._row(row) == (
        "| HTTP something | 1 req/s | 2 req/s | 52% (48%\N{EN DASH}55%) |  | ≥ 50% | met |"
    )
    row.update(ratio=1.2, spread=(1.1, 1.31), ratio_is_share=False, target=2.0, anchor="870 ms")
    times = report.TIMES
    assert (
        f"| 1.20{times} (1.10{times}\N{EN DASH}1.31{times}) | 870 ms | ≤ 2.0{times} |"
        in report._row(row)
    )


def test_a_run_cut_short_still_reports_what_it_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    results = {"scale": "quick", "machine": "test", "dataset": {}, "stages": {}}
    _, md_path = report.write(results)
    assert "still running" in md_path.read_text(encoding="utf-8")


def test_a_missing_load_generator_stops_the_run_before_any_work(monkeypatch, tmp_path):
    refuse = tmp_path / "ensure-wrk"
    refuse.write_text("#!/bin/sh\necho 'install wrk' >&2\nexit 1\n", encoding="utf-8")
    refuse.chmod(0o755)
    monkeypatch.setattr(bench_main, "ENSURE_WRK", refuse)
    monkeypatch.setattr(bench_main.shutil, "which", lambda name: None)
    built = []
    monkeypatch.setattr(bench_main.database, "recreate", lambda *a: built.append(a))
    assert bench_main.main(["--quick", "--only", "http_authorize"]) == 2
    assert built == []
    # a scenario that needs neither wrk nor redis-server asks for neither
    assert bench_main.missing_tools({"authorize", "list_page"}) is None


def test_query_files_load_without_comments():
    loaded = queries.load("list_page_explicit")
    assert loaded.startswith("select")
    assert "--" not in loaded
    assert "$1" in loaded


def test_tiny_run_is_correct(fresh_db_url, tmp_path, monkeypatch):
    database.build_schema(fresh_db_url)
    database.load_people_and_projects(fresh_db_url, TINY)
    stages = {}
    loaded = 0
    for stage in TINY.stages:
        database.grow_generations(fresh_db_url, loaded + 1, stage, TINY.share_fraction)
        loaded = stage
        counts = database.check_and_count(fresh_db_url)
        assert counts["generations"] == stage
        assert counts["access_drift"] == 0
        pairs = authorize.samples(fresh_db_url, TINY.authorize_samples_per_path)
        decided = authorize.run(fresh_db_url, pairs, TINY.authorize_iterations)
        assert decided["wrong_answers"] == 0
        assert {"direct_ownership", "project_owner", "project_team", "denied"} <= set(
            decided["by_method"]
        )
        sampled = list_page.users(fresh_db_url, TINY.list_users)
        listed = list_page.run(fresh_db_url, sampled, TINY.list_iterations)
        assert listed["pages_differing"] == 0
        public = list_page.run(fresh_db_url, sampled, TINY.list_iterations, "public_page")
        assert public["pages_differing"] == 0
        stages[str(stage)] = {"authorize": decided, "list_page": listed, "public_page": public}
    counted = public_count.run(fresh_db_url, TINY, verbose=False)
    assert counted["public_projects"] == TINY.public_projects
    assert counted["counts_differing"] == 0
    assert database.access_drift(fresh_db_url) == 0
    results = {
        "scale": "tiny",
        "machine": "test",
        "finished_at": "now",
        "stages": stages,
        "growth": growth.compare(stages, TINY.stages),
        "public_count": counted,
    }
    table = report.markdown(results)
    judged_rows = table.count(" | met |") + table.count(" | **missed** |")
    assert judged_rows == 3 * len(TINY.stages) + len(growth.MEASURED) + 1
    # the measured figures plot: per path at the last stage, and against the table's size
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    report.write(results, plots=True)
    assert {path.name for path in tmp_path.glob("*.png")} == {
        "latency_by_path.png",
        "cost_by_size.png",
    }
    for path in tmp_path.glob("*.png"):
        assert_png(path)


REPO_ROOT = Path(__file__).resolve().parent.parent


def latency(p50: float) -> dict:
    return {"n": 3, "mean": p50, "p50": p50, "p95": p50 * 2, "p99": p50 * 3}


PIPELINE_FIGURES = {
    "pipeline": {
        "submission": {
            "subject": latency(8000.0),
            "baseline": latency(2000.0),
            "overhead_p50_us": 6000.0,
        },
        "webhooks": {
            "subject_per_second": 200.0,
            "baseline_per_second": 2000.0,
            "ratio": 0.1,
            "count": 50,
        },
        "engine": {
            "1": {"submits_per_second": 50.0, "count": 50, "seconds": 1.0},
            "2": {"submits_per_second": 100.0, "count": 50, "seconds": 0.5},
        },
    },
    "live_events": {
        "subject": latency(3000.0),
        "baseline": latency(2000.0),
        "ratio_p50": 1.5,
        "trials": 3,
    },
}


def test_server_sent_events_are_read_whole_and_comments_skipped():
    from bench.pipeline import parse_events

    stream = io.BytesIO(
        b"retry: 3000\n\n"
        b"event: status\nid: queued\ndata: {}\n\n"
        b": keepalive\n\n"
        b"event: status\r\nid: completed\r\ndata: {}\r\n\r\n"
        b"event: status\nid: cut-off"
    )
    assert list(parse_events(stream)) == [("status", "queued"), ("status", "completed")]


def test_pipeline_rows_compare_each_figure_with_its_floor():
    figures, times = PIPELINE_FIGURES["pipeline"], report.TIMES
    submit, hooks, engine = (report._row(row) for row in pipeline_scenarios.rows(figures))
    assert f"| 4.00{times} (+6.00 ms p50) |  | none set |" in submit
    assert "| 200 req/s | 2,000 req/s | 10% |" in hooks
    assert f"| 100 submits/s | 50 submits/s | 2.00{times} |" in engine
    live = report._row(pipeline_scenarios.live_rows(PIPELINE_FIGURES["live_events"])[0])
    assert f"| 3000 / 6000 / 9000 | 2000 / 4000 / 6000 | 1.50{times} |  | none set |" in live


def test_pipeline_scenarios_alone_build_no_dataset(monkeypatch, tmp_path):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    built, asked = [], []
    monkeypatch.setattr(bench_main.database, "recreate", lambda *a: built.append(a))

    def measured(scale, chosen):
        asked.append(pipeline_scenarios.sections_for(chosen))
        return {name: PIPELINE_FIGURES[name] for name in chosen}

    monkeypatch.setattr(bench_main.pipeline, "run", measured)
    assert bench_main.main(["--quick", "--only", "live_events"]) == 0
    assert built == []
    assert asked == [("live_events",)]
    table = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "SSE `status` event" in table
    assert "submits/s" not in table


def test_pipeline_command_measures_every_figure(admin_url, tmp_path):
    """The real thing at a tiny size: fake FAL, worker processes, gunicorn, a live stream.
    A separate process, so it picks its own port for the fake FAL."""
    out = tmp_path / "pipeline.json"
    command = [sys.executable, "-m", "bench.pipeline", "--generations", "3", "--trials", "3"]
    finished = subprocess.run(
        [*command, "--json", str(out)],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": admin_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["submission"]["subject"]["n"] == 3
    assert figures["webhooks"]["count"] == 3
    assert {workers: run["count"] for workers, run in figures["engine"].items()} == {
        "1": 3,
        "2": 3,
    }
    live = figures["live_events"]
    assert (live["trials"], live["subject"]["n"], live["baseline"]["n"]) == (3, 3, 3)
    assert "SSE status event at the client" in finished.stdout


STATUS = """\
Name:\tgunicorn
VmPeak:\t  312340 kB
VmHWM:\t  130112 kB
VmRSS:\t  125044 kB
RssAnon:\t   98000 kB
"""


def test_a_workers_resident_set_is_read_from_its_status():
    assert memory.vmrss_kb(STATUS) == 125044  # VmRSS, not the high-water mark above it
    with pytest.raises(ValueError, match="no VmRSS"):
        memory.vmrss_kb("Name:\tkthreadd\nState:\tS (sleeping)\n")


def test_a_workers_master_is_read_past_a_name_with_spaces_and_parens():
    assert parent_pid("4242 (gunicorn: worker (x) ) S 4100 4100 4100 0 -1") == 4100


def test_the_memory_row_judges_the_largest_worker():
    figures = {
        "fill": 10_000,
        "pairs": 10_000,
        "baseline_mb": [100.0, 101.0],
        "full_mb": [120.0, 151.0],
        "l1_sizes_sampled": [10_000] * 20,
        "fill_seconds": 15.0,
        "target_mb": 150,
    }
    row = report._row(memory.rows(figures)[0])
    assert "151 MB max RSS" in row and "101 MB before filling" in row
    assert row.endswith("| ≤ 150 MB | **missed** |")


def wrk_figure(rate: float, p50: float = 1.0) -> dict:
    """One side of a paired HTTP figure, as bench.http.combine gives it."""
    return {
        "requests": int(rate * 6),
        "requests_per_second": rate,
        "non_2xx": 0,
        "socket_errors": 0,
        "p50_ms": p50,
        "p75_ms": p50 * 1.5,
        "p90_ms": p50 * 2,
        "p99_ms": p50 * 4,
    }


def spread_of(median: float) -> dict:
    return {"median": median, "min": median * 0.9, "max": median * 1.1, "rounds": 3}


def stage(scale: float) -> dict:
    """The SQL scenarios' figures at one stage of the generations table."""

    def judged(subject: float, baseline: float, target: float) -> dict:
        return {
            "subject": latency(subject),
            "baseline": latency(baseline),
            "ratio": {"p50": subject / baseline, "mean": 1, "target": target, "met": True},
        }

    page = {"visible_per_user": {"min": 1, "max": 90, "median": 20}, "users": 5}
    return {
        "authorize": {
            **judged(140.0 * scale, 50.0, 3.0),
            "by_method": {
                method: latency(value * scale)
                for method, value in (
                    ("direct_ownership", 120.0),
                    ("project_team", 150.0),
                    ("denied", 160.0),
                )
            },
            "wrong_answers": 0,
        },
        "list_page": {**judged(2400.0 * scale, 1900.0, 1.5), **page, "pages_differing": 0},
        "public_page": {**judged(400.0 * scale, 380.0, 1.5), **page, "pages_differing": 0},
    }


def full_results() -> dict:
    """Every figure the report draws or tabulates, shaped as the scenarios return them."""
    stages = {"10000": stage(1.0), "1000000": stage(1.1)}
    login = {
        label: {
            "connections": connections,
            "subject": wrk_figure(30.0, 65.0),
            "floor": wrk_figure(3000.0, 0.3),
            "rounds": 3,
            "throughput_share": spread_of(0.01),
            "p50_ratio": spread_of(200.0),
        }
        for label, connections in (("single", 1), ("busy", 8))
    }
    tokens = {
        algorithm: {
            "subject": latency(cost),
            "baseline": latency(30.0),
            "remembered": latency(2.0),
        }
        for algorithm, cost in (("HS256", 40.0), ("ES256", 100.0))
    }
    stale = {"within_bound": 0, "beyond_bound": 0, "total": 0, "examples": []}
    return {
        "scale": "quick",
        "machine": "test",
        "finished_at": "now",
        "dataset": {},
        "stages": stages,
        "growth": growth.compare(stages, (10_000, 1_000_000)),
        "tokens": {"iterations": 100, **tokens},
        "http_concurrency": {
            "pairs": 200,
            "rounds": 3,
            "slice_seconds": 2,
            "by": {
                str(count): {
                    "subject": wrk_figure(200.0 * min(count, 8), 0.5 * count),
                    "floor": wrk_figure(500.0 * min(count, 8), 0.2 * count),
                    "throughput_share": spread_of(0.4),
                    "throughput": spread_of(200.0 * min(count, 8)),
                    "floor_throughput": spread_of(500.0 * min(count, 8)),
                }
                for count in (1, 4, 16, 32, 64)
            },
        },
        "login": {
            "users": 16,
            "bcrypt_ms": {"p50": 60.0, "samples": 10},
            "slice_seconds": 2,
            **login,
            "ratio_to_bcrypt": 1.08,
            "met": True,
        },
        "hit_rate": {
            "users": 300,
            "generations": 2_000,
            "pairs": 3_000,
            "zipf_s": 1.0,
            "reads": 990,
            "hits": 970,
            "hit_rate": 0.98,
            "reads_per_second": 500,
            "changes": 10,
            "change_kinds": {"share": 10},
            "by_answer": {
                "granted": {"reads": 900, "hits": 885, "hit_rate": 0.983},
                "denied": {"reads": 90, "hits": 85, "hit_rate": 0.944},
            },
            "stale_grants": stale,
            "stale_denials": stale,
            "final_check": {"answers": 6_000, "cached_answers": 5_990, "wrong": 0},
            "series": [
                {"seconds": 0.2 * (epoch + 1), "reads": 99, "hits": 90 + epoch % 9}
                for epoch in range(10)
            ],
            "target": 0.95,
        },
        "memory": {
            "fill": 10_000,
            "pairs": 10_000,
            "baseline_mb": [100.0, 101.0],
            "full_mb": [120.0, 123.0],
            "l1_sizes_sampled": [10_000] * 20,
            "fill_seconds": 15.0,
            "target_mb": 150,
        },
    }


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every row of the report's figures table, header first."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def assert_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 300 and image.size[1] > 200
        image.verify()  # the whole file decodes: not truncated, checksums right


def test_the_report_folder_holds_the_table_and_every_plot(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    (tmp_path / "stale_plot.png").write_bytes(b"not from this run")
    report.write(full_results(), plots=True)
    plots = {path.name for path in tmp_path.glob("*.png")}
    assert plots == {
        "latency_by_path.png",
        "throughput_by_concurrency.png",
        "cost_by_size.png",
        "hit_rate_over_time.png",
    }
    for name in plots:
        assert_png(tmp_path / name)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    for name in plots:
        assert f"]({name})" in text
    header, _, *body = table_rows(text)
    assert header == ["figure", "measured", "baseline", "ratio", "anchor", "target", ""]
    assert all(len(cells) == len(header) for cells in body)
    by_figure = {cells[0]: cells for cells in body}
    login_row = next(cells for name, cells in by_figure.items() if name.startswith("HTTP login"))
    assert "235 ms" in login_row[4]  # the original service's login is its anchor
    hit_row = next(cells for name, cells in by_figure.items() if name.startswith("hit rate"))
    assert (hit_row[4], hit_row[5]) == (bench_anchors.ORIGINAL_HIT_RATE, "≥ 95%")
    tokens_rows = [cells for name, cells in by_figure.items() if name.startswith("token")]
    assert len(tokens_rows) == 3
    assert [cells[6] for cells in tokens_rows] == ["met", "met", ""]
    memory_row = next(cells for name, cells in by_figure.items() if name.startswith("memory"))
    assert memory_row[5:] == ["≤ 150 MB", "met"]
    sweep = [name for name in by_figure if name.endswith("(sweep)")]
    assert len(sweep) == 5
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["scale"] == "quick"


def test_a_plot_is_drawn_only_from_figures_the_run_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    results = full_results()
    del results["hit_rate"], results["http_concurrency"]
    results["stages"] = {"10000": results["stages"]["10000"]}  # one stage: no growth to plot
    report.write(results, plots=True)
    assert [path.name for path in tmp_path.glob("*.png")] == ["latency_by_path.png"]
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "hit_rate_over_time.png" not in text
    # a save during the run writes the table and draws nothing
    (tmp_path / "latency_by_path.png").unlink()
    report.write(results)
    assert list(tmp_path.glob("*.png")) == []
    assert "![" not in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_the_dataset_is_dropped_at_the_end_unless_kept(monkeypatch, tmp_path):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(bench_main, "missing_tools", lambda chosen: None)
    dropped = []
    monkeypatch.setattr(bench_main.database, "drop", dropped.append)
    monkeypatch.setattr(bench_main, "_measure_on_dataset", lambda *args: None)
    assert bench_main.main(["--quick", "--only", "authorize"]) == 0
    assert dropped == [bench_main.database.server_url()]
    assert bench_main.main(["--quick", "--only", "authorize", "--keep"]) == 0
    assert len(dropped) == 1

    def fails(*args):
        raise RuntimeError("a scenario failed")

    monkeypatch.setattr(bench_main, "_measure_on_dataset", fails)
    with pytest.raises(RuntimeError, match="a scenario failed"):
        bench_main.main(["--quick", "--only", "authorize"])
    assert len(dropped) == 2


def test_a_failed_run_still_reports_and_plots_what_it_measured(monkeypatch, tmp_path):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(bench_main, "missing_tools", lambda chosen: None)
    monkeypatch.setattr(bench_main.database, "drop", lambda server: None)
    measured = full_results()

    def measure_then_fail(server, scale, chosen, verbose, results):
        results["stages"] = measured["stages"]
        raise RuntimeError("gunicorn did not answer")

    monkeypatch.setattr(bench_main, "_measure_on_dataset", measure_then_fail)
    with pytest.raises(RuntimeError, match="gunicorn did not answer"):
        bench_main.main(["--quick", "--only", "authorize"])
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "**Stopped early** (RuntimeError: gunicorn did not answer)" in text
    assert {path.name for path in tmp_path.glob("*.png")} == {
        "latency_by_path.png",
        "cost_by_size.png",
    }


def test_dropping_the_bench_database_removes_it(admin_url, monkeypatch):
    name = f"velro_bench_drop_{os.getpid()}"
    monkeypatch.setattr(database, "BENCH_DATABASE", name)
    database.recreate(admin_url)
    database.drop(admin_url)
    with psycopg.connect(admin_url) as conn:
        found = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
    assert found is None


def test_token_verification_is_timed_as_the_app_verifies():
    figures = bench_tokens.run(dataclasses.replace(QUICK, token_iterations=50))
    for algorithm in bench_tokens.ALGORITHMS:
        side = figures[algorithm]
        # the warm-up tenth is dropped from the interleaved pair, not from the memory's run
        assert (side["subject"]["n"], side["baseline"]["n"], side["remembered"]["n"]) == (
            45,
            45,
            50,
        )
