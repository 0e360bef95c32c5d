"""The job engine: procrastinate on our Postgres, its tables in their own schema.

Jobs live in the ``procrastinate`` schema, outside the schemas PostgREST exposes, with no
grant to an API role. Our SQL inserts jobs itself (a new generation commits with its submit
job), so the engine's functions are pinned to their schema at install: a caller whose
search_path is empty (every function of ours) can still call them.
"""

from __future__ import annotations

import datetime
import logging

import procrastinate
import psycopg
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from backend.config import load_settings, read_setting

log = logging.getLogger(__name__)

SCHEMA = "procrastinate"
QUEUE = "pipeline"
SEARCH_PATH_OPTION = f"-c search_path={SCHEMA}"


def make_connector(database_url: str | None = None) -> procrastinate.PsycopgConnector:
    """A connector whose sessions find the engine's unqualified tables in their schema."""
    url = database_url or read_setting("DATABASE_URL") or ""
    return procrastinate.PsycopgConnector(conninfo=url, kwargs={"options": SEARCH_PATH_OPTION})


# Tasks register on this app at import (backend.jobs.tasks); the worker and the CLI give
# it their database with ``on_database``.
app = procrastinate.App(connector=make_connector(""), import_paths=["backend.jobs.tasks"])


def on_database(database_url: str):
    """Context manager: the app, talking to this database inside the block."""
    return app.replace_connector(make_connector(database_url))


class Backoff(BaseRetryStrategy):
    """Retry every failure, waiting twice as long each time up to a cap.

    Giving up is the task's decision (it knows the generation's deadline), so a breaker
    that stays open for an hour loses nothing: its jobs keep waiting.
    """

    def get_retry_decision(self, *, exception: BaseException, job) -> RetryDecision | None:
        settings = load_settings()
        first = settings.FAL_SUBMIT_RETRY_SECONDS
        wait = min(settings.FAL_SUBMIT_RETRY_MAX_SECONDS, first * 2 ** min(job.attempts, 16))
        return RetryDecision(retry_in={"seconds": wait})


def engine_installed(conn: psycopg.Connection) -> bool:
    return conn.execute(
        "select pg_catalog.to_regclass(%s) is not null", (f"{SCHEMA}.procrastinate_jobs",)
    ).fetchone()[0]


def install_schema(database_url: str, log_line=print) -> bool:
    """Install the engine's schema once (its own SQL, through its own tooling); True if new.

    Then pin its functions to their schema and keep every API role out of it.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        if engine_installed(conn):
            return False
        conn.execute(f"create schema if not exists {SCHEMA}")
    with on_database(database_url) as engine, engine.open():
        engine.schema_manager.apply_schema()
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        functions = conn.execute(
            "select p.oid::regprocedure::text from pg_catalog.pg_proc as p "
            "where p.pronamespace = %s::regnamespace",
            (SCHEMA,),
        ).fetchall()
        for (signature,) in functions:
            conn.execute(f"alter function {signature} set search_path = {SCHEMA}")
        conn.execute(f"revoke all on schema {SCHEMA} from public")
        roles = conn.execute(
            "select rolname from pg_catalog.pg_roles "
            "where rolname in ('anon', 'authenticated', 'service_role')"
        ).fetchall()
        for (role,) in roles:
            conn.execute(f"revoke all on all tables in schema {SCHEMA} from {role}")
            conn.execute(f"revoke all on all functions in schema {SCHEMA} from {role}")
            conn.execute(f"revoke all on schema {SCHEMA} from {role}")
    log_line(f"Installed the job engine's schema ({SCHEMA})")
    return True


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
