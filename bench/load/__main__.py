"""`python -m bench.load [--config F] [--scenario S] [--json OUT] [--compare BASELINE]`.

Starts the local stack (bench/load/stack.py), runs each chosen scenario of the
configuration one after another (each in its own locust process, bounded in time), waits
for the job queue to drain after each, writes the figures as JSON, prints a summary, and
with ``--compare`` checks them against a baseline (bench/load/compare.py). Exits 1 on any
unexpected error or regression.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.load import compare, stack
from bench.load.config import DEFAULT_CONFIG, Config, ConfigProblem, Scenario, load
from bench.load.names import tasks_of
from bench.progress import say, step
from harness.servers import REPO_ROOT

DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "load.json"
DRAIN_SECONDS = 60.0  # after a scenario, how long the worker may take to empty the queue
STOP_GRACE_SECONDS = 60.0  # beyond its seconds, how long a scenario's process may take


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--scenario", action="append", help="run only this one (repeatable)")
    parser.add_argument("--json", type=Path, default=DEFAULT_OUT, help="where the figures go")
    parser.add_argument("--compare", type=Path, help="a baseline JSON to check the run against")
    parser.add_argument("--max-slowdown", type=float, help="p95 tolerance (0.5 = 50%% worse)")
    return parser.parse_args(argv)


def chosen(config: Config, names: list[str] | None) -> list[Scenario]:
    unknown = sorted(set(names or ()) - set(config.scenarios))
    if unknown:
        raise ConfigProblem(f"not in the configuration: {unknown}; it has {list(config.scenarios)}")
    return [s for name, s in config.scenarios.items() if not names or name in names]


def run_scenario(scenario: Scenario, url: str, timeout: float) -> dict:
    """One scenario in its own process; its figures."""
    with tempfile.TemporaryDirectory(prefix="velro-swarm-") as folder:
        out = Path(folder) / "figures.json"
        command = [
            *(sys.executable, "-m", "bench.load.swarm", "--scenario", scenario.name),
            *("--spec", json.dumps(scenario.as_dict()), "--host", url),
            *("--timeout", str(timeout), "--out", str(out)),
        ]
        process = subprocess.Popen(command, cwd=REPO_ROOT, start_new_session=True)  # noqa: S603
        try:
            process.wait(timeout=scenario.seconds + STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise RuntimeError(f"scenario {scenario.name} did not stop by itself") from None
        if process.returncode != 0 or not out.exists():
            raise RuntimeError(f"scenario {scenario.name}'s process exited {process.returncode}")
        return json.loads(out.read_text(encoding="utf-8"))


def run(config: Config, scenarios: list[Scenario]) -> dict:
    results = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "app": {"workers": config.workers, "threads": config.threads, "env": config.app_env},
        "request_timeout_seconds": config.request_timeout,
        "scenarios": {},
    }
    with stack.running(config.workers, config.threads, config.app_env) as local:
        for scenario in scenarios:
            load_before = os.getloadavg()[0]
            with step(
                f"scenario {scenario.name}: {scenario.users} users for {scenario.seconds:g} s"
            ):
                figures = run_scenario(scenario, local.url, config.request_timeout)
            figures["settle_seconds"] = round(stack.settle(local.url, DRAIN_SECONDS), 1)
            left = stack.drain(local.database_url, DRAIN_SECONDS)
            figures["jobs_left_after_drain"] = left
            figures["load_average_before"] = round(load_before, 2)
            if left:
                figures["unexpected_errors"] += left
                figures["unexpected_samples"].append(
                    f"{left} job(s) still queued {DRAIN_SECONDS:g} s after the scenario"
                )
            results["scenarios"][scenario.name] = figures
            say(summary_line(scenario.name, figures))
            if figures["unexpected_errors"]:
                say("the web log's tail:\n" + local.log_tail("web.log"))
    return results


def summary_line(name: str, figures: dict) -> str:
    return (
        f"{name}: {figures['requests']:,} requests, {figures['requests_per_second']:,.1f} req/s, "
        f"{figures['expected_4xx']} expected 4xx, {figures['unexpected_errors']} unexpected"
    )


def report(results: dict) -> str:
    lines = []
    for name, figures in results["scenarios"].items():
        lines.append(f"\n{summary_line(name, figures)}")
        for endpoint, row in figures["endpoints"].items():
            lines.append(
                f"  {endpoint:<58} {row['requests']:>7,}  p50 {row.get('p50_ms', 0):>7.1f}"
                f"  p95 {row.get('p95_ms', 0):>7.1f}  p99 {row.get('p99_ms', 0):>7.1f} ms"
            )
        lines += [f"  ! {sample}" for sample in figures["unexpected_samples"]]
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        config = load(args.config, tasks_of)
        scenarios = chosen(config, args.scenario)
    except ConfigProblem as problem:
        sys.exit(f"bench.load: {problem}")
    results = run(config, scenarios)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(report(results))
    print(f"\nfigures written to {args.json}")
    failed = any(figures["unexpected_errors"] for figures in results["scenarios"].values())
    if args.compare:
        baseline = json.loads(args.compare.read_text(encoding="utf-8"))
        slowdown = config.max_p95_slowdown if args.max_slowdown is None else args.max_slowdown
        print(f"\ncompared with {args.compare}:")
        failed |= not compare.check(results, baseline, slowdown, config.min_p95_increase_ms)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
