"""`python -m bench [--quick] [--only SCENARIO] [--keep] [--verbose]`: build, load, measure,
report."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import database, report
from bench.progress import say, step
from bench.scale import FULL, QUICK
from bench.scenarios import (
    SQL_SCENARIOS,
    authorize,
    casbin_cost,
    growth,
    hit_rate,
    http_authorize,
    http_cache,
    http_concurrency,
    list_page,
    login,
    memory,
    pipeline,
    propagation,
    public_count,
    tokens,
)
from bench.scenarios.cache_support import load_sql

# the cache scenarios, in running order: the last two change permissions in the data
CACHE_SCENARIOS = {
    "http_cache": http_cache,
    "memory": memory,
    "casbin": casbin_cost,
    "hit_rate": hit_rate,
    "propagation": propagation,
}
# public_count makes 20,000 projects public, so it runs after the other scenarios that read
# the dataset, and login (which adds users) after it; the pipeline's scenarios build a
# database of their own and token verification needs none
SCENARIOS = (
    "tokens",
    *SQL_SCENARIOS,
    "http_authorize",
    "http_concurrency",
    *CACHE_SCENARIOS,
    "public_count",
    "login",
    *pipeline.SCENARIOS,
)
WITHOUT_DATASET = {"tokens", *pipeline.SCENARIOS}
# driven by wrk
LOAD_GENERATED = {"http_authorize", "http_concurrency", "http_cache", "memory", "login"}
OWN_REDIS = {"http_cache", "hit_rate", "propagation"}  # each starts its own redis-server
ENSURE_WRK = Path(__file__).resolve().parent.parent / ".ci" / "ensure-wrk"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small dataset and short runs: a smoke test of the benchmark itself",
    )
    parser.add_argument(
        "--only",
        choices=SCENARIOS,
        action="append",
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help=f"keep the benchmark database ({database.BENCH_DATABASE}) after the run; "
        "by default it is dropped at the end",
    )
    parser.add_argument("--verbose", action="store_true", help="print the EXPLAIN ANALYZE plans")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    scale = QUICK if args.quick else FULL
    chosen = set(args.only or SCENARIOS)
    missing = missing_tools(chosen)
    if missing:
        say(missing)
        return 2
    results = {
        "scale": scale.name,
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "dataset": {},
        "stages": {},
    }
    try:
        run_scenarios(scale, chosen, args, results)
    except Exception as error:
        # the report and the plots still show what was measured before the failure
        results["stopped_by"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        results["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        with step("drawing the plots"):
            _, md_path = report.write(results, plots=True)
    print()
    print(md_path.read_text(encoding="utf-8"))
    say(f"report, plots and figures written to {md_path.parent}/")
    return 0


def run_scenarios(scale, chosen: set[str], args: argparse.Namespace, results: dict) -> None:
    if "tokens" in chosen:
        with step("token verification vs decoding unverified"):
            results["tokens"] = tokens.run(scale)
        save(results)
    if chosen - WITHOUT_DATASET:
        run_dataset_scenarios(scale, chosen, args.verbose, args.keep, results)
    if chosen & set(pipeline.SCENARIOS):
        results.update(pipeline.run(scale, chosen))
        save(results)


def run_dataset_scenarios(
    scale, chosen: set[str], verbose: bool, keep: bool, results: dict
) -> None:
    """The scenarios on the loaded dataset; its database is dropped afterwards unless keep."""
    server = database.server_url()
    try:
        _measure_on_dataset(server, scale, chosen, verbose, results)
    finally:
        if keep:
            say(f"kept {database.BENCH_DATABASE} (--keep)")
        else:
            database.drop(server)
            say(f"dropped {database.BENCH_DATABASE} (keep it with --keep)")


def _measure_on_dataset(server: str, scale, chosen: set[str], verbose: bool, results: dict):
    with step(f"building {database.BENCH_DATABASE} ({scale.name} scale)"):
        url = database.recreate(server)
        database.build_schema(url)
        database.load_people_and_projects(url, scale)

    # growth needs both stages; the HTTP scenario alone needs only the full table
    stages = scale.stages if chosen & set(SQL_SCENARIOS) else scale.stages[-1:]
    loaded = 0
    for stage in stages:
        database.grow_generations(url, loaded + 1, stage, scale.share_fraction)
        loaded = stage
        results["dataset"][str(stage)] = database.check_and_count(url)
        results["stages"][str(stage)] = run_sql_scenarios(url, scale, chosen, verbose)
        save(results)

    results["growth"] = growth.compare(results["stages"], scale.stages)
    if "http_authorize" in chosen:
        results["http_authorize"] = http_authorize.run(url, scale, verbose)
        save(results)
    if "http_concurrency" in chosen:
        results["http_concurrency"] = http_concurrency.run(url, scale, verbose)
        save(results)
    run_cache_scenarios(url, scale, chosen, verbose, results)
    if "public_count" in chosen:
        with step("count through RLS with many public projects"):
            results["public_count"] = public_count.run(url, scale, verbose)
        say(_ratio_line("count with public projects", results["public_count"]))
        save(results)
    if "login" in chosen:
        results["login"] = login.run(url, scale, verbose)
        save(results)
    results["access_drift"] = database.access_drift(url)
    say(f"private.check_access() after the workload: {results['access_drift']} rows of drift")


def missing_tools(chosen: set[str]) -> str | None:
    """What the chosen scenarios need and this machine lacks, found before any work.

    wrk is installed on the spot where that is possible (root with apt).
    """
    if chosen & LOAD_GENERATED and shutil.which("wrk") is None:
        installed = subprocess.run([ENSURE_WRK], check=False)  # noqa: S603
        if installed.returncode != 0 or shutil.which("wrk") is None:
            return "wrk is missing (see above); nothing was run"
    if chosen & OWN_REDIS and shutil.which("redis-server") is None:
        return (
            "redis-server is missing: sudo apt-get install -y redis-server "
            f"(needed by {', '.join(sorted(chosen & OWN_REDIS))}); nothing was run"
        )
    return None


def save(results: dict) -> None:
    """Write what is measured so far: a run stopped later still leaves its figures."""
    json_path, md_path = report.write(results)
    say(f"results so far in {md_path} and {json_path}")


def run_cache_scenarios(url: str, scale, chosen: set[str], verbose: bool, results: dict) -> None:
    names = [name for name in CACHE_SCENARIOS if name in chosen]
    if names:
        load_sql(url)
    for name in names:
        began = time.monotonic()
        with step(f"cache scenario {name}"):
            results[name] = CACHE_SCENARIOS[name].run(url, scale, verbose)
        results[name]["seconds"] = round(time.monotonic() - began, 1)
        save(results)


def run_sql_scenarios(url: str, scale, chosen: set[str], verbose: bool) -> dict:
    figures = {}
    if "authorize" in chosen:
        with step("authorize_generation() vs select 1"):
            figures["authorize"] = authorize.measure(url, scale, verbose)
        say(_ratio_line("authorize", figures["authorize"]))
    if "list_page" in chosen:
        with step("first pages of both feeds through RLS vs explicit filter"):
            figures.update(list_page.measure(url, scale, verbose))
        say(_ratio_line("default list page", figures["list_page"]))
        say(_ratio_line("public feed page", figures["public_page"]))
    return figures


def _ratio_line(name: str, figures: dict) -> str:
    subject, baseline, judged = figures["subject"], figures["baseline"], figures["ratio"]
    verdict = "met" if judged["met"] else "MISSED"
    return (
        f"{name}: p50 {subject['p50']:.0f} µs vs baseline {baseline['p50']:.0f} µs = "
        f"{judged['p50']:.2f}x (target <= {judged['target']}x: {verdict})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
