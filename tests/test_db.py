"""backend.db: transactions as PostgREST runs them, the service role, the pool."""

from __future__ import annotations

import itertools
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import jwt
import psycopg
import pytest
from api_support import Api

from backend import db
from backend.db import (
    CHECK_AFTER_IDLE_SECONDS,
    caller_function_query,
    owner_transaction,
    pool,
    rpc,
    service_transaction,
    user_query,
    user_transaction,
)
from backend.errors import InvalidToken


def claims_of(user) -> dict:
    return jwt.decode(user.access_token, options={"verify_signature": False})


def display_name(db_url, user_id):
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "select display_name from public.profiles where id = %s", (user_id,)
        ).fetchone()[0]


def test_user_transaction_runs_as_the_caller(app, user):
    claims = claims_of(user)
    with app.app_context(), user_transaction(claims) as cur:
        cur.execute(
            "select current_user as role, auth.uid()::text as uid, auth.role() as claim_role,"
            " current_setting('statement_timeout') as timeout"
        )
        row = cur.fetchone()
    assert row == {
        "role": "authenticated",
        "uid": user.id,
        "claim_role": "authenticated",
        "timeout": "5s",
    }


def test_user_transaction_is_bound_by_rls(app, user, users):
    other = users.create()
    with app.app_context(), user_transaction(claims_of(user)) as cur:
        cur.execute(
            "select id::text from public.profiles where id in (%s, %s)", (user.id, other.id)
        )
        assert [r["id"] for r in cur.fetchall()] == [user.id]


def test_user_transaction_commits_and_rolls_back(app, user, db_url):
    claims = claims_of(user)
    with app.app_context():
        with user_transaction(claims) as cur:
            cur.execute(
                "update public.profiles set display_name = 'Committed' where id = auth.uid()"
            )
        with pytest.raises(RuntimeError), user_transaction(claims) as cur:
            cur.execute(
                "update public.profiles set display_name = 'Rolled back' where id = auth.uid()"
            )
            raise RuntimeError("after the write")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), user_transaction(claims) as cur:
            cur.execute("update public.profiles set credits = 1000000 where id = auth.uid()")
    assert display_name(db_url, user.id) == "Committed"


def test_a_logged_out_session_is_refused_before_anything_commits(app, user, db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("delete from auth.sessions where user_id = %s", (user.id,))
    with app.app_context(), pytest.raises(InvalidToken), user_transaction(claims_of(user)) as cur:
        cur.execute("update public.profiles set display_name = 'Ghost' where id = auth.uid()")
    assert display_name(db_url, user.id) != "Ghost"


def test_service_and_owner_transactions(app, user):
    with app.app_context():
        with service_transaction() as cur:
            cur.execute("select current_user as role")
            assert cur.fetchone()["role"] == "service_role"
            (entry,) = rpc(
                cur, "public.grant_credits", p_user_id=user.id, p_amount=5, p_note="test"
            )
            assert entry["balance_after"] == 105 and entry["kind"] == "grant"
        with owner_transaction() as cur:
            cur.execute("select current_user as role")
            assert cur.fetchone()["role"] == "postgres"


def test_authenticated_cannot_call_service_functions(app, user):
    refused = pytest.raises(psycopg.errors.InsufficientPrivilege)
    with app.app_context(), refused, user_transaction(claims_of(user)) as cur:
        rpc(cur, "public.grant_credits", p_user_id=user.id, p_amount=5)


def test_connections_go_back_to_the_pool_idle(app, user):
    claims = claims_of(user)
    with app.app_context():
        for _ in range(3):
            with pytest.raises(psycopg.errors.DivisionByZero), user_transaction(claims) as cur:
                cur.execute("select 1 / 0")
        with pool().connection() as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert conn.execute("select current_user as role").fetchone()["role"] == "postgres"


def test_dropped_connections_are_replaced(make_app, user, db_url):
    app = make_app(DB_POOL_MIN_SIZE=2, DB_POOL_MAX_SIZE=2)
    client = app.test_client()
    assert client.get("/api/v1/auth/me", headers=user.headers).status_code == 200
    with psycopg.connect(db_url, autocommit=True) as conn:
        killed = conn.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where application_name = 'velro' and datname = current_database()"
        ).fetchone()[0]
    assert killed >= 1
    time.sleep(CHECK_AFTER_IDLE_SECONDS + 0.2)  # idle connections are checked when lent
    for _ in range(4):
        assert client.get("/api/v1/auth/me", headers=user.headers).status_code == 200
    assert client.get("/api/v1/health/ready").status_code == 200


# round trips ------------------------------------------------------------------------------


class RoundTrips:
    """The protocol messages libpq exchanged on one connection, from its own trace.

    Each line of the trace is a message, "F" sent by the client or "B" by the server; every
    switch from sending to receiving is the client waiting for the server: a round trip.
    """

    def __init__(self, trace: str):
        self.messages = [
            line.split("\t")[0] + " " + line.split("\t")[2]
            for line in trace.splitlines()
            if line[:1] in ("F", "B")
        ]

    @property
    def count(self) -> int:
        directions = [message[0] for message in self.messages]
        return sum(
            1 for sent, answered in itertools.pairwise(directions) if (sent, answered) == ("F", "B")
        )


@contextmanager
def counted_round_trips(app, monkeypatch) -> Iterator[list[RoundTrips]]:
    """Trace the app's only pooled connection for the length of the block.

    The app must have a pool of one connection. The pool's check of an idle connection
    (itself a round trip) is pushed out of the way so that only the block's work counts.
    """
    monkeypatch.setattr(db.connections, "CHECK_AFTER_IDLE_SECONDS", 3600.0)
    counted: list[RoundTrips] = []
    with app.app_context(), tempfile.TemporaryFile(mode="w+") as trace:
        conn = pool().getconn()
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        pool().putconn(conn)
        try:
            yield counted
        finally:
            conn = pool().getconn()
            conn.pgconn.untrace()
            pool().putconn(conn)
        trace.seek(0)
        counted.append(RoundTrips(trace.read()))


@pytest.fixture
def one_connection_api(make_app):
    app = make_app(DB_POOL_MIN_SIZE=1, DB_POOL_MAX_SIZE=1)
    api = Api(app, app.config["SETTINGS"].DATABASE_URL)
    owner = api.user("owner")
    project = api.project(owner)
    generation = api.generation(owner, project_id=project["id"])
    return api, owner, generation


def test_uncached_authorize_is_one_round_trip(one_connection_api, monkeypatch):
    api, owner, generation = one_connection_api
    path = f"/api/v1/generations/{generation['id']}/authorize"
    api.ok("POST", path, owner)  # the first use of a connection prepares nothing yet
    with counted_round_trips(api.app, monkeypatch) as counted:
        answer = api.ok("POST", path, owner)
    (trips,) = counted
    assert answer["access_granted"] and answer["effective_role"] == "owner"
    assert trips.count == 1, trips.messages
    # and one statement: the session check, the role and the decision are one function call
    assert trips.messages.count("F Execute") == 1, trips.messages


def test_a_single_statement_is_one_round_trip_and_a_block_one_more_than_it_holds(
    one_connection_api, monkeypatch
):
    api, owner, _ = one_connection_api
    claims = claims_of(owner)
    with counted_round_trips(api.app, monkeypatch) as counted:
        (row,) = user_query("select auth.uid()::text as uid", claims=claims)
    assert row["uid"] == owner.id
    assert counted[0].count == 1, counted[0].messages
    with counted_round_trips(api.app, monkeypatch) as counted, user_transaction(claims) as cur:
        cur.execute("select auth.uid()::text as uid")
        assert cur.fetchone()["uid"] == owner.id
        cur.execute("select current_user as role")
        assert cur.fetchone()["role"] == "authenticated"
    assert counted[0].count == 3, counted[0].messages  # two statements, then the commit


def test_user_query_runs_as_the_caller_and_commits(app, user, db_url):
    claims = claims_of(user)
    with app.app_context():
        (row,) = user_query("select current_user as role, auth.uid()::text as uid", claims=claims)
        assert row == {"role": "authenticated", "uid": user.id}
        updated = user_query(
            "update public.profiles set display_name = %s where id = auth.uid()",
            ("Written",),
            claims=claims,
        )
        assert updated == []
        with pool().connection() as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert conn.execute("select current_user as role").fetchone()["role"] == "postgres"
    assert display_name(db_url, user.id) == "Written"


def test_user_query_refuses_an_ended_session_before_its_statement_runs(app, user, db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("delete from auth.sessions where user_id = %s", (user.id,))
    with app.app_context(), pytest.raises(InvalidToken, match="session has ended"):
        user_query(
            "update public.profiles set display_name = 'Ghost' where id = auth.uid()",
            claims=claims_of(user),
        )
    assert display_name(db_url, user.id) != "Ghost"


def test_caller_function_query_refuses_an_ended_session_and_leaves_no_role(app, user, db_url):
    claims = claims_of(user)
    query = "select decision from private.authorize_generation_for(%s, %s)"
    params = (json.dumps(claims), uuid.uuid4())
    with app.app_context():
        (row,) = caller_function_query(query, params)
        assert row["decision"]["access_granted"] is False  # an unknown generation
        with pool().connection() as conn:
            assert conn.execute("select current_user as role").fetchone()["role"] == "postgres"
        with psycopg.connect(db_url) as conn:
            conn.execute("delete from auth.sessions where user_id = %s", (user.id,))
        with pytest.raises(InvalidToken, match="session has ended"):
            caller_function_query(query, params)


def test_user_query_refuses_a_session_past_its_not_after(app, user, db_url):
    """The preamble and the cached check read one rule (private.live_sessions): a session
    whose not_after has passed is ended for both."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "update auth.sessions set not_after = now() - interval '1 second' where user_id = %s",
            (user.id,),
        )
    with app.app_context(), pytest.raises(InvalidToken, match="session has ended"):
        user_query(
            "update public.profiles set display_name = 'Expired' where id = auth.uid()",
            claims=claims_of(user),
        )
    assert display_name(db_url, user.id) != "Expired"


def test_user_query_rolls_back_a_failed_statement(app, user, db_url):
    claims = claims_of(user)
    with app.app_context():
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            user_query(
                "update public.profiles set credits = 1000000 where id = auth.uid()", claims=claims
            )
        with pytest.raises(psycopg.errors.DivisionByZero):
            user_query(
                "with renamed as (update public.profiles set display_name = 'Halfway'"
                " where id = auth.uid() returning 1) select 1 / (select count(*) - 1 from renamed)",
                claims=claims,
            )
        (row,) = user_query(
            "select credits from public.profiles where id = auth.uid()", claims=claims
        )
    assert row["credits"] == 100
    assert display_name(db_url, user.id) != "Halfway"


def test_a_block_that_swallows_a_failed_statement_commits_nothing(app, user, db_url):
    claims = claims_of(user)
    with app.app_context():
        with pytest.raises(psycopg.errors.InFailedSqlTransaction), user_transaction(claims) as cur:
            cur.execute(
                "update public.profiles set display_name = 'Swallowed' where id = auth.uid()"
            )
            with pytest.raises(psycopg.errors.DivisionByZero):
                cur.execute("select 1 / 0")
        with pool().connection() as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert display_name(db_url, user.id) != "Swallowed"


def test_an_empty_block_still_checks_the_session(app, user, db_url):
    claims = claims_of(user)
    with app.app_context():
        with user_transaction(claims):
            pass
        with psycopg.connect(db_url) as conn:
            conn.execute("delete from auth.sessions where user_id = %s", (user.id,))
        with pytest.raises(InvalidToken), user_transaction(claims):
            pass


def test_a_block_that_opens_with_executemany_runs_it_as_the_caller(app, user, db_url):
    with app.app_context(), user_transaction(claims_of(user)) as cur:
        cur.executemany(
            "update public.profiles set display_name = %s where id = auth.uid()",
            [("First",), ("Second",)],
        )
        cur.execute("select current_user as role")
        assert cur.fetchone()["role"] == "authenticated"
    assert display_name(db_url, user.id) == "Second"


@pytest.mark.parametrize("through", ["user_query", "user_transaction"])
def test_an_ended_session_leaves_no_stale_prepared_statement_behind(one_connection_api, through):
    """psycopg prepares a statement on its fifth run; when that run is skipped because the
    preamble refused an ended session, the connection must not believe it prepared it (the
    next caller on that connection got `prepared statement "_pg3_N" does not exist`)."""
    api, owner, _ = one_connection_api
    ended = api.user("ended")
    with psycopg.connect(api.db_url) as conn:
        conn.execute("delete from auth.sessions where user_id = %s", (ended.id,))
    query = "select auth.uid()::text as uid, %s::int as n"

    def run(user, n):
        if through == "user_query":
            return user_query(query, (n,), claims=claims_of(user))
        with user_transaction(claims_of(user)) as cur:
            cur.execute(query, (n,))
            return cur.fetchall()

    with api.app.app_context():
        for n in range(6):
            assert run(owner, n) == [{"uid": owner.id, "n": n}]
            with pytest.raises(InvalidToken, match="session has ended"):
                run(ended, n)
