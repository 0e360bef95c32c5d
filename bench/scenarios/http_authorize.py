"""HTTP figures: POST /api/v1/generations/{id}/authorize vs GET /api/v1/health/live.

One gunicorn server (gthread, as the Procfile runs it) on the bench database, no Redis,
rate limits off. wrk drives the load; the authorize requests cycle over granted (user,
generation) pairs from every access path, each user with a signed token of a live session.

- uncached (issue 3): the app's cache off, so every request checks the token and the
  session and asks Postgres for the decision in one RLS-scoped transaction. Target:
  throughput at least 50% of the floor's at 32 connections.
- l1_hit (issue 4, when the app has a cache): the same requests over a small set of pairs
  that a warm-up has put in every worker's L1. Targets at 32 connections: throughput at
  least 80% of the floor's and p99 at most 1.5x the floor's; at 1 connection, p50 <= 1 ms.
"""

from __future__ import annotations

import secrets
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import fields
from pathlib import Path

import psycopg

from bench.http import LIVENESS, POST_BEARER, LoadResult, Server, wrk
from bench.progress import say, step
from bench.scenarios.authorize import samples

UNCACHED_TARGET = 0.5  # issue 3: authorize throughput at least 50% of the floor's
L1_TARGET = 0.8  # issue 4: L1-hit throughput at least 80% of the floor's
L1_P99_TARGET = 1.5  # issue 4: L1-hit p99 at most 1.5x the floor's
L1_SINGLE_P50_MS = 1.0  # issue 4: L1-hit p50 at one connection
CONNECTIONS = 32
WARMUP_SECONDS = 3
L1_PAIRS = 200  # few enough that the warm-up puts every one in every worker's L1


def run(url: str, scale, verbose: bool) -> dict:
    missing = _app_missing()
    if missing:
        say(f"HTTP scenario not run: {missing}")
        return {"skipped": missing}
    pairs = [pair for pair in samples(url, scale.authorize_samples_per_path) if pair[2] != "denied"]
    figures = _variant(url, scale, pairs, cached=False)
    if "skipped" in figures or not _app_has_cache():
        return figures
    cached = _variant(url, scale, pairs[:L1_PAIRS], cached=True)
    if "skipped" not in cached:
        figures["l1_hit"] = cached
    if verbose:
        print(figures)
    return figures


def _variant(url: str, scale, pairs: list[tuple[str, str, str]], cached: bool) -> dict:
    name = "authorize with L1 hits" if cached else "authorize, uncached"
    env = _app_env(cached)
    with Server(url, env=env) as server, tempfile.TemporaryDirectory() as scratch:
        requests_file = Path(scratch) / "requests.txt"
        requests_file.write_text(_requests(url, env, pairs), encoding="utf-8")
        not_served = _probe(server, requests_file)
        if not_served:
            say(f"HTTP scenario not run: {not_served}")
            return {"skipped": not_served}
        with step(f"HTTP floor vs {name}, {CONNECTIONS} connections, {scale.http_seconds}s each"):
            floor, authorize = _load(server, requests_file, scale.http_seconds, cached)
            single = _single(server, requests_file, scale.http_seconds) if cached else None
    return _judge(name, pairs, scale, floor, authorize, single)


def _judge(name, pairs, scale, floor: LoadResult, authorize: LoadResult, single) -> dict:
    share = authorize.requests_per_second / floor.requests_per_second
    p99_ratio = authorize.p99_ms / floor.p99_ms
    figures = {
        "connections": CONNECTIONS,
        "seconds": scale.http_seconds,
        "pairs": len(pairs),
        "floor": floor.as_dict(),
        "authorize": authorize.as_dict(),
        "throughput_share": round(share, 3),
        "p99_ratio": round(p99_ratio, 2),
    }
    if single is None:
        figures.update(target=UNCACHED_TARGET, met=share >= UNCACHED_TARGET)
    else:
        figures.update(
            target=L1_TARGET,
            met=share >= L1_TARGET,
            p99_target=L1_P99_TARGET,
            p99_met=p99_ratio <= L1_P99_TARGET,
            single_connection=single.as_dict(),
            single_p50_target_ms=L1_SINGLE_P50_MS,
            single_p50_met=single.p50_ms <= L1_SINGLE_P50_MS,
        )
    say(
        f"HTTP {name}: {authorize.requests_per_second:,.0f} req/s vs floor "
        f"{floor.requests_per_second:,.0f} req/s = {share:.0%} (target >= {figures['target']:.0%})"
    )
    return figures


def _load(server: Server, requests_file: Path, seconds: int, cached: bool):
    authorize_url = server.url("/")
    script_args = [str(requests_file)]
    # a cached run warms longer: every worker must have seen every pair once
    warmup = WARMUP_SECONDS * (2 if cached else 1)
    wrk(server.url(LIVENESS), connections=CONNECTIONS, seconds=WARMUP_SECONDS)
    wrk(
        authorize_url,
        connections=CONNECTIONS,
        seconds=warmup,
        script=POST_BEARER,
        script_args=script_args,
    )
    floor = wrk(server.url(LIVENESS), connections=CONNECTIONS, seconds=seconds)
    authorize = wrk(
        authorize_url,
        connections=CONNECTIONS,
        seconds=seconds,
        script=POST_BEARER,
        script_args=script_args,
    )
    return floor, authorize


def _single(server: Server, requests_file: Path, seconds: int) -> LoadResult:
    return wrk(
        server.url("/"),
        connections=1,
        threads=1,
        seconds=max(3, seconds // 3),
        script=POST_BEARER,
        script_args=[str(requests_file)],
    )


def _app_has_cache() -> bool:
    from backend.config import Settings

    return "CACHE_ENABLED" in {field.name for field in fields(Settings)}


def _app_missing() -> str | None:
    """Why the app cannot be benchmarked yet, or None."""
    try:
        from backend import create_app  # noqa: F401
    except ImportError as error:
        return f"backend.create_app is not importable ({error})"
    return None


def _app_env(cached: bool) -> dict:
    """The app's environment: a fresh secret, no Redis, no rate limits, cache on or off."""
    from backend.config import Settings

    known = {field.name for field in fields(Settings)}
    env = {
        "APP_ENV": "development",
        "JWT_SECRET": secrets.token_hex(32),
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": "",
    }
    if "RATE_LIMIT_ENABLED" in known:
        env["RATE_LIMIT_ENABLED"] = "false"
    if "CACHE_ENABLED" in known:
        env["CACHE_ENABLED"] = "true" if cached else "false"
    return env


def _requests(url: str, env: dict, pairs: list[tuple[str, str, str]]) -> str:
    """One "<path> <token>" line per pair; each user gets a live session and a signed token."""
    from backend.auth.tokens import TokenSigner
    from backend.config import load_settings

    settings = load_settings({"DATABASE_URL": url}, environ=env)
    signer = TokenSigner(settings)
    users = sorted({user for user, _, _ in pairs})
    with psycopg.connect(url) as conn:
        sessions = dict(
            conn.execute("select * from bench.open_sessions(%s::uuid[])", (users,)).fetchall()
        )
    now = int(time.time())
    tokens = {
        user: signer.sign(
            {
                "sub": user,
                "role": "authenticated",
                "aud": settings.JWT_AUDIENCE,
                "iss": settings.issuer,
                "iat": now,
                "exp": now + 3600,
                "session_id": str(sessions[uuid.UUID(user)]),
                "aal": "aal1",
            }
        )
        for user in users
    }
    return "".join(
        f"/api/v1/generations/{generation}/authorize {tokens[user]}\n"
        for user, generation, _ in pairs
    )


def _probe(server: Server, requests_file: Path) -> str | None:
    """One authorize request by hand: None when it answers a granted decision."""
    path, token = requests_file.read_text(encoding="utf-8").splitlines()[0].split()
    request = urllib.request.Request(  # noqa: S310 - our own http:// server
        server.url(path),
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own http URL  # noqa: S310
            body = response.read().decode()
    except urllib.error.HTTPError as error:
        return f"POST {path} answered {error.code}: {error.read().decode()[:300]}"
    return (
        None
        if '"access_granted": true' in body.replace('":true', '": true')
        else f"unexpected answer {body[:300]}"
    )
