"""The benchmark package (bench/): its parsers and statistics, and one tiny end-to-end run.

The tiny run loads a small dataset into a fresh migrated database and runs the SQL
scenarios briefly. What it asserts is correctness, never speed: the derived access state
equals its definition, every sampled decision names the path the database's own rule
predicts, both RLS pages equal the explicit service-role pages for every user, and with
many public projects the count through RLS equals the explicit count.
"""

from __future__ import annotations

import dataclasses

from bench import database, queries, report
from bench.http import parse_wrk
from bench.scale import QUICK
from bench.scenarios import authorize, growth, list_page, public_count
from bench.stats import percentile, ratio, summarize

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


def test_query_files_load_without_comments():
    loaded = queries.load("list_page_explicit")
    assert loaded.startswith("select")
    assert "--" not in loaded
    assert "$1" in loaded


def test_tiny_run_is_correct(fresh_db_url):
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
