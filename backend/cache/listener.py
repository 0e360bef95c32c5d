"""The process's one LISTEN connection: the cache's invalidation notices, and every other
channel a consumer registers (live status, ``backend.live``).

Triggers (the cache invalidation migrations) and the auth providers send
``NOTIFY velro_invalidate`` with ``{"scope": ..., "id": ...}`` when a change that an answer
depends on commits. One daemon thread per process holds a dedicated connection that
LISTENs; every notice becomes the tag ``"<scope>:<id>"``, and notices that arrive together
are applied as one batch (``cache.invalidate_many``), so a storm of them (deleting a
project with thousands of generations) costs one Redis round trip per thousand. A migration
that changes the rules themselves announces ``cache:all``: the cache then forgets every
answer (``cache.forget_everything``), as after a reconnect. Notices on
the other channels go to their consumer as they come; each consumer hears when the
connection is up (``connected``: notices may have been missed, read again) and when it is
lost (``disconnected``).

The connection can go silently stale: a NAT or a pooler that drops it without a reset
leaves a socket that never delivers another notice. So the connection has TCP keepalives,
``connect_timeout`` and ``tcp_user_timeout``, the thread completes a round trip
(``select 1``) at least every ``bound / 4`` seconds and reports it to the cache, and the
cache distrusts itself when none completed within ``bound`` (``CACHE_LISTENER_TIMEOUT``).
A watchdog thread then shuts the socket down, which ends the stuck read; the thread
reconnects with backoff, and once LISTEN is back the cache drops what it holds and is
trusted again, and every consumer is told to read again.

LISTEN needs a session of its own: it connects to ``DATABASE_DIRECT_URL`` (falling back to
``DATABASE_URL``), never through a transaction-mode pooler, which would drop it. One per
process, whatever listens on it: each web process holds one such connection.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterable
from typing import Protocol

import psycopg

from backend.db.connections import dead_connection_options

log = logging.getLogger(__name__)

CHANNEL = "velro_invalidate"
NOTICES_PER_BATCH = 1000
# the tag a migration announces when it changes the rules every cached answer was decided by
EVERYTHING = "cache:all"
EXTENSION = "velro.invalidation"


def listen_connection_options(bound_seconds: float) -> dict:
    """libpq options that make a dead LISTEN connection fail instead of hanging."""
    return {**dead_connection_options(bound_seconds), "application_name": "velro-listener"}


class ListenerStalled(RuntimeError):
    """The LISTEN connection answered, but later than the cache's bound allows."""


class InvalidationTarget(Protocol):
    """What the listener feeds: the cache, or anything else that holds derived answers."""

    def expect_heartbeats(self, bound_seconds: float) -> None: ...

    def heartbeat(self) -> None: ...

    def invalidate_many(self, tags: Iterable[str]) -> None: ...

    def distrust(self) -> None: ...

    def trust_again(self) -> None: ...

    def forget_everything(self) -> None: ...


class ChannelConsumer(Protocol):
    """What another channel's notices are handed to (the live status fan-out)."""

    def connected(self) -> None:
        """LISTEN is (back) in place: anything sent while it was not is lost, read again."""

    def disconnected(self) -> None:
        """The connection is gone; ``connected`` follows once it is back."""

    def deliver(self, payload: str) -> None:
        """One notice's payload, in the order the notices were committed."""


class _NoCache:
    """The target when the cache is off: the connection then serves other channels only."""

    def expect_heartbeats(self, bound_seconds: float) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def invalidate_many(self, tags: Iterable[str]) -> None:
        pass

    def distrust(self) -> None:
        pass

    def trust_again(self) -> None:
        pass

    def forget_everything(self) -> None:
        pass


class InvalidationListener:
    """The LISTEN connection of a process. ``cache`` is None when the cache is off; other
    channels join with ``add_channel`` before ``start``."""

    def __init__(
        self, database_url: str, cache: InvalidationTarget | None, *, bound_seconds: float = 5.0
    ) -> None:
        self._url = database_url
        self._cache = _NoCache() if cache is None else cache
        # None: the cache's own channel, applied in batches
        self._channels: dict[str, ChannelConsumer | None] = {} if cache is None else {CHANNEL: None}
        self._bound = bound_seconds
        self._poll_seconds = bound_seconds / 4
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="velro-invalidation", daemon=True)
        self._watchdog = threading.Thread(
            target=self._watch, name="velro-invalidation-watchdog", daemon=True
        )
        self._socket_lock = threading.Lock()
        self._socket_fd: int | None = None
        self._last_round_trip = time.monotonic()
        self._start_lock = threading.Lock()
        self._started = False
        self.connected = threading.Event()
        self.stalls = 0
        self._cache.expect_heartbeats(bound_seconds)
        self._cache.distrust()

    def add_channel(self, channel: str, consumer: ChannelConsumer) -> None:
        """LISTEN on ``channel`` too and hand its notices to ``consumer`` (before ``start``)."""
        if channel in self._channels:
            raise ValueError(f"channel {channel} already has a consumer")
        self._channels[channel] = consumer

    def start(self) -> None:
        """Start the threads, once: later calls (a lazy consumer's) do nothing."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
        self._thread.start()
        self._watchdog.start()

    def stop(self) -> None:
        self._stop.set()
        self._break_connection()
        with self._start_lock:
            started = self._started
        if started:
            self._thread.join(timeout=5)
            self._watchdog.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = 0.1
            except (psycopg.Error, OSError, ListenerStalled) as error:
                if not self._stop.is_set():
                    log.warning("invalidation channel down, cache distrusted: %s", error)
            except Exception:
                # anything else must not end the thread and leave a cache trusted that
                # nothing invalidates any more: distrust, reconnect, start clean
                log.exception("invalidation listener failed, cache distrusted")
            self._cache.distrust()
            self.connected.clear()
            for consumer in self._consumers():
                consumer.disconnected()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _listen(self) -> None:
        options = listen_connection_options(self._bound)
        with psycopg.connect(self._url, autocommit=True, **options) as conn:
            self._last_round_trip = time.monotonic()
            with self._socket_lock:
                self._socket_fd = conn.fileno()
            try:
                conn.execute("; ".join(f"listen {channel}" for channel in self._channels))
                self._round_trip_done()
                self._cache.trust_again()
                for consumer in self._consumers():
                    consumer.connected()
                self.connected.set()
                while not self._stop.is_set():
                    self._dispatch(list(conn.notifies(timeout=self._poll_seconds, stop_after=1)))
                    # drain what else is there without waiting, as one batch
                    self._dispatch(list(conn.notifies(timeout=0, stop_after=NOTICES_PER_BATCH)))
                    # a quiet channel still proves the connection is alive
                    conn.execute("select 1")
                    self._round_trip_done()
            finally:
                with self._socket_lock:
                    self._socket_fd = None

    def _round_trip_done(self) -> None:
        now = time.monotonic()
        if now - self._last_round_trip > self._bound:
            # the cache stopped trusting itself meanwhile; notices held up by the stall may
            # still be on their way, so come back through a fresh LISTEN, not a heartbeat
            raise ListenerStalled(f"a round trip took {now - self._last_round_trip:.1f} s")
        self._last_round_trip = now
        self._cache.heartbeat()

    def _consumers(self) -> list[ChannelConsumer]:
        return [consumer for consumer in self._channels.values() if consumer is not None]

    def _dispatch(self, notices: list) -> None:
        """The cache's notices in batches, every other channel's to its consumer, in the
        order they were committed: evictions a commit caused are done before a consumer
        hears of a later commit (and may read through the cache)."""
        invalidations = []
        for notice in notices:
            consumer = self._channels.get(notice.channel)
            if consumer is None:
                invalidations.append(notice)
                continue
            self._apply(invalidations)
            invalidations = []
            consumer.deliver(notice.payload)
        self._apply(invalidations)

    def _apply(self, notices: list) -> None:
        tags = []
        for notice in notices:
            try:
                payload = json.loads(notice.payload)
                tags.append(f"{payload['scope']}:{payload['id']}")
            except (ValueError, KeyError, TypeError):
                log.error("ignoring malformed invalidation notice %r", notice.payload)
        if EVERYTHING in tags:  # the rules changed: no answer cached under them holds
            self._cache.forget_everything()
            return
        # notices already in the socket's buffer come in one piece, however many
        for start in range(0, len(tags), NOTICES_PER_BATCH):
            self._cache.invalidate_many(tags[start : start + NOTICES_PER_BATCH])

    # watchdog ----------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self._bound / 4):
            silent = time.monotonic() - self._last_round_trip
            if self.connected.is_set() and silent > self._bound:
                self.stalls += 1
                log.warning(
                    "invalidation channel silent for %.1f s, cache distrusted; reconnecting",
                    silent,
                )
                self._cache.distrust()
                self._break_connection()

    def _break_connection(self) -> None:
        """End a read that waits on a connection that stopped answering: shutting the
        socket down wakes it with an error, and the thread reconnects."""
        with self._socket_lock:
            if self._socket_fd is None:
                return
            try:
                sock = socket.socket(fileno=self._socket_fd)
            except OSError:
                return
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the other side
            finally:
                sock.detach()  # the fd stays psycopg's to close


# announcing ------------------------------------------------------------------------------

ANNOUNCE = (
    "select private.notify_invalidation(scope, id)"
    " from unnest(%s::text[], %s::text[]) as notice (scope, id)"
)


def announce(cur, tags: list[tuple[str, str]]) -> None:
    """Send (scope, id) notices from the caller's transaction: every instance hears them
    when it commits. For changes no trigger announces, such as a sign-out on a hosted
    project whose auth.sessions this app may not add a trigger to."""
    if tags:
        scopes, ids = zip(*tags, strict=True)
        cur.execute(ANNOUNCE, (list(scopes), [str(i) for i in ids]))
