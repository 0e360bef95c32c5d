"""backend.db: transactions as PostgREST runs them, the service role, the pool."""

from __future__ import annotations

import time

import jwt
import psycopg
import pytest

from backend.db import (
    CHECK_AFTER_IDLE_SECONDS,
    owner_transaction,
    pool,
    rpc,
    service_transaction,
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
