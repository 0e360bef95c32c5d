"""Refreshes the analytics materialized views (the L3 cache) on a schedule.

Where pg_cron has the job (the analytics migration schedules ``public.refresh_analytics()``
when pg_cron is installed) this does nothing. Elsewhere every app process runs a daemon
thread that, every ``ANALYTICS_REFRESH_SECONDS``, tries a transaction-level advisory lock:
the one instance that gets it refreshes, the others skip that round. The refresh is
``concurrently``, so readers are never blocked.
"""

from __future__ import annotations

import logging
import threading

import psycopg

log = logging.getLogger(__name__)

# an arbitrary, fixed key that only this job uses
REFRESH_LOCK_KEY = 7_210_431_001
CRON_JOB = "velro-refresh-analytics"  # the name the analytics migration schedules


def refresh_once(conn: psycopg.Connection) -> bool:
    """Refresh if no other instance is refreshing; True when this call did it.

    ``conn`` is in autocommit mode: the lock lasts exactly as long as this transaction.
    """
    with conn.transaction():
        locked = conn.execute(
            "select pg_try_advisory_xact_lock(%s)", (REFRESH_LOCK_KEY,)
        ).fetchone()[0]
        if not locked:
            return False
        conn.execute("set local role service_role")
        conn.execute("select public.refresh_analytics()")
    return True


def pg_cron_schedules_it(conn: psycopg.Connection) -> bool:
    """Whether pg_cron runs the refresh job (installed after the migration, it does not)."""
    installed = conn.execute(
        "select exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron')"
    ).fetchone()[0]
    if not installed:
        return False
    try:
        with conn.transaction():
            return conn.execute(
                "select exists (select 1 from cron.job where jobname = %s)", (CRON_JOB,)
            ).fetchone()[0]
    except psycopg.errors.InsufficientPrivilege:
        return False  # cannot tell: refreshing here too is harmless, refreshes queue up


class AnalyticsRefresher:
    """A daemon thread that calls ``refresh_once`` every interval until ``stop()``."""

    def __init__(self, database_url: str, interval_seconds: float) -> None:
        self._url = database_url
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="velro-analytics", daemon=True)
        self.refreshes = 0

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as conn:
                    if pg_cron_schedules_it(conn):
                        log.info("pg_cron refreshes analytics; the in-app refresher stops")
                        return
                    if refresh_once(conn):
                        self.refreshes += 1
            except psycopg.Error as error:
                log.warning("analytics refresh failed, retrying next round: %s", error)
            except Exception:
                # anything else would end the thread, and the views would silently go stale
                log.exception("analytics refresh failed unexpectedly, retrying next round")
