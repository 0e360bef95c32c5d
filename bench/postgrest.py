"""Run a statement the way PostgREST (and the app's user_transaction) runs it, in one round trip.

PostgREST opens a transaction per request, sets the role and the JWT claims as local
settings, runs the query and commits. Sent as separate statements that costs four round
trips; FACTS.md measured ~550 µs that way and ~140 µs batched. Here the whole transaction
goes out as one simple-protocol string, values quoted client-side by psycopg, so a
scenario and its baseline pay exactly one round trip each and differ only in the query.
"""

from __future__ import annotations

import json
import time

import psycopg

PREAMBLE = "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)"


def user_claims(user_id: str) -> str:
    """The claims PostgREST would set for a signed-in user's access token."""
    return json.dumps({"sub": str(user_id), "role": "authenticated", "aud": "authenticated"})


SERVICE_CLAIMS = json.dumps({"role": "service_role"})


class Caller:
    """One connection that runs batched request transactions and times them."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(url, autocommit=True)
        self.cursor = psycopg.ClientCursor(self.conn)

    def batch(self, role: str, claims: str, query: str, params) -> str:
        """The request transaction as one string: begin; preamble; query; commit."""
        mogrify = self.cursor.mogrify
        return f"begin; {mogrify(PREAMBLE, (role, claims))}; {mogrify(query, params)}; commit"

    def run(self, batch: str) -> tuple[list[tuple], int]:
        """Send one prepared batch; return the query's rows and the elapsed nanoseconds."""
        started = time.perf_counter_ns()
        self.cursor.execute(batch)
        self.cursor.nextset()  # the preamble's result
        self.cursor.nextset()  # the query's result
        rows = self.cursor.fetchall()
        elapsed = time.perf_counter_ns() - started
        return rows, elapsed

    def close(self) -> None:
        self.conn.close()
