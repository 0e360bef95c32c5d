"""Refreshes the analytics materialized views (the L3 cache) on a schedule.

Where pg_cron has the job (the analytics migration schedules ``public.refresh_analytics()``
when pg_cron is installed) this does nothing. Elsewhere every app process runs a daemon
thread, and exactly one of them leads: the one holding a session-level advisory lock on
its own connection. The leader refreshes every ``ANALYTICS_REFRESH_SECONDS``; the others
retry for the lock each round and take over within one interval if the leader dies (its
connection ends, Postgres releases the lock). Each refresh also takes a transaction lock,
so an operator's ``velro analytics refresh`` never runs at the same time. The refresh is
``concurrently``, so readers are never blocked.
"""

from __future__ import annotations

import logging
import threading

import psycopg

log = logging.getLogger(__name__)

# arbitrary, fixed keys that only this job uses
REFRESH_LOCK_KEY = 7_210_431_001
LEADER_LOCK_KEY = 7_210_431_002
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
    """A daemon thread that, while it leads, calls ``refresh_once`` every interval."""

    def __init__(self, database_url: str, interval_seconds: float) -> None:
        self._url = database_url
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="velro-analytics", daemon=True)
        self.refreshes = 0
        self.leading = False

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as conn:
                    if self._lead_and_refresh(conn) == "pg_cron":
                        log.info("pg_cron refreshes analytics; the in-app refresher stops")
                        return
            except psycopg.Error as error:
                log.warning("analytics refresh failed, retrying next round: %s", error)
            except Exception:
                # anything else would end the thread, and the views would silently go stale
                log.exception("analytics refresh failed unexpectedly, retrying next round")
            self.leading = False
            self._stop.wait(self._interval)

    def _lead_and_refresh(self, conn: psycopg.Connection) -> str | None:
        """Rounds on one connection, which holds the leadership for as long as it lives."""
        while not self._stop.wait(self._interval):
            if pg_cron_schedules_it(conn):
                return "pg_cron"
            if not self.leading:
                self.leading = conn.execute(
                    "select pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)
                ).fetchone()[0]
            if self.leading and refresh_once(conn):
                self.refreshes += 1
        return None
