"""HTTP authorize through the cache's three layers vs the floor, on one server with Redis.

One gunicorn server (2 workers x 4 gthread threads, as the Procfile runs it) with the
cache on and a private Redis; rate limits off. wrk drives `POST /generations/{id}/authorize`
and the floor `GET /health/live`, each at 32 connections and at 1 connection.

- L1 hit: 200 granted pairs that a warm-up has put in every worker's L1.
- L2 hit: a second server with CACHE_L1_SIZE=1 and the same 200 pairs, warmed into Redis.
  A one-entry L1 holds only the last key its worker touched, and wrk cycles over the 200
  pairs, so each request misses L1 and is served from Redis (the token's session check,
  also cached, takes the same path).
- miss: on the first server, pairs never asked before (a pool larger than the run can
  use, split in two so the 1-connection run does not repeat the 32-connection one): each
  request misses L1 and L2, asks Postgres, and writes both layers.

Each measurement alternates authorize and floor slices (bench.http.alternate), so the
machine's drift spreads over both sides; each round gives one ratio, and a row shows their
median and spread (min-max).

Redis's own counters (INFO commandstats, on the private server) give, per request, how
many L2 reads and L2 writes happened: the evidence that each variant took the path its name
says. Both are scripts (EVALSHA): a write is the one that ends in a SET of the entry, so
reads are the EVALSHAs less the SETs.

Targets, for L1 hits only: throughput >= 80% of the floor's and p99 <= 1.5x the
floor's at 32 connections; p50 <= 1 ms at 1 connection. L2 and miss rows are reported
against their floor without a target.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg

from bench import anchors
from bench.http import POST_BEARER, LoadResult, alternate, combine, rounds_and_slice, wrk
from bench.progress import say, step
from bench.scenarios.authorize import samples
from bench.scenarios.cache_support import RedisServer, app_env, requests_file, tokens_for
from harness.servers import LIVENESS, Server

L1_TARGET = 0.8
L1_P99_TARGET = 1.5
L1_SINGLE_P50_MS = 1.0
CONNECTIONS = (32, 1)
HOT_PAIRS = 200


def run(url: str, scale, verbose: bool) -> dict:
    hot = [p for p in samples(url, scale.authorize_samples_per_path) if p[2] != "denied"]
    hot = hot[:HOT_PAIRS]
    fresh = _fresh_pairs(url, scale, exclude={(u, g) for u, g, _ in hot})
    tokens = tokens_for(url, [u for u, _, _ in hot + fresh])
    figures: dict = {"pairs": {"hot": len(hot), "fresh": len(fresh)}}
    with RedisServer() as store, tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        hot_file = requests_file(folder / "hot.txt", hot, tokens)
        half = len(fresh) // 2
        fresh_files = {
            32: requests_file(folder / "fresh32.txt", fresh[:half], tokens),
            1: requests_file(folder / "fresh1.txt", fresh[half:], tokens),
        }
        with Server(url, env=app_env(store.url)) as server:
            _warm(server, hot_file, scale.warmup_seconds)
            figures["l1"] = _variant(
                "L1 hit", server, store, dict.fromkeys(CONNECTIONS, hot_file), scale
            )
            figures["miss"] = _variant("miss", server, store, fresh_files, scale)
        with Server(url, env=app_env(store.url, CACHE_L1_SIZE="1")) as server:
            _warm(server, hot_file, scale.warmup_seconds)
            figures["l2"] = _variant(
                "L2 hit", server, store, dict.fromkeys(CONNECTIONS, hot_file), scale
            )
    _judge(figures)
    if verbose:
        print(figures)
    return figures


def _fresh_pairs(url: str, scale, exclude: set) -> list[tuple[str, str, str]]:
    """Pairs over every access path, more than the miss runs can ask for."""
    per_path = max(500, scale.http_seconds * 200)
    label = f"sampling ~{per_path * 7:,} fresh (user, generation) pairs for the miss runs"
    with step(label), psycopg.connect(url) as conn:
        conn.execute("select setseed(0.3)")
        rows = conn.execute("select * from bench.authorize_samples(%s)", (per_path,)).fetchall()
    seen = set(exclude)
    fresh = []
    for user, generation, method in rows:
        key = (str(user), str(generation))
        if key not in seen:
            seen.add(key)
            fresh.append((*key, method))
    return fresh


def _warm(server: Server, requests: Path, seconds: int) -> None:
    # the floor's code paths, then every pair in every worker: thousands of requests at 32
    wrk(server.url(LIVENESS), connections=32, threads=1, seconds=seconds)
    _load(server.url("/"), 32, seconds * 2, requests)


def _variant(name: str, server: Server, store: RedisServer, files: dict, scale) -> dict:
    """Authorize and floor in alternating slices, at each connection count."""
    out = {}
    rounds, seconds = rounds_and_slice(scale.http_seconds)
    for connections in CONNECTIONS:
        calls = {"evalsha": 0, "set": 0}

        def authorize(connections=connections, calls=calls) -> LoadResult:
            before = store.command_calls()
            load = _load(server.url("/"), connections, seconds, files[connections])
            after = store.command_calls()
            for command in calls:
                calls[command] += after.get(command, 0) - before.get(command, 0)
            return load

        def floor(connections=connections) -> LoadResult:
            return _load(server.url(LIVENESS), connections, seconds)

        label = f"HTTP {name} vs floor, {connections} connection(s), {rounds} x {seconds}s each"
        with step(label):
            paired = alternate(authorize, floor, rounds)
        requests = max(sum(load.requests for load in paired.subject), 1)
        out[str(connections)] = {
            "authorize": combine(paired.subject),
            "floor": combine(paired.floor),
            "rounds": rounds,
            "throughput_share": paired.ratio("requests_per_second"),
            "p50_ratio": paired.ratio("p50_ms"),
            "p99_ratio": paired.ratio("p99_ms"),
            "p50_ms": paired.subject_spread("p50_ms"),
            # both are scripts: a write is the one that ends in a SET of the entry
            "l2_reads_per_request": round((calls["evalsha"] - calls["set"]) / requests, 2),
            "l2_writes_per_request": round(calls["set"] / requests, 2),
        }
    return out


def _load(url: str, connections: int, seconds: int, requests: Path | None = None) -> LoadResult:
    return wrk(
        url,
        connections=connections,
        threads=1,
        seconds=seconds,
        script=POST_BEARER if requests else None,
        script_args=[str(requests)] if requests else None,
    )


def _judge(figures: dict) -> None:
    """The L1 targets, on the medians of the paired rounds."""
    l1_busy, l1_single = figures["l1"]["32"], figures["l1"]["1"]
    figures["targets"] = {
        "throughput_share": {
            "target": L1_TARGET,
            "met": l1_busy["throughput_share"]["median"] >= L1_TARGET,
        },
        "p99_ratio": {
            "target": L1_P99_TARGET,
            "met": l1_busy["p99_ratio"]["median"] <= L1_P99_TARGET,
        },
        "single_p50_ms": {
            "target": L1_SINGLE_P50_MS,
            "met": l1_single["authorize"]["p50_ms"] <= L1_SINGLE_P50_MS,
        },
    }
    for name in NAMES:
        busy, single = figures[name]["32"], figures[name]["1"]
        share = busy["throughput_share"]
        say(
            f"HTTP authorize {name}: {busy['authorize']['requests_per_second']:,.0f} req/s "
            f"({share['median']:.0%} of the floor, rounds {share['min']:.0%}-{share['max']:.0%})"
            f", p99 {busy['authorize']['p99_ms']:.1f} ms at 32 connections; p50 "
            f"{single['authorize']['p50_ms']:.2f} ms at 1; L2 reads/request "
            f"{busy['l2_reads_per_request']}, writes {busy['l2_writes_per_request']}"
        )


# report --------------------------------------------------------------------------------

NAMES = {"l1": "L1 hit", "l2": "L2 hit", "miss": "miss"}


def rows(figures: dict) -> list[dict]:
    out = []
    targets = figures["targets"]
    for name, label in NAMES.items():
        for connections in ("32", "1"):
            level = figures[name][connections]
            out.append(_throughput_row(name, label, connections, level, targets))
            if connections == "32":
                out.append(_p99_row(name, label, level, targets))
            else:
                out.append(_single_row(name, label, level, targets))
    return out


def _throughput_row(name, label, connections, level, targets) -> dict:
    judged = name == "l1" and connections == "32"
    return {
        "scenario": f"HTTP authorize, {label}, with Redis, {connections} connection"
        f"{'s' if connections != '1' else ''}: throughput vs `GET /health/live`",
        "measured": _cell(level["authorize"]),
        "baseline": _cell(level["floor"]),
        "ratio": level["throughput_share"]["median"],
        "spread": (level["throughput_share"]["min"], level["throughput_share"]["max"]),
        "ratio_is_share": True,
        "anchor": anchors.POSTGREST,
        "target": f"≥ {L1_TARGET:.0%}" if judged else "—",
        "met": targets["throughput_share"]["met"] if judged else None,
    }


def _p99_row(name, label, level, targets) -> dict:
    judged = name == "l1"
    return {
        "scenario": f"HTTP authorize, {label}, with Redis, 32 connections: p99 vs the floor's",
        "measured": f"{level['authorize']['p99_ms']:.1f} ms",
        "baseline": f"{level['floor']['p99_ms']:.1f} ms",
        "ratio": level["p99_ratio"]["median"],
        "spread": (level["p99_ratio"]["min"], level["p99_ratio"]["max"]),
        "anchor": anchors.AUTHZ_SERVICES,
        "target": L1_P99_TARGET if judged else "—",
        "met": targets["p99_ratio"]["met"] if judged else None,
    }


def _single_row(name, label, level, targets) -> dict:
    judged = name == "l1"
    load, base, p50 = level["authorize"], level["floor"], level["p50_ms"]
    return {
        "scenario": f"HTTP authorize, {label}, with Redis, 1 connection: p50",
        "measured": f"p50 {load['p50_ms']:.2f} ms, p99 {load['p99_ms']:.1f} ms "
        f"({level['p50_ratio']['median']:.2f}\N{MULTIPLICATION SIGN} the floor's p50)",
        "baseline": f"floor p50 {base['p50_ms']:.2f} ms",
        "ratio": p50["median"],
        "spread": (p50["min"], p50["max"]),
        "ratio_unit": " ms",
        "anchor": anchors.REDIS_ROUND_TRIP if name == "l2" else anchors.ORIGINAL_AUTHORIZE,
        "target": f"≤ {L1_SINGLE_P50_MS} ms" if judged else "—",
        "met": targets["single_p50_ms"]["met"] if judged else None,
    }


def _cell(load: dict) -> str:
    return (
        f"{load['requests_per_second']:,.0f} req/s, "
        f"p50 {load['p50_ms']:.2f} ms, p99 {load['p99_ms']:.1f} ms"
    )


def notes(figures: dict) -> list[str]:
    parts = []
    for name, label in NAMES.items():
        busy = figures[name]["32"]
        parts.append(
            f"{label} {busy['l2_reads_per_request']} reads and "
            f"{busy['l2_writes_per_request']} writes"
        )
    return [
        "- HTTP cache rows: one server (2 workers x 4 threads) with a private Redis; the "
        "L2-hit server runs with CACHE_L1_SIZE=1 so every request misses L1 and reads Redis; "
        "misses use pairs never asked before. Redis commands per request at 32 connections "
        "(authorization and session check together): " + "; ".join(parts) + "."
    ]
