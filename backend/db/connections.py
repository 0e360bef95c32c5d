"""The connection pool: one per app, connections checked after idling, timeouts set."""

from __future__ import annotations

import math
import time
import weakref
from typing import Any, Protocol

import psycopg
from flask import Flask, current_app
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from backend.config import Settings

EXTENSION = "velro.db"

# A checkout checks its connection (one round trip) only after the connection sat idle for
# a while, which is when poolers, firewalls and restarts drop connections; a connection in
# steady use skips the check. A connection that breaks anyway is discarded on return.
CHECK_AFTER_IDLE_SECONDS = 1.0
# how soon a lost connection fails where statements have no timeout (DB_STATEMENT_TIMEOUT_MS=0)
UNTIMED_BOUND = 5.0


def dead_connection_options(bound_seconds: float) -> dict[str, Any]:
    """libpq options under which a connection the network lost (a NAT or a pooler that
    dropped it without a reset) fails within about ``bound_seconds`` once used, instead of
    hanging for the kernel's retransmissions (a quarter of an hour)."""
    seconds = max(1, math.ceil(bound_seconds))
    return {
        "connect_timeout": max(2, seconds),  # libpq treats anything below 2 as 2
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": max(1, seconds // 3),
        "keepalives_count": 3,
        "tcp_user_timeout": seconds * 1000,
    }


def connection_options(settings: Settings) -> dict[str, Any]:
    """Options of every pooled connection.

    A lost connection fails within about the statement timeout: a statement may take that
    long, and a live server answers keepalives meanwhile. Behind a transaction-mode pooler
    (Supavisor, PgBouncer) consecutive transactions may run on different server
    connections, where a statement psycopg prepared on another does not exist: prepared
    statements are off then (``DATABASE_POOLER=transaction``).
    """
    options: dict[str, Any] = {
        **dead_connection_options(settings.DB_STATEMENT_TIMEOUT_MS / 1000 or UNTIMED_BOUND),
        "row_factory": dict_row,
        "application_name": "velro",
        "autocommit": True,
        "options": f"-c statement_timeout={settings.DB_STATEMENT_TIMEOUT_MS}",
    }
    if settings.DATABASE_POOLER == "transaction":
        options["prepare_threshold"] = None
    return options


class Caller(Protocol):
    """Who is signed in, asked by the transactions: the web app's auth guard answers.

    The database layer knows no requests: it asks this instead of reading them.
    """

    def claims(self) -> dict:
        """The current caller's verified token claims."""
        ...

    def session_confirmed(self) -> None:
        """A preamble just found the caller's session live."""
        ...

    def before_system_work(self) -> None:
        """About to work on the caller's behalf outside RLS: their session must be live."""
        ...


class NoCaller:
    """Nobody signs in here (the operator's command, a worker): claims are passed."""

    def claims(self) -> dict:
        raise LookupError("no signed-in caller here: pass the claims explicitly")

    def session_confirmed(self) -> None:
        pass

    def before_system_work(self) -> None:
        pass


class Database:
    """The connection pool, and who is signed in; one per app."""

    def __init__(self, settings: Settings, caller: Caller):
        self.caller = caller
        self._lent_at: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.pool = ConnectionPool(
            conninfo=settings.DATABASE_URL,
            min_size=settings.DB_POOL_MIN_SIZE,
            max_size=settings.pool_max_size,
            timeout=settings.DB_POOL_TIMEOUT,
            check=self._check_if_idle,
            kwargs=connection_options(settings),
            name="velro",
            open=False,
        )

    def _check_if_idle(self, conn: psycopg.Connection) -> None:
        # Idle time is counted from the connection's last loan, noted here. Noting returns
        # instead would take the pool's reset hook, which hands every return to the pool's
        # worker thread: a thread switch per request.
        now = time.monotonic()
        lent = self._lent_at.get(conn)
        self._lent_at[conn] = now
        if lent is not None and now - lent <= CHECK_AFTER_IDLE_SECONDS:
            return
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            # One dead connection usually means all of them died (a restart, a failover).
            # The pool retries with a growing back-off, a second or more per dead one:
            # drop every broken idle connection now so the retry finds a fresh one.
            self.pool.check()
            raise

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()


def init_app(app: Flask, caller: Caller | None = None) -> None:
    """Open the app's pool; ``caller`` tells transactions who is signed in (the web app's
    auth guard), else nobody is and claims must be passed explicitly."""
    database = Database(app.config["SETTINGS"], caller or NoCaller())
    database.open()
    app.extensions[EXTENSION] = database


def database() -> Database:
    return current_app.extensions[EXTENSION]


def pool() -> ConnectionPool:
    return database().pool
