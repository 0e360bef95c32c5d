"""Reads open to everyone, run the way PostgREST runs an anonymous request.

The ``anon`` role with anon claims, in one transaction: the policies written ``to anon``
decide what is visible, exactly as for a Supabase client holding only the anon key.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from backend.db import pool

ANON_CLAIMS = '{"role": "anon"}'


@contextmanager
def anon_transaction() -> Iterator[psycopg.Cursor]:
    with pool().connection() as conn, conn.pipeline(), conn.transaction():
        with conn.cursor() as preamble:
            preamble.execute(
                "select set_config('role', 'anon', true),"
                " set_config('request.jwt.claims', %s, true)",
                (ANON_CLAIMS,),
            )
        with conn.cursor() as cur:
            yield cur
