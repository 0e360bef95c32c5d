"""Memory per gunicorn worker with a full L1: what the in-process cache costs in RSS.

One gunicorn server (2 workers x 4 gthread threads, as the Procfile runs it) with the cache
on, no Redis, and an L1 of 10,000 entries (the default CACHE_L1_SIZE). Each worker's
resident set (VmRSS in /proc/<pid>/status; the workers are the master's children) is read
after a short warm-up (the baseline), then wrk cycles over 10,000 distinct (user,
generation) authorize requests until every worker that /api/v1/health/cache answers from
reports a (nearly) full L1, and the resident sets are read again. The row gives the largest
worker's RSS against the target.

--quick fills the same 10,000 entries (its smaller dataset still gives that many pairs, and
filling takes seconds), so both runs measure the same thing.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

from bench.http import POST_BEARER, wrk
from bench.progress import say, step
from bench.scenarios.cache_support import app_env, requests_file, tokens_for
from harness.servers import LIVENESS, Server

TARGET_MB = 150
FILL = 10_000
FULL_ENOUGH = 0.95  # an L1 at 95% of its bound counts as full
FILL_SLICE_SECONDS = 3
FILL_BUDGET_SECONDS = 240  # give up filling after this long and report what was reached
CACHE_SAMPLES = 20  # health answers per check, each from whichever worker accepts it


def run(url: str, scale, verbose: bool) -> dict:
    fill = FILL
    pairs = _distinct_pairs(url, fill)
    tokens = tokens_for(url, [user for user, _, _ in pairs])
    env = app_env(None, CACHE_L1_SIZE=str(fill))
    with tempfile.TemporaryDirectory() as scratch, Server(url, env=env) as server:
        all_pairs = requests_file(Path(scratch) / "fill.txt", pairs, tokens)
        few = requests_file(Path(scratch) / "warm.txt", pairs[:20], tokens)
        with step("memory: warm-up, then the baseline RSS of each worker"):
            wrk(server.url(LIVENESS), connections=8, threads=1, seconds=2)
            _load(server, few, seconds=2)
            baseline = worker_rss_kb(server)
        with step(f"memory: filling every worker's L1 with {fill:,} authorize answers"):
            sizes, seconds = _fill(server, all_pairs, fill)
        full = worker_rss_kb(server)
    figures = {
        "fill": fill,
        "pairs": len(pairs),
        "baseline_mb": _mb(baseline),
        "full_mb": _mb(full),
        "l1_sizes_sampled": sizes,
        "fill_seconds": seconds,
        "target_mb": TARGET_MB,
        "met": max(_mb(full)) <= TARGET_MB,
    }
    say(
        f"memory: worker RSS {figures['baseline_mb']} MB before, {figures['full_mb']} MB with "
        f"L1 at {sorted(set(sizes))} of {fill:,} entries"
    )
    if verbose:
        print(figures)
    return figures


def _distinct_pairs(url: str, fill: int) -> list[tuple[str, str, str]]:
    """``fill`` distinct (user, generation) pairs over every access path (seven of them)."""
    per_path = fill // 5
    label = f"memory: sampling {fill:,} distinct (user, generation) pairs"
    with step(label), psycopg.connect(url) as conn:
        conn.execute("select setseed(0.5)")
        while True:
            rows = conn.execute("select * from bench.authorize_samples(%s)", (per_path,)).fetchall()
            pairs = {(str(user), str(gen)): method for user, gen, method in rows}
            if len(pairs) >= fill or per_path > fill * 4:
                break
            per_path *= 2
    if len(pairs) < fill:
        raise RuntimeError(f"the dataset gives only {len(pairs):,} distinct pairs, not {fill:,}")
    return [(*pair, method) for pair, method in list(pairs.items())[:fill]]


def _fill(server: Server, requests: Path, fill: int) -> tuple[list[int], float]:
    """wrk over the pairs until every sampled worker's L1 is nearly full, or the budget ends."""
    began = time.monotonic()
    sizes = l1_sizes(server)
    while min(sizes) < fill * FULL_ENOUGH and time.monotonic() - began < FILL_BUDGET_SECONDS:
        _load(server, requests, seconds=FILL_SLICE_SECONDS)
        sizes = l1_sizes(server)
    return sizes, round(time.monotonic() - began, 1)


def _load(server: Server, requests: Path, seconds: int) -> None:
    wrk(
        server.url("/"),
        connections=16,
        threads=1,
        seconds=seconds,
        script=POST_BEARER,
        script_args=[str(requests)],
    )


def l1_sizes(server: Server) -> list[int]:
    """L1 sizes from several health answers; each new connection lands on either worker."""
    sizes = []
    for _ in range(CACHE_SAMPLES):
        with urllib.request.urlopen(server.url("/api/v1/health/cache"), timeout=10) as answer:  # noqa: S310
            sizes.append(json.loads(answer.read())["l1"]["size"])
    return sizes


def worker_rss_kb(server: Server) -> dict[int, int]:
    """{worker pid: VmRSS in kB} for every gunicorn worker of the server."""
    out = {}
    for pid in server.worker_pids():
        try:
            out[pid] = vmrss_kb(Path(f"/proc/{pid}/status").read_text())
        except FileNotFoundError:
            continue  # a worker that ended while we looked
    if not out:
        raise RuntimeError(f"gunicorn master {server.process.pid} has no workers")
    return out


def vmrss_kb(status: str) -> int:
    """VmRSS from /proc/<pid>/status, in kB."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"VmRSS in unexpected unit {unit!r}")
            return int(value)
    raise ValueError("no VmRSS line (a kernel thread, or not a /proc/<pid>/status)")


def _mb(by_worker: dict[int, int]) -> list[float]:
    return sorted(round(kb / 1024, 1) for kb in by_worker.values())


# report --------------------------------------------------------------------------------


def rows(figures: dict) -> list[dict]:
    fill = figures["fill"]
    full, base = figures["full_mb"], figures["baseline_mb"]
    return [
        {
            "scenario": f"memory per gunicorn worker with a full L1 ({fill:,} entries)",
            "measured": f"{max(full):.0f} MB max RSS (workers: "
            + ", ".join(f"{mb:.0f}" for mb in full)
            + ")",
            "baseline": f"{max(base):.0f} MB before filling",
            "ratio": max(full) / max(base),
            "target": f"≤ {TARGET_MB} MB",
            "met": max(full) <= TARGET_MB,
        }
    ]


def notes(figures: dict) -> list[str]:
    sizes = figures["l1_sizes_sampled"]
    return [
        f"- Memory row: one server (2 workers x 4 threads, cache on, no Redis, "
        f"CACHE_L1_SIZE={figures['fill']:,}); {figures['pairs']:,} distinct authorize pairs "
        f"over {figures['fill_seconds']}s of wrk; L1 sizes in {len(sizes)} health answers: "
        f"{min(sizes):,}-{max(sizes):,} (session checks are cached too, so a worker fills "
        "before it has seen every pair)."
    ]
