"""Refreshing the analytics materialized views (the L3 cache), as a periodic job.

Where pg_cron has the job (the analytics migration schedules ``public.refresh_analytics()``
when pg_cron is installed) the worker's job does nothing. Elsewhere the job engine runs it
on one worker at a time (a queueing lock), and each refresh also takes a transaction-level
advisory lock, so an operator's ``velro analytics refresh`` never runs at the same time.
The refresh is ``concurrently``, so readers are never blocked.
"""

from __future__ import annotations

import psycopg

# arbitrary, fixed key that only this refresh uses
REFRESH_LOCK_KEY = 7_210_431_001
CRON_JOB = "velro-refresh-analytics"  # the name the analytics migration schedules


def refresh_once(conn: psycopg.Connection) -> bool:
    """Refresh if no other process is refreshing; True when this call did it.

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
