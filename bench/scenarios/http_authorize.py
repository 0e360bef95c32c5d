"""Issue 3's HTTP figure: POST /api/v1/generations/{id}/authorize vs GET /api/v1/health/live.

One gunicorn server (gthread, as the Procfile runs it) on the bench database, no Redis
and rate limits off, so the figure is the request path itself: token check, session
check and the decision in one RLS-scoped transaction. wrk drives 32 connections; the
authorize requests cycle over granted (user, generation) pairs from every access path,
each user with a signed token of a live session.
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

from bench.http import LIVENESS, POST_BEARER, Server, wrk
from bench.progress import say, step
from bench.scenarios.authorize import samples

TARGET = 0.5  # issue 3: authorize throughput at least 50% of the floor's
CONNECTIONS = 32
WARMUP_SECONDS = 3


def run(url: str, scale, verbose: bool) -> dict:
    missing = _app_missing()
    if missing:
        say(f"HTTP scenario not run: {missing}")
        return {"skipped": missing}
    env = _app_env()
    pairs = [pair for pair in samples(url, scale.authorize_samples_per_path) if pair[2] != "denied"]
    with Server(url, env=env) as server, tempfile.TemporaryDirectory() as scratch:
        requests_file = Path(scratch) / "requests.txt"
        requests_file.write_text(_requests(url, env, pairs), encoding="utf-8")
        not_served = _probe(server, requests_file)
        if not_served:
            say(f"HTTP scenario not run: {not_served}")
            return {"skipped": not_served}
        with step(
            f"HTTP floor vs authorize, {CONNECTIONS} connections, {scale.http_seconds}s each"
        ):
            floor, authorize = _load(server, requests_file, scale.http_seconds)
    share = authorize.requests_per_second / floor.requests_per_second
    figures = {
        "connections": CONNECTIONS,
        "seconds": scale.http_seconds,
        "pairs": len(pairs),
        "floor": floor.as_dict(),
        "authorize": authorize.as_dict(),
        "throughput_share": round(share, 3),
        "p99_ratio": round(authorize.p99_ms / floor.p99_ms, 2),
        "target": TARGET,
        "met": share >= TARGET,
    }
    say(
        f"HTTP authorize: {authorize.requests_per_second:,.0f} req/s vs floor "
        f"{floor.requests_per_second:,.0f} req/s = {share:.0%} (target >= {TARGET:.0%})"
    )
    if verbose:
        print(figures)
    return figures


def _load(server: Server, requests_file: Path, seconds: int):
    authorize_url = server.url("/")
    script_args = [str(requests_file)]
    wrk(server.url(LIVENESS), connections=CONNECTIONS, seconds=WARMUP_SECONDS)
    wrk(
        authorize_url,
        connections=CONNECTIONS,
        seconds=WARMUP_SECONDS,
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


def _app_missing() -> str | None:
    """Why the app cannot be benchmarked yet, or None."""
    try:
        from backend import create_app  # noqa: F401
    except ImportError as error:
        return f"backend.create_app is not importable ({error})"
    return None


def _app_env() -> dict:
    """The app's environment: a fresh secret, no Redis, and no rate limits when they exist."""
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
