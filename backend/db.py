"""Database access: one connection pool and a few ways to run a transaction.

Use exactly one of these per unit of work; each yields a psycopg cursor with dict rows,
commits when the block ends and rolls back on an exception::

    from backend.db import user_transaction, service_transaction, rpc

    with user_transaction() as cur:            # as the signed-in caller, through RLS
        cur.execute("select id, name from public.projects order by created_at desc limit %s", (20,))
        rows = cur.fetchall()
        result = rpc(cur, "public.authorize_generation", p_generation_id=generation_id)

    with anon_transaction() as cur:            # public reads, as PostgREST serves the anon key
        cur.execute("select id, name from public.models")

    with service_transaction() as cur:         # system work only: webhooks, refunds, refreshes
        rpc(cur, "private.audit", p_event="fal.webhook", p_actor_id=None)

``user_transaction`` does what PostgREST does for each request: in one transaction it sets
``role`` to ``authenticated`` and ``request.jwt.claims`` to the caller's verified claims,
so ``auth.uid()`` and every RLS policy decide, never Python. The same preamble statement
checks that the token's session still exists: a logged-out session gets 401 before the
caller's first query runs. ``owner_transaction`` runs as the URL's own role and is for
the local auth provider's writes to ``auth.*`` and for operator tasks.

The pool (``app.extensions["velro.db"]``) checks a connection that sat idle before lending
it and replaces dropped ones; every connection has the configured statement timeout.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from flask import Flask, current_app, g, has_app_context
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from backend.config import Settings
from backend.errors import InvalidToken

EXTENSION = "velro.db"

# null when the claims name no session (the service role): then "live" is simply false
PREAMBLE = (
    "select exists (select 1 from auth.sessions where id = %s and user_id = %s"
    " and (not_after is null or not_after > now())) as live,"
    " set_config('role', %s, true), set_config('request.jwt.claims', %s, true)"
)
SESSION_IS_LIVE = (
    "select exists (select 1 from auth.sessions where id = %s and user_id = %s"
    " and (not_after is null or not_after > now())) as live"
)


# A checkout checks its connection (one round trip) only after the connection sat idle for
# a while, which is when poolers, firewalls and restarts drop connections; a connection in
# steady use skips the check. A connection that breaks anyway is discarded on return.
CHECK_AFTER_IDLE_SECONDS = 1.0


def connection_options(settings: Settings) -> dict[str, Any]:
    """Options of every pooled connection.

    Behind a transaction-mode pooler (Supavisor, PgBouncer) consecutive transactions may
    run on different server connections, where a statement psycopg prepared on another
    does not exist: prepared statements are off then (``DATABASE_POOLER=transaction``).
    """
    options: dict[str, Any] = {
        "row_factory": dict_row,
        "application_name": "velro",
        "autocommit": True,
        "options": f"-c statement_timeout={settings.DB_STATEMENT_TIMEOUT_MS}",
    }
    if settings.DATABASE_POOLER == "transaction":
        options["prepare_threshold"] = None
    return options


class Database:
    """The connection pool; one per app."""

    def __init__(self, settings: Settings):
        self._returned_at: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.pool = ConnectionPool(
            conninfo=settings.DATABASE_URL,
            min_size=settings.DB_POOL_MIN_SIZE,
            max_size=settings.pool_max_size,
            timeout=settings.DB_POOL_TIMEOUT,
            check=self._check_if_idle,
            reset=self._note_return,
            kwargs=connection_options(settings),
            name="velro",
            open=False,
        )

    def _note_return(self, conn: psycopg.Connection) -> None:
        self._returned_at[conn] = time.monotonic()

    def _check_if_idle(self, conn: psycopg.Connection) -> None:
        returned = self._returned_at.get(conn)
        if returned is not None and time.monotonic() - returned <= CHECK_AFTER_IDLE_SECONDS:
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


def init_app(app: Flask) -> None:
    database = Database(app.config["SETTINGS"])
    database.open()
    app.extensions[EXTENSION] = database


def pool() -> ConnectionPool:
    return current_app.extensions[EXTENSION].pool


@contextmanager
def user_transaction(claims: dict | None = None) -> Iterator[psycopg.Cursor]:
    """A transaction as the caller (role authenticated, their JWT claims), like PostgREST.

    ``claims`` defaults to the current request's verified token (``require_user``). A token
    whose session has ended (logout, refresh-token reuse) is refused here with 401.
    """
    if claims is None:
        claims = g.auth.claims
    with _role_transaction("authenticated", claims) as (cur, live):
        if not live:
            raise InvalidToken("This session has ended; sign in again.")
        if has_app_context():
            g.session_confirmed = True
        yield cur


@contextmanager
def service_transaction() -> Iterator[psycopg.Cursor]:
    """A transaction as service_role (bypasses RLS): system work, never a user's read."""
    confirm_session()
    with _role_transaction("service_role", {"role": "service_role"}) as (cur, _live):
        yield cur


@contextmanager
def anon_transaction() -> Iterator[psycopg.Cursor]:
    """A transaction as anon, like PostgREST serving a client that holds only the anon key."""
    with _role_transaction("anon", {"role": "anon"}) as (cur, _live):
        yield cur


@contextmanager
def _role_transaction(role: str, claims: dict) -> Iterator[tuple[psycopg.Cursor, bool]]:
    # One statement checks the session and sets role and claims. The role takes effect for
    # the statements after it; this one's table access was checked as the connection's role
    # when it started, so it may read auth.sessions. Measured on this 2-core machine with
    # the /me query, this plain sequence (begin, preamble, query, commit) took ~360 us of
    # client CPU and ~730 us wall; psycopg's pipeline mode ~470 us CPU and ~780 us wall.
    session = (claims.get("session_id"), claims.get("sub"))
    with pool().connection() as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute(PREAMBLE, (*session, role, json.dumps(claims)))
        yield cur, cur.fetchone()["live"]


@contextmanager
def owner_transaction() -> Iterator[psycopg.Cursor]:
    """A transaction as the connection's own role: the local auth provider and operators."""
    confirm_session()
    with pool().connection() as conn, conn.transaction(), conn.cursor() as cur:
        yield cur


def rpc(cur: psycopg.Cursor, function: str, **arguments: Any) -> list[dict]:
    """Call a SQL function by its qualified name with named arguments; return its rows.

    ``rpc(cur, "public.grant_credits", p_user_id=uid, p_amount=10)`` runs
    ``select * from public.grant_credits(p_user_id => %s, p_amount => %s)``.
    """
    schema, name = function.split(".", 1)
    named = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(key), sql.Placeholder()) for key in arguments
    )
    query = sql.SQL("select * from {}.{}({})").format(
        sql.Identifier(schema), sql.Identifier(name), named
    )
    cur.execute(query, tuple(arguments.values()))
    return cur.fetchall()


def session_is_live(claims: dict) -> bool:
    """Whether the token's session still exists (logout deletes it)."""
    with pool().connection() as conn:
        row = conn.execute(
            SESSION_IS_LIVE, (claims.get("session_id"), claims.get("sub"))
        ).fetchone()
    return bool(row and row["live"])


def confirm_session() -> None:
    """Before system work on a signed-in user's behalf, make sure their session still lives.

    ``user_transaction`` checks in its preamble; other transactions call this so
    that nothing is written for a token whose session was logged out.
    """
    if not has_app_context() or g.get("auth") is None or g.get("session_confirmed"):
        return
    if not session_is_live(g.auth.claims):
        raise InvalidToken("This session has ended; sign in again.")
    g.session_confirmed = True
