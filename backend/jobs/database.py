"""The worker's own connections: a small pool per database URL, service-role transactions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def pool(database_url: str) -> ConnectionPool:
    with _pools_lock:
        if database_url not in _pools:
            _pools[database_url] = ConnectionPool(
                database_url,
                min_size=1,
                max_size=4,
                kwargs={"autocommit": True, "row_factory": dict_row},
                check=ConnectionPool.check_connection,
                open=True,
            )
        return _pools[database_url]


@contextmanager
def service_transaction(database_url: str) -> Iterator[psycopg.Cursor]:
    """System work, as Supabase's service role: it bypasses RLS and calls service RPCs."""
    with pool(database_url).connection() as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute("set local role service_role")
        yield cur


def close_pools() -> None:
    with _pools_lock:
        for each in _pools.values():
            each.close()
        _pools.clear()
