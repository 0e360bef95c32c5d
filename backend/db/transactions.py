"""Transactions as PostgREST runs them: as the caller, as anon, as service_role; and as the
connection's own role for the local auth provider and operators."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psycopg
from psycopg.abc import Params, Query
from psycopg.pq import TransactionStatus

from backend.db.connections import database, pool
from backend.db.errors import session_end_as_domain_error

# PostgREST's preamble for a signed-in caller, in one statement that also checks the token's
# session: an ended one raises PT401 here, so nothing sent after it in the same round trip
# runs. What "live" means is written once, in the view private.live_sessions, which
# private.session_liveness() (the cached check) reads too; the rewriter expands the view into
# this statement, so the check costs what the bare probe costs. The statement itself runs as
# the connection's role (set_config takes effect for the statements after it), which owns
# the schema: it may read the view and call private.raise_error, while no API role is
# granted either.
USER_PREAMBLE = (
    "select set_config('role', case when exists (select 1 from private.live_sessions"
    " where id = %s and user_id = %s)"
    " then 'authenticated'"
    " else private.raise_error(401, 'This session has ended; sign in again.')::text end, true),"
    " set_config('request.jwt.claims', %s, true)"
)
ROLE_PREAMBLE = "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)"


def user_query(
    query: Query, params: Params | None = None, claims: dict | None = None
) -> list[dict]:
    """One statement as the caller, in one network round trip; its rows (``[]`` if none).

    The hot single-statement reads use this: the preamble, the statement and the commit
    travel together. ``claims`` defaults to the signed-in caller's (``Caller.claims``); a token
    whose session has ended gets 401 and the statement does not run.
    """
    claims = database().caller.claims() if claims is None else claims
    rows = _role_query(_user_preamble(claims), query, params)
    _note_session_confirmed()
    return rows


def caller_function_query(query: Query, params: Params | None = None) -> list[dict]:
    """One statement calling a SQL function that answers for the caller itself, in one
    round trip; its rows.

    Such a function (``private.authorize_generation_for``) is given the verified claims,
    checks their session (an ended one raises 401) and decides for their user, as the
    preamble's RLS-scoped transaction would. It saves the preamble's statement and the
    pipeline: the hottest miss's cheapest form. It runs as the connection's role, which
    alone may call these functions.
    """
    with pool().connection() as conn, session_end_as_domain_error():
        rows = conn.execute(query, params).fetchall()
    _note_session_confirmed()
    return rows


@contextmanager
def user_transaction(claims: dict | None = None) -> Iterator[psycopg.Cursor]:
    """A transaction as the caller (role authenticated, their JWT claims), like PostgREST.

    ``claims`` defaults to the signed-in caller's (``Caller.claims``) (``require_user``). A token
    whose session has ended (logout, refresh-token reuse) is refused with 401 before the
    block's first statement runs. The opening travels with that first statement, so a block
    of N statements costs N + 1 round trips (the last one commits); for a single statement
    ``user_query`` costs one.
    """
    claims = database().caller.claims() if claims is None else claims
    with _role_transaction(_user_preamble(claims)) as cur:
        yield cur
        if cur.opened:
            _note_session_confirmed()


@contextmanager
def service_transaction() -> Iterator[psycopg.Cursor]:
    """A transaction as service_role (bypasses RLS): system work, never a user's read."""
    database().caller.before_system_work()
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
    database().caller.session_confirmed()


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
    # prepare=True: left to itself psycopg prepares a statement on its fifth run, and when
    # that run is skipped (the preamble refused an ended session) it still counts the
    # statement as prepared, so the connection's next run of it fails. Prepared from its
    # first run, a statement's result is checked and a skipped one is forgotten.
    cur = conn.cursor()
    with session_end_as_domain_error(), conn.pipeline():
        cur.execute(*preamble, prepare=True)
        cur.execute(query, params, prepare=True)
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
        with session_end_as_domain_error(), self.connection.pipeline():
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
            with session_end_as_domain_error(), self.connection.pipeline():
                self._queue_opening()

    def _queue_opening(self) -> None:
        self.connection.execute("begin")
        self.connection.execute(*self.preamble)
        self.opened = True


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
            with session_end_as_domain_error(), conn.pipeline():
                conn.execute(*preamble)


def _roll_back(conn: psycopg.Connection) -> None:
    # a broken connection cannot roll back: the pool discards it on return
    with suppress(psycopg.Error):
        conn.rollback()


@contextmanager
def owner_transaction() -> Iterator[psycopg.Cursor]:
    """A transaction as the connection's own role: the local auth provider and operators."""
    database().caller.before_system_work()
    with pool().connection() as conn, conn.transaction(), conn.cursor() as cur:
        yield cur
