"""Two real sessions in a fixed order: the second runs until Postgres reports it waiting on
a lock the first holds, then the first commits. Used by the race tests of teams and credits.
"""

from __future__ import annotations

import threading
import time
from contextlib import closing

import psycopg
import pytest

LOCK_WAIT_DEADLINE_SECONDS = 30


def wait_until_blocked(db: str, pid: int) -> None:
    """Wait until the backend waits for a lock: the interleaving is then certain."""
    deadline = time.monotonic() + LOCK_WAIT_DEADLINE_SECONDS
    with psycopg.connect(db, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "select wait_event_type from pg_stat_activity where pid = %s", (pid,)
            ).fetchone()
            if row and row[0] == "Lock":
                return
            time.sleep(0.01)
    pytest.fail(f"backend {pid} never waited for a lock: the calls did not interleave")


def interleave(db: str, first, second, hold_seconds: float = 0) -> psycopg.Error | None:
    """Run ``first(conn)`` and keep it open; run ``second(conn)`` until it blocks (and
    ``hold_seconds`` more); commit the first, then let the second finish. Returns the
    second's error, if any."""
    with (
        closing(psycopg.connect(db)) as first_conn,
        closing(psycopg.connect(db)) as second_conn,
    ):
        first(first_conn)
        outcome: dict = {}

        def run_second():
            try:
                second(second_conn)
                second_conn.commit()
            except psycopg.Error as error:
                second_conn.rollback()
                outcome["error"] = error

        thread = threading.Thread(target=run_second)
        thread.start()
        wait_until_blocked(db, second_conn.info.backend_pid)
        time.sleep(hold_seconds)
        first_conn.commit()
        thread.join(LOCK_WAIT_DEADLINE_SECONDS)
        assert not thread.is_alive(), "the second call never finished"
    return outcome.get("error")
