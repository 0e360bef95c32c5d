"""A circuit breaker for FAL submissions, its state in Postgres so every process shares it.

Closed: submissions go through. After ``threshold`` consecutive failures it opens for
``open_seconds``: submissions fail fast with ``CircuitOpen`` and their jobs wait to retry
(nothing is lost). The first submission after that window is the trial: success closes it,
failure opens it again.
"""

from __future__ import annotations

import psycopg


class CircuitOpen(Exception):
    """FAL has been failing: the submission was not attempted and will be retried."""


def allows(cur: psycopg.Cursor) -> bool:
    cur.execute("select public.fal_circuit_allows() as allows")
    return cur.fetchone()["allows"]


def record(cur: psycopg.Cursor, *, succeeded: bool, threshold: int, open_seconds: int) -> bool:
    """Count one outcome; True while the breaker stays closed."""
    cur.execute(
        "select public.record_fal_outcome(%s, %s, %s) as closed",
        (succeeded, threshold, open_seconds),
    )
    return cur.fetchone()["closed"]
