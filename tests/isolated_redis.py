"""A Redis database of a test module's own, for suites that run apps with the cache on.

The cache's key namespace and the limiter's key prefix are fixed ("velro"), and an app
that (re)gains trust in its cache sets a new epoch in Redis, which drops every L2 entry of
that namespace. So suites that run apps on one Redis database would drop each other's L2
entries and share rate-limit counters; this module isolates them by database number
instead. ``claim_database(redis_url)``
claims one of databases 1..15 with a lock key in database 0 (``SET NX`` with an expiry,
so the claim of a crashed run lapses), empties it, yields its URL, then empties and
releases it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
import redis

DATABASES = range(1, 16)
CLAIM_SECONDS = 3600


def _with_database(url: str, number: int) -> str:
    return urlsplit(url)._replace(path=f"/{number}").geturl()


@contextmanager
def claim_database(redis_url: str) -> Iterator[str]:
    """The URL of an empty Redis database no other claimant holds, for the block."""
    locks = redis.Redis.from_url(_with_database(redis_url, 0))
    owner = str(os.getpid())
    try:
        number = next(
            (n for n in DATABASES if locks.set(_lock(n), owner, nx=True, ex=CLAIM_SECONDS)), None
        )
        if number is None:
            pytest.fail(f"all Redis databases {DATABASES} are claimed by other test runs")
        url = _with_database(redis_url, number)
        _empty(url)
        try:
            yield url
        finally:
            _empty(url)
            locks.delete(_lock(number))
    finally:
        locks.close()


def _empty(url: str) -> None:
    with redis.Redis.from_url(url) as client:
        client.flushdb()


def _lock(number: int) -> str:
    return f"velro-test:redis-database:{number}"
