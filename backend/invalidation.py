"""Listens for the database's invalidation notices and evicts cached answers.

Triggers (supabase/migrations/*_cache_invalidation.sql) send ``NOTIFY velro_invalidate``
with ``{"scope": ..., "id": ...}`` when a change that an answer depends on commits. One
daemon thread per process holds a dedicated connection that LISTENs; every notice becomes
``cache.invalidate("<scope>:<id>")``. While that connection is down the cache is
distrusted (fail closed) and the thread reconnects with backoff; once it is back the cache
drops what it holds and is trusted again.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from backend.cache import Cache

log = logging.getLogger(__name__)

CHANNEL = "velro_invalidate"

# A project change (a new team link, public visibility) can turn a denial into a grant.
# Denials carry no project tag, since the caller could not read the project id; so a
# project notice also drops every cached denial.
ALSO_INVALIDATES = {"project": ("denials",)}


class InvalidationListener:
    def __init__(self, database_url: str, cache: Cache, *, poll_seconds: float = 1.0) -> None:
        self._url = database_url
        self._cache = cache
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="velro-invalidation", daemon=True)
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = 0.1
            except (psycopg.Error, OSError) as error:
                log.warning("invalidation channel down, cache distrusted: %s", error)
            except Exception:
                # anything else must not end the thread and leave a cache trusted that
                # nothing invalidates any more: distrust, reconnect, start clean
                log.exception("invalidation listener failed, cache distrusted")
            self._cache.distrust()
            self.connected.clear()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _listen(self) -> None:
        with psycopg.connect(self._url, autocommit=True, application_name="velro-listener") as conn:
            conn.execute(f"listen {CHANNEL}")
            self._cache.trust_again()
            self.connected.set()
            while not self._stop.is_set():
                for notice in conn.notifies(timeout=self._poll_seconds, stop_after=1000):
                    self._apply(notice.payload)
                # a quiet channel still proves the connection is alive
                conn.execute("select 1")

    def _apply(self, payload: str) -> None:
        try:
            notice = json.loads(payload)
            tag = f"{notice['scope']}:{notice['id']}"
        except (ValueError, KeyError, TypeError):
            log.error("ignoring malformed invalidation notice %r", payload)
            return
        self._cache.invalidate(tag)
        for extra in ALSO_INVALIDATES.get(notice["scope"], ()):
            self._cache.invalidate(extra)
