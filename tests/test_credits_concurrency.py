"""Credits under concurrent charges: real connections race create_generation on one balance.

Each thread has its own psycopg connection and does what PostgREST does for the user
(``set local role authenticated`` and the claims), then calls create_generation. A barrier
releases them together so the charges interleave on the balance row.
"""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
from api_support import MODEL, MODEL_COST
from integrity import assert_sound

REQUESTS = 50
AFFORDABLE = 10


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
