"""Password login over HTTP (`POST /api/v1/auth/login`) vs `GET /api/v1/health/live`.

One gunicorn server (2 workers x 4 gthread threads, as the Procfile runs it), rate limits
off, the local auth provider with bcrypt at cost 10 (GoTrue's). LOGIN_USERS confirmed users
are created with bcrypt hashes of that cost; wrk cycles over their credentials, so each
request checks one password against its hash and opens a session, as a sign-in does.

A login is a bcrypt check by design, so it is also compared with bcrypt alone: `checkpw` at
the same cost, timed in this process. Figures: p50 at one connection (the latency a user
sees) and throughput at LOGIN_CONNECTIONS connections, each paired with the floor in
alternating slices (bench.http.alternate). Target: p50 at most 1.2x bcrypt's own, so what
the app adds to the hash is small beside it.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import bcrypt
import psycopg
from psycopg.rows import dict_row

from bench import anchors
from bench.http import POST_JSON, alternate, rounds_and_slice, wrk
from bench.progress import say, step
from bench.scenarios.cache_support import app_env
from harness.servers import LIVENESS, Server

BCRYPT_COST = 10
LOGIN_USERS = 16  # spread the sign-ins over rows, as many users signing in would
LOGIN_CONNECTIONS = 4  # enough to keep both cores hashing, and threads left for the floor
SETTLE_SECONDS = 1.0  # after a login slice: the hashes still running when wrk stops finish
PASSWORD = "bench-login-password"  # noqa: S105 - a benchmark's throwaway users
TARGET = 1.2
LOGIN_PATH = "/api/v1/auth/login"


def run(url: str, scale, verbose: bool) -> dict:
    emails = _create_users(url)
    bcrypt_ms = _bcrypt_alone(scale.bcrypt_samples)
    rounds, seconds = rounds_and_slice(scale.http_seconds)
    env = app_env(None, BCRYPT_COST=str(BCRYPT_COST))
    figures = {"users": len(emails), "bcrypt_ms": bcrypt_ms, "slice_seconds": seconds}
    with Server(url, env=env) as server, tempfile.TemporaryDirectory() as scratch:
        bodies = Path(scratch) / "logins.txt"
        bodies.write_text(
            "".join(json.dumps({"email": e, "password": PASSWORD}) + "\n" for e in emails),
            encoding="utf-8",
        )
        _load(server, bodies, LOGIN_CONNECTIONS, 2)  # warm-up: both workers sign someone in
        for label, connections in (("single", 1), ("busy", LOGIN_CONNECTIONS)):
            with step(f"HTTP login vs floor, {connections} connection(s), {rounds} x {seconds}s"):
                load = partial(_load, server, bodies, connections, seconds)
                paired = alternate(load, partial(load, floor=True), rounds)
            figures[label] = {
                "connections": connections,
                **paired.as_dict(),
                "throughput_share": paired.ratio("requests_per_second"),
                "p50_ratio": paired.ratio("p50_ms"),
            }
    single = figures["single"]["subject"]
    figures["ratio_to_bcrypt"] = round(single["p50_ms"] / bcrypt_ms["p50"], 2)
    figures["met"] = figures["ratio_to_bcrypt"] <= TARGET and _failed(figures) == 0
    say(
        f"HTTP login: p50 {single['p50_ms']:.1f} ms at 1 connection (bcrypt alone "
        f"{bcrypt_ms['p50']:.1f} ms), {figures['busy']['subject']['requests_per_second']:,.0f} "
        f"req/s at {LOGIN_CONNECTIONS} connections"
    )
    if verbose:
        print(figures)
    return figures


def _create_users(url: str) -> list[str]:
    """LOGIN_USERS confirmed users whose password is PASSWORD, hashed at BCRYPT_COST."""
    from backend.auth.accounts import hash_password, insert_user

    emails = [f"login-{index}@bench.velro.dev" for index in range(LOGIN_USERS)]
    hashed = hash_password(PASSWORD, BCRYPT_COST)  # one hash: each check still costs a full one
    with psycopg.connect(url, row_factory=dict_row) as conn, conn.cursor() as cur:
        for email in emails:
            insert_user(cur, email, hashed, {})
    return emails


def _bcrypt_alone(samples: int) -> dict:
    """checkpw at BCRYPT_COST in this process: the part of a login that is the hash."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(BCRYPT_COST))
    took = []
    for _ in range(samples):
        began = time.perf_counter()
        bcrypt.checkpw(PASSWORD.encode(), hashed)
        took.append((time.perf_counter() - began) * 1000)
    return {"p50": round(statistics.median(took), 2), "samples": samples}


def _load(server: Server, bodies: Path, connections: int, seconds: int, floor: bool = False):
    if floor:
        return wrk(server.url(LIVENESS), connections=connections, seconds=seconds)
    load = wrk(
        server.url("/"),
        connections=connections,
        seconds=seconds,
        script=POST_JSON,
        script_args=[LOGIN_PATH, str(bodies)],
    )
    # wrk's end does not stop the logins the server is still hashing; a floor slice that
    # started at once would queue behind them and measure bcrypt, not the floor
    time.sleep(SETTLE_SECONDS)
    return load


def _failed(figures: dict) -> int:
    return sum(
        figures[label]["subject"]["non_2xx"] + figures[label]["subject"]["socket_errors"]
        for label in ("single", "busy")
    )


# report --------------------------------------------------------------------------------


def rows(figures: dict) -> list[dict]:
    single, busy = figures["single"], figures["busy"]
    bcrypt_p50 = figures["bcrypt_ms"]["p50"]
    failed = _failed(figures)
    cores = os.cpu_count() or 1
    ceiling = cores * 1000 / bcrypt_p50  # every core doing nothing but bcrypt
    return [
        {
            "scenario": f"HTTP login (`POST {LOGIN_PATH}`, bcrypt cost {BCRYPT_COST}), "
            "1 connection: p50 vs bcrypt alone",
            "measured": f"p50 {single['subject']['p50_ms']:.1f} ms, "
            f"{single['subject']['requests_per_second']:,.0f} req/s"
            + (f", {failed:,} failed" if failed else ""),
            "baseline": f"bcrypt alone p50 {bcrypt_p50:.1f} ms; floor p50 "
            f"{single['floor']['p50_ms']:.2f} ms",
            "ratio": figures["ratio_to_bcrypt"],
            "anchor": anchors.ORIGINAL_LOGIN,
            "target": TARGET,
            "met": figures["met"],
        },
        {
            "scenario": f"HTTP login, {busy['connections']} connections: throughput vs "
            "`GET /health/live`",
            "measured": f"{busy['subject']['requests_per_second']:,.0f} req/s, p50 "
            f"{busy['subject']['p50_ms']:.0f} ms, p99 {busy['subject']['p99_ms']:.0f} ms",
            "baseline": f"{busy['floor']['requests_per_second']:,.0f} req/s (bcrypt's ceiling "
            f"on {cores} cores: {ceiling:,.0f} req/s)",
            "ratio": busy["throughput_share"]["median"],
            "spread": (busy["throughput_share"]["min"], busy["throughput_share"]["max"]),
            "ratio_is_share": True,
            "anchor": anchors.ORIGINAL_LOGIN,
            "target": "—",
            "met": None,
        },
    ]


def notes(figures: dict) -> list[str]:
    return [
        f"- Login rows: one server (2 workers x 4 threads, rate limits off), {figures['users']} "
        f"users with bcrypt cost {BCRYPT_COST} hashes, each login a full password check and a "
        f"new session; bcrypt alone is the median of {figures['bcrypt_ms']['samples']} "
        "`checkpw` calls in the benchmark's process; "
        f"{figures['single']['rounds']} rounds of {figures['slice_seconds']} s slices."
    ]
