"""Run a statement the way PostgREST (and the app's user_transaction) runs it, in one round trip.

PostgREST opens a transaction per request, sets the role and the JWT claims as local
settings, runs the query and commits. Sent as separate statements that costs four round
trips (~550 µs measured on a 2-core machine) against ~140 µs batched. Here the whole transaction
goes out as one simple-protocol string, values quoted client-side by psycopg, and the
query itself is a prepared statement (bench/queries.py): a scenario and its baseline pay
exactly one round trip each and differ only in the statement.
"""

from __future__ import annotations

import json
import time

import psycopg

from bench import queries

PREAMBLE = "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)"
SERVICE_CLAIMS = json.dumps({"role": "service_role"})


def user_claims(user_id: str) -> str:
    """The claims PostgREST would set for a signed-in user's access token."""
    return json.dumps({"sub": str(user_id), "role": "authenticated", "aud": "authenticated"})


class Caller:
    """One connection that runs batched request transactions and times them."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(url, autocommit=True)
        self.cursor = psycopg.ClientCursor(self.conn)
        self.prepared: set[str] = set()

    def statement(self, name: str, values: tuple = (), explain: bool = False) -> str:
        """`execute <name>(values)`, preparing bench/queries/<name>.sql on first use."""
        if name not in self.prepared:
            self.conn.execute(f"prepare {name} as {queries.load(name)}")
            self.prepared.add(name)
        arguments = "(" + ", ".join(["%s"] * len(values)) + ")" if values else ""
        prefix = "explain (analyze, buffers) " if explain else ""
        return self.cursor.mogrify(f"{prefix}execute {name}{arguments}", values)

    def batch(self, role: str, claims: str, statement: str) -> str:
        """The request transaction as one string: begin; preamble; statement; commit."""
        preamble = self.cursor.mogrify(PREAMBLE, (role, claims))
        return f"begin; {preamble}; {statement}; commit"

    def run(self, batch: str) -> tuple[list[tuple], int]:
        """Send one prepared batch; return the statement's rows and the elapsed nanoseconds."""
        started = time.perf_counter_ns()
        self.cursor.execute(batch)
        self.cursor.nextset()  # the preamble's result
        self.cursor.nextset()  # the statement's result
        rows = self.cursor.fetchall()
        elapsed = time.perf_counter_ns() - started
        return rows, elapsed

    def close(self) -> None:
        self.conn.close()
