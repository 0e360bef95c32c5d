"""Credits under concurrency: real connections race create_generation on one balance, and
grants race refunds and each other at the balance ceiling.

Each thread has its own psycopg connection and does what PostgREST does for the user
(``set local role authenticated`` and the claims), then calls create_generation. A barrier
releases them together so the charges interleave on the balance row.

A grant may not carry the balance plus the charges a refund may still return past
max_balance (MAX_BALANCE). It locks the balance's row before it reads those charges, and
every charge and refund moves the balance under that lock, so a grant that waits for a
refund (or another grant) decides on what that one committed. Each interleaving below
holds the first call's transaction open, starts the second on its own connection, waits
until Postgres reports it blocked on a lock, then commits the first.
"""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import psycopg
import pytest
from api_support import MODEL, MODEL_COST
from integrity import assert_sound
from interleaving import interleave

REQUESTS = 50
AFFORDABLE = 10
MAX_BALANCE = 1_000_000_000  # max_balance in private.settings, documented in the README


def create_user(conn: psycopg.Connection) -> str:
    user_id = str(uuid.uuid4())
    conn.execute(
        "insert into auth.users (id, aud, role, email, raw_app_meta_data, raw_user_meta_data,"
        " created_at, updated_at) values (%s, 'authenticated', 'authenticated', %s, '{}', '{}',"
        " now(), now())",
        (user_id, f"racer-{user_id[:8]}@example.com"),
    )
    return user_id


def create_as(db_url: str, user_id: str, barrier: threading.Barrier, n: int) -> str:
    """One request of the user's, on its own connection: 'created' or the SQLSTATE."""
    claims = json.dumps({"sub": user_id, "role": "authenticated"})
    with psycopg.connect(db_url) as conn:
        barrier.wait()
        try:
            with conn.transaction():
                conn.execute("set local role authenticated")
                conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
                conn.execute(
                    "select public.create_generation(%s, %s, %s)",
                    (MODEL, f"racing fox {n}", f"race-{n}"),
                )
        except psycopg.Error as error:
            return error.sqlstate
        return "created"


def test_parallel_charges_never_overdraw_and_the_ledger_adds_up(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        user_id = create_user(conn)  # the signup grant, then a top-up: AFFORDABLE charges
        signup = conn.execute("select credits from public.profiles where id = %s", (user_id,))
        top_up = AFFORDABLE * MODEL_COST - signup.fetchone()[0]
        conn.execute("select public.grant_credits(%s, %s)", (user_id, top_up))

    barrier = threading.Barrier(REQUESTS)
    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        outcomes = list(pool.map(lambda n: create_as(db_url, user_id, barrier, n), range(REQUESTS)))

    assert outcomes.count("created") == AFFORDABLE, outcomes
    assert outcomes.count("PT402") == REQUESTS - AFFORDABLE, outcomes
    with psycopg.connect(db_url) as conn:
        balance, ledger_sum, charges, generations = conn.execute(
            "select p.credits,"
            " (select sum(amount) from public.credit_ledger where user_id = p.id),"
            " (select count(*) from public.credit_ledger where user_id = p.id and kind = 'charge'),"
            " (select count(*) from public.generations where owner_id = p.id)"
            " from public.profiles as p where p.id = %s",
            (user_id,),
        ).fetchone()
        submit_jobs = conn.execute(
            "select count(*) from procrastinate.procrastinate_jobs as j"
            " join public.generations as g on g.id = (j.args ->> 'generation_id')::uuid"
            " where g.owner_id = %s and j.task_name = 'velro.submit_generation'",
            (user_id,),
        ).fetchone()[0]
    assert balance == 0
    assert ledger_sum == balance
    assert charges == generations == submit_jobs == AFFORDABLE  # each with its job, no more
    assert_sound(db_url, user_id)


# grants at the balance ceiling -----------------------------------------------------------------


def user_with_work_in_flight(db_url: str) -> tuple[str, str]:
    """A user granted 1,000 credits in all (the signup grant included) with one charged
    generation pending: (user, generation). Balance plus refundable charges: 1,000."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        user_id = create_user(conn)
        (signup,) = conn.execute(
            "select credits from public.profiles where id = %s", (user_id,)
        ).fetchone()
        conn.execute("select public.grant_credits(%s, %s)", (user_id, 1000 - signup))
    claims = json.dumps({"sub": user_id, "role": "authenticated"})
    with psycopg.connect(db_url) as conn:
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        (generation_id,) = conn.execute(
            "select id from public.create_generation(%s, %s, %s)", (MODEL, "a fox", "ceiling")
        ).fetchone()
    return user_id, str(generation_id)


def as_service_role(statement: str, *params):
    def call(conn: psycopg.Connection) -> None:
        conn.execute("set local role service_role")
        conn.execute(statement, params)

    return call


def grant(user_id: str, amount: int):
    return as_service_role("select public.grant_credits(%s, %s)", user_id, amount)


def fail(generation_id: str):
    """FAL's failure as the worker records it: the status and the refund, in one call."""
    return as_service_role(
        "select public.record_generation_progress(%s, 'failed', p_error => 'FAL failed')",
        generation_id,
    )


def balance(db_url: str, user_id: str) -> int:
    with psycopg.connect(db_url) as conn:
        (credits,) = conn.execute(
            "select credits from public.profiles where id = %s", (user_id,)
        ).fetchone()
    return credits


def refused_at_the_ceiling(error: psycopg.Error | None) -> bool:
    return (
        isinstance(error, psycopg.Error)
        and error.sqlstate == "PT409"
        and f"a balance may hold at most {MAX_BALANCE} credits" in str(error)
    )


def test_a_grant_waiting_for_a_refund_counts_the_refund(db_url):
    """The refund holds the balance's row; the grant waits, then reads the refunded balance
    and a charge no longer refundable, together: one credit past the ceiling is refused."""
    user_id, generation_id = user_with_work_in_flight(db_url)
    room = MAX_BALANCE - 1000
    error = interleave(db_url, fail(generation_id), grant(user_id, room + 1))
    assert refused_at_the_ceiling(error), error
    assert balance(db_url, user_id) == 1000  # refunded, and nothing granted
    with closing(psycopg.connect(db_url)) as conn:
        grant(user_id, room)(conn)
        conn.commit()
    assert balance(db_url, user_id) == MAX_BALANCE
    assert_sound(db_url, user_id)


def test_a_refund_waiting_for_a_grant_to_the_ceiling_fits_under_it(db_url):
    """The grant to the ceiling holds the balance's row; the refund waits, then returns its
    charge: the balance reaches the ceiling, never the integer's overflow, and the refund
    is never refused."""
    user_id, generation_id = user_with_work_in_flight(db_url)
    error = interleave(db_url, grant(user_id, MAX_BALANCE - 1000), fail(generation_id))
    assert error is None, error
    assert balance(db_url, user_id) == MAX_BALANCE
    with closing(psycopg.connect(db_url)) as conn:
        with pytest.raises(psycopg.Error) as refusal:
            grant(user_id, 1)(conn)
        assert refused_at_the_ceiling(refusal.value), refusal.value
    assert_sound(db_url, user_id)


def test_two_grants_racing_for_the_last_room_take_it_once(db_url):
    user_id, generation_id = user_with_work_in_flight(db_url)
    error = interleave(db_url, grant(user_id, MAX_BALANCE - 1000), grant(user_id, 1))
    assert refused_at_the_ceiling(error), error
    assert balance(db_url, user_id) == MAX_BALANCE - MODEL_COST
    with closing(psycopg.connect(db_url)) as conn:
        fail(generation_id)(conn)  # the refund still fits
        conn.commit()
    assert balance(db_url, user_id) == MAX_BALANCE
    assert_sound(db_url, user_id)
