"""Denials answered from the cache, counted here and written to the audit in batches.

An uncached denial is recorded by ``public.authorize_generation`` itself. A denial served
from L1 or L2 never reaches SQL, so each process counts those per (user, generation) and
writes the counts through ``private.record_denial`` (one row per user, resource and hour,
with a count) at most once a second: the next cached denial after a second has passed
writes the batch, and so does closing the app. What is lost: the counts of the last second
of a process that is killed, and a count written just after the hour turns lands in the
new hour's row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from uuid import UUID

import psycopg
from flask import Flask, current_app

from backend.db import pool

log = logging.getLogger(__name__)

EXTENSION = "velro.cached_denials"
RECORD = "select private.record_denial(%s, 'generation', %s, 'authorize_generation (cached)', %s)"


class DenialTally:
    """Cached denials not yet written, counted per (user, generation)."""

    def __init__(self, flush_after_seconds: float = 1.0, max_pending: int = 1000):
        self._flush_after = flush_after_seconds
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._pending: Counter[tuple[str, UUID]] = Counter()
        self._since: float | None = None

    def add(self, user_id: str, generation_id: UUID) -> None:
        """Count one; write the batch when it is a second old or large."""
        now = time.monotonic()
        with self._lock:
            self._pending[(user_id, generation_id)] += 1
            self._since = self._since or now
            due = now - self._since >= self._flush_after or len(self._pending) >= self._max_pending
        if due:
            self.flush()

    def flush(self) -> int:
        """Write every pending count in one transaction; how many denials were written."""
        with self._lock:
            batch, self._pending, self._since = self._pending, Counter(), None
        if not batch:
            return 0
        try:
            with pool().connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.executemany(RECORD, [(user, gen, n) for (user, gen), n in batch.items()])
        except psycopg.Error as error:
            # the answers were right; only their count in the audit is lost, and said so
            log.warning("%d cached denials not recorded: %s", sum(batch.values()), error)
            return 0
        return sum(batch.values())


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = DenialTally()


def close(app: Flask) -> None:
    with app.app_context():
        app.extensions[EXTENSION].flush()


def cached_denials() -> DenialTally:
    return current_app.extensions[EXTENSION]
