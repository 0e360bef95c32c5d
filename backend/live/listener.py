"""One LISTEN connection per process, fanning generation status notices out to waiters.

Every event stream and every ``Prefer: wait`` request of a process subscribes here to the
one generation it follows; one thread holds the process's only connection on channel
``generation_status`` and hands each notice to that generation's subscribers. Nobody polls.

A subscription is returned only once the connection is listening, so a caller that
subscribes and then reads the generation's current status misses nothing in between. If
the connection drops, every subscriber gets ``RESYNC`` when it is back: notices sent in
the gap are lost, so they read the current status again. A connection that stops answering
without closing (a dropped route, a dead pooler) is found by a round trip every few seconds
under a TCP user timeout, and replaced. When the app closes, subscribers get ``CLOSED`` and
their streams end instead of holding the shutdown. Subscriptions are bounded
(``LIVE_MAX_WAITERS`` per process): each holds a request thread of the web server, and
the rest of the threads must stay free for ordinary requests.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "generation_status"
RESYNC = "resync"
CLOSED = "closed"
ROUND_TRIP_SECONDS = 5.0
READY_TIMEOUT = 5.0
RECONNECT_DELAY = 1.0
CONNECT_OPTIONS = {
    "autocommit": True,
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms: unacknowledged data this long means the peer is gone
    "application_name": "velro-live",
}


class Busy(Exception):
    """Every live slot of this process is taken; the client should come back later."""


class NotListening(Exception):
    """The listener could not reach the database in time."""


@dataclass(frozen=True)
class Notice:
    generation_id: str
    status: str


class StatusListener:
    def __init__(self, database_url: str, max_subscribers: int):
        self._url = database_url
        self._slots = threading.BoundedSemaphore(max_subscribers)
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[queue.Queue]] = defaultdict(set)
        self._listening = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def subscribe(self, generation_id: str):
        """Yield a queue of this generation's Notices (and RESYNC); Busy when full."""
        if not self._slots.acquire(blocking=False):
            raise Busy("too many live connections on this server")
        inbox: queue.Queue = queue.Queue()
        key = str(generation_id)
        try:
            self._ensure_started()
            if not self._listening.wait(READY_TIMEOUT):
                raise NotListening("live status is unavailable: the database did not answer")
            with self._lock:
                self._subscribers[key].add(inbox)
            yield inbox
        finally:
            with self._lock:
                self._subscribers[key].discard(inbox)
                if not self._subscribers[key]:
                    del self._subscribers[key]
            self._slots.release()

    def subscribers(self, generation_id: str) -> int:
        """How many of this process's requests follow the generation now."""
        with self._lock:
            return len(self._subscribers.get(str(generation_id), ()))

    def _ensure_started(self) -> None:
        # started by the first subscriber: a web worker that never streams holds no connection
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="velro-live", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._broadcast(CLOSED)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._listen()
            except psycopg.Error as error:
                log.warning("live status listener lost its connection: %s", error)
            self._listening.clear()
            self._stopped.wait(RECONNECT_DELAY)

    def _listen(self) -> None:
        with psycopg.connect(self._url, **CONNECT_OPTIONS) as conn:
            conn.execute(f"listen {CHANNEL}")
            self._broadcast(RESYNC)
            self._listening.set()
            checked = time.monotonic()
            while not self._stopped.is_set():
                for notify in conn.notifies(timeout=1.0):  # wakes each second to see stop()
                    self._deliver(notify.payload)
                if time.monotonic() - checked >= ROUND_TRIP_SECONDS:
                    conn.execute("select 1")  # a silent connection fails here, not never
                    checked = time.monotonic()

    def _deliver(self, payload: str) -> None:
        try:
            data = json.loads(payload)
            notice = Notice(str(data["id"]), str(data["status"]))
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed generation_status notice: %.200s", payload)
            return
        with self._lock:
            inboxes = list(self._subscribers.get(notice.generation_id, ()))
        for inbox in inboxes:
            inbox.put(notice)

    def _broadcast(self, message: str) -> None:
        with self._lock:
            inboxes = [inbox for group in self._subscribers.values() for inbox in group]
        for inbox in inboxes:
            inbox.put(message)
