"""Throughput against concurrency: HTTP authorize, uncached, at several wrk connection counts
(`scale.concurrency_sweep`: 1, 4, 16, 32 and 64; --quick: 1, 16 and 64).

One gunicorn server (2 workers x 4 gthread threads, as the Procfile runs it), the app's
cache off so every request verifies its token, checks its session and asks Postgres for
the decision, rate limits off, no Redis. At each count, authorize and the
floor (`GET /api/v1/health/live`) run in alternating slices (bench.http.alternate); each
round gives one ratio. The rows and the plot show where throughput stops growing and what
latency the queue costs past that point. No target: the judged figures at 1 and 32
connections are the http_authorize rows; this sweep shows the shape between and beyond.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

from bench import anchors
from bench.http import alternate, rounds_and_slice, spread
from bench.progress import say, step
from bench.scenarios.authorize import samples
from bench.scenarios.cache_support import app_env, requests_file, tokens_for
from bench.scenarios.http_authorize import cell, load_slice
from harness.servers import Server


def run(url: str, scale, verbose: bool) -> dict:
    pairs = [pair for pair in samples(url, scale.authorize_samples_per_path) if pair[2] != "denied"]
    tokens = tokens_for(url, [user for user, _, _ in pairs])
    rounds, seconds = rounds_and_slice(scale.http_seconds)
    env = app_env(None, CACHE_ENABLED="false")
    figures: dict = {"pairs": len(pairs), "rounds": rounds, "slice_seconds": seconds, "by": {}}
    with Server(url, env=env) as server, tempfile.TemporaryDirectory() as scratch:
        requests = requests_file(Path(scratch) / "requests.txt", pairs, tokens)
        with step("HTTP concurrency sweep: warm-up"):
            load_slice(server, requests, 32, scale.warmup_seconds, floor=True)
            load_slice(server, requests, 32, scale.warmup_seconds)
        for connections in scale.concurrency_sweep:
            with step(
                f"HTTP authorize, uncached, {connections} connection(s) vs floor, "
                f"{rounds} x {seconds}s"
            ):
                load = partial(load_slice, server, requests, connections, seconds)
                paired = alternate(load, partial(load, floor=True), rounds)
            measured = paired.as_dict()
            figures["by"][str(connections)] = {
                "subject": measured["subject"],
                "floor": measured["floor"],
                "throughput_share": paired.ratio("requests_per_second"),
                "throughput": paired.subject_spread("requests_per_second"),
                "floor_throughput": spread([load.requests_per_second for load in paired.floor]),
            }
    say(
        "HTTP concurrency sweep (req/s, uncached authorize / floor): "
        + ", ".join(
            f"{count}: {level['subject']['requests_per_second']:,.0f} / "
            f"{level['floor']['requests_per_second']:,.0f}"
            for count, level in figures["by"].items()
        )
    )
    if verbose:
        print(figures)
    return figures


# report --------------------------------------------------------------------------------


def rows(figures: dict) -> list[dict]:
    out = []
    for count, level in figures["by"].items():
        subject, floor, share = level["subject"], level["floor"], level["throughput_share"]
        out.append(
            {
                "scenario": f"HTTP authorize, uncached, {count} connection"
                f"{'' if count == '1' else 's'}: throughput vs `GET /health/live` (sweep)",
                "measured": cell(subject),
                "baseline": cell(floor),
                "ratio": share["median"],
                "spread": (share["min"], share["max"]),
                "ratio_is_share": True,
                "anchor": anchors.ORIGINAL_LOAD if count == max(figures["by"], key=int) else "",
                "target": "—",
                "met": None,
            }
        )
    return out


def notes(figures: dict) -> list[str]:
    return [
        f"- Concurrency sweep: one server (2 workers x 4 threads, cache off), "
        f"{figures['pairs']} granted pairs; at each connection count {figures['rounds']} "
        f"rounds of {figures['slice_seconds']} s slices, authorize and the floor in turn."
    ]
