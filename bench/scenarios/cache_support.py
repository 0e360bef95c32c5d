"""What the cache scenarios share: a private Redis, the app's environment, signed tokens,
a keep-alive HTTP client, and the cache SQL (bench/sql/cache.sql).

Each cache scenario starts its own redis-server on a free loopback port, so Redis's own
counters (INFO commandstats) describe the benchmark alone, and no other user of the
machine's Redis (tests on db 0) sees or disturbs the benchmark's keys.
"""

from __future__ import annotations

import http.client
import json
import secrets
import shutil
import subprocess
import time
from dataclasses import fields
from pathlib import Path

import psycopg
import redis

from harness.servers import free_port

SQL_FILE = Path(__file__).resolve().parent.parent / "sql" / "cache.sql"
CHANNEL = "velro_invalidate"  # backend.cache.listener.CHANNEL: where the triggers NOTIFY
# one secret per benchmark run: every server of the run accepts every token of the run
JWT_SECRET = secrets.token_hex(32)


def load_sql(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SQL_FILE.read_text(encoding="utf-8"))


class RedisServer:
    """redis-server on a free loopback port, without persistence, for one block."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        command = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        command += ["--appendonly", "no", "--protected-mode", "yes"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: S603
        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.__exit__()
                    raise RuntimeError("the benchmark's redis-server did not start") from None
                time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def command_calls(self) -> dict[str, int]:
        """Calls per command since start, e.g. {"evalsha": 120, "set": 40}."""
        stats = self.client.info("commandstats")
        return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


def app_env(redis_url: str | None, **overrides: str) -> dict:
    """The app's environment for a benchmark server: rate limits off, cache on."""
    from backend.config import Settings

    known = {field.name for field in fields(Settings)}
    env = {
        "APP_ENV": "development",
        "JWT_SECRET": JWT_SECRET,
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": redis_url or "",
        "RATE_LIMIT_ENABLED": "false",
        "CACHE_ENABLED": "true",
        **overrides,
    }
    unknown = set(env) - known
    if unknown:
        raise RuntimeError(f"the app has no setting(s) {sorted(unknown)}")
    return env


def tokens_for(url: str, users: list[str]) -> dict[str, str]:
    """A signed access token of a fresh live session for each user."""
    unique = sorted(set(users))
    with psycopg.connect(url) as conn:
        sessions = dict(
            conn.execute("select * from bench.open_sessions(%s::uuid[])", (unique,)).fetchall()
        )
    return sign_tokens(url, {str(user): session for user, session in sessions.items()})


def sign_tokens(url: str, sessions: dict) -> dict[str, str]:
    """A signed access token for each user id of ``{user id: session id}``."""
    from backend.auth.tokens import TokenSigner
    from backend.config import load_settings

    settings = load_settings({"DATABASE_URL": url}, environ=app_env(None))
    signer = TokenSigner(settings)
    now = int(time.time())
    return {
        user: signer.sign(
            {
                "sub": user,
                "role": "authenticated",
                "aud": settings.JWT_AUDIENCE,
                "iss": settings.issuer,
                "iat": now,
                "exp": now + 3 * 3600,
                "session_id": str(session),
                "aal": "aal1",
            }
        )
        for user, session in sessions.items()
    }


def requests_file(path: Path, pairs, tokens: dict[str, str]) -> Path:
    """The wrk script's input (bench/wrk/post_bearer.lua): one "<path> <token>" per pair."""
    path.write_text(
        "".join(
            f"/api/v1/generations/{generation}/authorize {tokens[user]}\n"
            for user, generation, *_ in pairs
        ),
        encoding="utf-8",
    )
    return path


class Client:
    """One keep-alive HTTP connection to a server; reconnects when the server closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, method: str, path: str, token: str, body: dict | None = None):
        """(status, parsed JSON body or None)."""
        payload = json.dumps(body if body is not None else {}).encode()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=payload, headers=headers)
                response = self.conn.getresponse()
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
            except (http.client.HTTPException, ConnectionError, OSError):
                # gunicorn closes idle keep-alive connections after a couple of seconds
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def authorize(self, generation: str, token: str) -> dict:
        status, answer = self.call("POST", f"/api/v1/generations/{generation}/authorize", token)
        if status != 200:
            raise RuntimeError(f"authorize answered {status}: {answer}")
        return answer

    def close(self) -> None:
        self.conn.close()


def grants_more(served: dict, truth: dict) -> bool:
    """Whether a served answer allows something the database's answer does not."""
    if not served["access_granted"]:
        return False
    if not truth["access_granted"]:
        return True
    return not set(served["permissions"]) <= set(truth["permissions"])


def same_decision(served: dict, truth: dict) -> bool:
    keys = ("access_granted", "access_method", "effective_role", "permissions")
    return all(served.get(key) == truth.get(key) for key in keys)
