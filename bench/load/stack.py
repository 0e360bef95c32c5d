"""The local stack a load run drives: its own database, a private Redis, gunicorn serving
the app, and a job worker, all on this machine's loopback, for one ``with`` block.

No FAL key is given and the app runs as development, so the app and the worker use the
simulated FAL provider: a submitted generation is rendered, announced by a signed webhook
and its output copied, as in ``make run``. Sign-ups get ``signup_credits`` (the operator
setting of this database) so the generation scenarios can pay for their images.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from backend.cli.migrations import apply_database
from backend.jobs.engine import install_schema
from bench.progress import say, step
from bench.scenarios.cache_support import RedisServer
from harness.servers import LIVENESS, REPO_ROOT, Server, free_port

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
SIGNUP_CREDITS = 1_000_000  # enough for every generation a run can submit
STARTUP_SECONDS = 120.0  # gunicorn's start on a busy shared machine can take half a minute


@dataclass(frozen=True)
class Stack:
    url: str  # the app's base URL, e.g. http://127.0.0.1:40123
    database_url: str
    logs: Path  # web.log (gunicorn) and job.log (the worker)

    def log_tail(self, name: str, characters: int = 4000) -> str:
        return (self.logs / name).read_text(errors="replace")[-characters:]


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_SERVER


@contextmanager
def database() -> Iterator[str]:
    """A fresh database named for this process (parallel runs do not collide), dropped after."""
    name = f"velro_load_{os.getpid()}"
    admin = server_url()
    drop = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    try:
        with step(f"building {name}: the stand-in, the migrations, the job engine"):
            apply_database(url, log=lambda _line: None)
            install_schema(url, lambda _line: None)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "update private.settings set value = to_jsonb(%s::integer)"
                    " where key = 'signup_credits'",
                    (SIGNUP_CREDITS,),
                )
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(drop)


def app_environment(port: int, redis_url: str, folder: Path, overrides: dict) -> dict:
    """The web and worker processes' settings: local work on the simulated provider."""
    return {
        "APP_ENV": "development",
        "FAL_KEY": "",  # none: the simulated provider
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "JWT_SECRET": secrets.token_hex(32),
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
        "MEDIA_DIR": str(folder / "media"),
        "MAIL_DIR": str(folder / "mail"),
        "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics"),
        **overrides,
    }


class Worker:
    """`velro worker` as a child process, stopped with SIGTERM (its clean stop)."""

    def __init__(self, env: dict, log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Worker:
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "backend", "worker", "--name", "load"],
                cwd=REPO_ROOT,
                env={**os.environ, **self.env},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __exit__(self, *exc) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the job worker exited\n{tail}")


@contextmanager
def running(workers: int, threads: int, overrides: dict) -> Iterator[Stack]:
    """Database, Redis, gunicorn and a job worker, until the block ends."""
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="velro-load-")))
        url = stack.enter_context(database())
        redis = stack.enter_context(RedisServer())
        port = free_port()
        env = app_environment(port, redis.url, folder, overrides)
        (folder / "metrics").mkdir()
        with step(f"starting gunicorn ({workers} workers x {threads} threads) and a job worker"):
            server = Server(
                url,
                env=env,
                workers=workers,
                threads=threads,
                port=port,
                log=folder / "web.log",
                startup_seconds=STARTUP_SECONDS,
            )
            stack.enter_context(server)
            worker = stack.enter_context(Worker({**env, "DATABASE_URL": url}, folder / "job.log"))
        say(f"serving {server.url()} on database {url.rsplit('/', 1)[-1]}")
        try:
            yield Stack(server.url(), url, folder)
            worker.check_alive()
        except BaseException:
            say("web log tail:\n" + server.log_tail())
            raise


def settle(url: str, seconds: float, quick: float = 0.2) -> float:
    """Wait (at most ``seconds``) until the liveness route answers within ``quick`` seconds:
    requests whose clients gave up are still served, and would weigh on the next scenario.
    The seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        sent = time.monotonic()
        try:
            with urllib.request.urlopen(url + LIVENESS, timeout=seconds) as response:  # noqa: S310
                response.read()
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() - sent < quick:
            break
        time.sleep(0.5)
    return time.monotonic() - started


def drain(database_url: str, seconds: float) -> int:
    """Wait (at most ``seconds``) until the job queue holds nothing to do; the jobs left."""
    deadline = time.monotonic() + seconds
    while True:
        with psycopg.connect(database_url) as conn:
            left = conn.execute(
                "select count(*) from procrastinate.procrastinate_jobs"
                " where status in ('todo', 'doing')"
                " and (scheduled_at is null or scheduled_at <= now())"
            ).fetchone()[0]
        if left == 0 or time.monotonic() > deadline:
            return left
        time.sleep(0.5)
