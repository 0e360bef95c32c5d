"""Database access: one connection pool and a few ways to run a transaction.

Use exactly one of these per unit of work; each commits when it ends and rolls back on an
exception::

    from backend.db import user_query, user_transaction, service_transaction, rpc

    rows = user_query(                          # one statement as the caller: one round trip
        "select id, name from public.projects where id = %s", (project_id,)
    )

    with user_transaction() as cur:             # several statements as the caller, through RLS
        cur.execute("select id, name from public.projects order by created_at desc limit %s", (20,))
        rows = cur.fetchall()
        result = rpc(cur, "public.authorize_generation", p_generation_id=generation_id)

    with anon_transaction() as cur:             # public reads, as PostgREST serves the anon key
        cur.execute("select id, name from public.models")

    with service_transaction() as cur:          # system work only: webhooks, refunds, refreshes
        rpc(cur, "private.audit", p_event="fal.webhook", p_actor_id=None)

``user_query`` and ``user_transaction`` do what PostgREST does for each request: in one
transaction they set ``role`` to ``authenticated`` and ``request.jwt.claims`` to the
caller's verified claims, so ``auth.uid()`` and every RLS policy decide, never Python. The
same preamble statement checks that the token's session still exists: a logged-out session
gets 401 and the caller's statement never runs.

Round trips (psycopg's pipeline mode queues statements without waiting for their answers):
``user_query`` sends the preamble, the statement and the commit (the pipeline's Sync) in
one; a ``user_transaction`` block sends its opening (begin, preamble) with its first
statement, so N statements cost N + 1 with the commit. Inside a block, use the cursor it
yields, not the cursor's connection: the connection itself is in autocommit mode.
``owner_transaction`` runs as the URL's own role and is for the local auth provider's writes
to ``auth.*`` and for operator tasks.

The pool (``app.extensions["velro.db"]``) checks a connection that sat idle before lending
it and replaces dropped ones; every connection has the configured statement timeout.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from flask import Flask, current_app, g, has_app_context
from psycopg import sql
from psycopg.abc import Params, Query
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from backend.config import Settings
from backend.errors import InvalidToken

EXTENSION = "velro.db"

# PostgREST's preamble for a signed-in caller, in one statement that also checks the token's
# session: an ended one raises PT401 here, so nothing sent after it in the same round trip
# runs. The statement itself runs as the connection's role (set_config takes effect for the
# statements after it), which owns the schema: it may read auth.sessions and call
# private.raise_error.
SESSION_ENDED = "PT401"
USER_PREAMBLE = (
    "select set_config('role', case when exists (select 1 from auth.sessions"
    " where id = %s and user_id = %s and (not_after is null or not_after > now()))"
    " then 'authenticated'"
    " else private.raise_error(401, 'This session has ended; sign in again.')::text end, true),"
    " set_config('request.jwt.claims', %s, true)"
)
ROLE_PREAMBLE = "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)"
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


def init_app(app: Flask) -> None:
    database = Database(app.config["SETTINGS"])
    database.open()
    app.extensions[EXTENSION] = database


def pool() -> ConnectionPool:
    return current_app.extensions[EXTENSION].pool


def user_query(
    query: Query, params: Params | None = None, claims: dict | None = None
) -> list[dict]:
    """One statement as the caller, in one network round trip; its rows (``[]`` if none).

    The hot single-statement reads use this: the preamble, the statement and the commit
    travel together. ``claims`` defaults to the current request's verified token; a token
    whose session has ended gets 401 and the statement does not run.
    """
    claims = g.auth.claims if claims is None else claims
    rows = _role_query(_user_preamble(claims), query, params)
    _note_session_confirmed()
    return rows


@contextmanager
def user_transaction(claims: dict | None = None) -> Iterator[psycopg.Cursor]:
    """A transaction as the caller (role authenticated, their JWT claims), like PostgREST.

    ``claims`` defaults to the current request's verified token (``require_user``). A token
    whose session has ended (logout, refresh-token reuse) is refused with 401 before the
    block's first statement runs. The opening travels with that first statement, so a block
    of N statements costs N + 1 round trips (the last one commits); for a single statement
    ``user_query`` costs one.
    """
    claims = g.auth.claims if claims is None else claims
    with _role_transaction(_user_preamble(claims)) as cur:
        yield cur
        if cur.opened:
            _note_session_confirmed()


@contextmanager
def service_transaction() -> Iterator[psycopg.Cursor]:
    """A transaction as service_role (bypasses RLS): system work, never a user's read."""
    confirm_session()
    with _role_transaction(_role_preamble("service_role", {"role": "service_role"})) as cur:
        yield cur


@contextmanager
def anon_transaction() -> Iterator[psycopg.Cursor]:
    """A transaction as anon, like PostgREST serving a client that holds only the anon key."""
    with _role_transaction(_role_preamble("anon", {"role": "anon"})) as cur:
        yield cur


Preamble = tuple[str, tuple]


def _user_preamble(claims: dict) -> Preamble:
    session = (claims.get("session_id"), claims.get("sub"))
    return USER_PREAMBLE, (*session, json.dumps(claims))


def _role_preamble(role: str, claims: dict) -> Preamble:
    return ROLE_PREAMBLE, (role, json.dumps(claims))


def _note_session_confirmed() -> None:
    if has_app_context():
        g.session_confirmed = True


def _role_query(
    preamble: Preamble,
    query: Query,
    params: Params | None,
    conn: psycopg.Connection | None = None,
) -> list[dict]:
    if conn is None:
        with pool().connection() as lent:
            return _role_query(preamble, query, params, lent)
    # Pipeline mode queues both statements and one Sync: one round trip. Postgres runs what
    # comes before a Sync as one implicit transaction (the local settings hold for the
    # statement), commits it at the Sync, and after an error skips the rest and rolls back.
    cur = conn.cursor()
    with _session_ended_is_401(), conn.pipeline():
        cur.execute(*preamble)
        cur.execute(query, params)
    return cur.fetchall() if cur.description is not None else []


class RequestCursor(psycopg.Cursor):
    """A cursor whose transaction opens (begin, preamble) with its first statement.

    ``execute`` sends the opening and the statement in one pipeline: one round trip, and
    the statement is skipped when the preamble refuses. Anything else that talks to the
    server sends the opening on its own first.
    """

    preamble: Preamble | None = None
    opened = False

    def execute(self, query, params=None, **options):
        if self.opened:
            return super().execute(query, params, **options)
        with _session_ended_is_401(), self.connection.pipeline():
            self._queue_opening()
            super().execute(query, params, **options)
        return self

    def executemany(self, query, params_seq, **options):
        self.open()
        return super().executemany(query, params_seq, **options)

    def stream(self, query, params=None, **options):
        self.open()
        return super().stream(query, params, **options)

    def copy(self, statement, params=None, **options):
        self.open()
        return super().copy(statement, params, **options)

    def open(self) -> None:
        """Begin and run the preamble now, if no statement has done it yet."""
        if not self.opened:
            with _session_ended_is_401(), self.connection.pipeline():
                self._queue_opening()

    def _queue_opening(self) -> None:
        self.connection.execute("begin")
        self.connection.execute(*self.preamble)
        self.opened = True


@contextmanager
def _session_ended_is_401() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as error:
        if error.sqlstate == SESSION_ENDED:
            raise InvalidToken(error.diag.message_primary) from None
        raise


@contextmanager
def _role_transaction(preamble: Preamble) -> Iterator[RequestCursor]:
    with pool().connection() as conn:
        cur = RequestCursor(conn)
        cur.preamble = preamble
        try:
            yield cur
        except BaseException:
            _roll_back(conn)
            raise
        if conn.info.transaction_status == TransactionStatus.INERROR:
            # a statement failed and the block caught it: COMMIT would quietly roll back
            _roll_back(conn)
            raise psycopg.errors.InFailedSqlTransaction(
                "a statement in this transaction failed; it was rolled back"
            )
        if cur.opened:
            conn.commit()
        else:
            # nothing ran: the preamble alone still checks the session (one round trip)
            with _session_ended_is_401(), conn.pipeline():
                conn.execute(*preamble)


def _roll_back(conn: psycopg.Connection) -> None:
    # a broken connection cannot roll back: the pool discards it on return
    with suppress(psycopg.Error):
        conn.rollback()


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
