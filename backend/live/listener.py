"""Generation status notices fanned out to waiters, over the process's one LISTEN connection.

Every event stream and every ``Prefer: wait`` request of a process subscribes here to the
one generation it follows. Notices on channel ``generation_status`` arrive on the connection
the cache's invalidation listener holds (``backend.cache.listener``: one per process, with
its keepalives, round trips and watchdog), which hands each to this fan-out; it passes each
to that generation's subscribers. Nobody polls.

A subscription is returned only once the connection is listening, so a caller that
subscribes and then reads the generation's current status misses nothing in between. If
the connection drops, every subscriber gets ``RESYNC`` when it is back: notices sent in
the gap are lost, so they read the current status again. When the app closes, subscribers
get ``CLOSED`` and their streams end instead of holding the shutdown. Subscriptions are
bounded (``LIVE_MAX_WAITERS`` per process): each holds a request thread of the web server,
and the rest of the threads must stay free for ordinary requests. One user holds at most
``LIVE_MAX_PER_USER`` of them; a user at that share who follows a generation they follow
already, reconnecting (``Last-Event-ID``) before its dropped stream noticed, ends the
older stream (``CLOSED``) and takes its place.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

CHANNEL = "generation_status"
RESYNC = "resync"
CLOSED = "closed"
TAKEOVER_SECONDS = 5.0  # how long a reconnect waits for its older stream to end
READY_TIMEOUT = 5.0


class Connection(Protocol):
    """The process's LISTEN connection (``InvalidationListener``)."""

    def add_channel(self, channel: str, consumer) -> None: ...

    def start(self) -> None: ...


class Busy(Exception):
    """Every live slot of this process is taken; the client should come back later."""


class NotListening(Exception):
    """The listener could not reach the database in time."""


@dataclass(frozen=True)
class Notice:
    generation_id: str
    status: str


class StatusListener:
    def __init__(self, connection: Connection, max_subscribers: int, max_per_follower: int = 1):
        self._connection = connection
        self._slots = threading.BoundedSemaphore(max_subscribers)
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[queue.Queue]] = defaultdict(set)
        # one user may not take every slot from everyone else
        self._max_per_follower = max_per_follower
        self._following: Counter[str] = Counter()
        self._held: dict[tuple[str, str], set[queue.Queue]] = defaultdict(set)  # by whom, what
        self._released = threading.Condition(self._lock)
        self._taking: set[tuple[str, str]] = set()  # takeovers in progress
        self._listening = threading.Event()
        self._stopped = threading.Event()
        connection.add_channel(CHANNEL, self)

    @contextmanager
    def subscribe(self, generation_id: str, follower: str, reconnect: bool = False):
        """Yield a queue of this generation's Notices (and RESYNC); Busy when every slot is
        taken, or the follower (a user) holds their share of them already and this is not
        an event stream reconnecting to a generation they follow."""
        key = str(generation_id)
        self._take_share(follower, key, reconnect)
        if not self._slots.acquire(blocking=False):
            self._unfollow(follower)
            raise Busy("too many live connections on this server")
        inbox: queue.Queue = queue.Queue()
        try:
            # with the cache on it is running already; off, the first follower starts it,
            # so a web worker that never streams holds no connection
            self._connection.start()
            if self._stopped.is_set() or not self._listening.wait(READY_TIMEOUT):
                raise NotListening("live status is unavailable: the database did not answer")
            with self._lock:
                self._subscribers[key].add(inbox)
                self._held[follower, key].add(inbox)
            yield inbox
        finally:
            with self._lock:
                for holder, found in ((self._subscribers, key), (self._held, (follower, key))):
                    holder[found].discard(inbox)
                    if not holder[found]:
                        del holder[found]
            self._slots.release()
            self._unfollow(follower)

    def _take_share(self, follower: str, key: str, reconnect: bool) -> None:
        """Count the follower in, within their share. An event stream reconnecting (it
        names the last event it saw) to a generation its user follows already, while the
        dropped stream still holds its slot, ends that older stream and takes its place;
        one such takeover at a time, and only while the older streams are still there."""
        with self._lock:
            if self._following[follower] >= self._max_per_follower:
                older = set(self._held.get((follower, key), ()))
                if not (reconnect and older) or (follower, key) in self._taking:
                    raise Busy(
                        "you follow as many generations live as this server allows at once:"
                        " close one of your streams or waits first"
                    )
                self._taking.add((follower, key))
                try:
                    for inbox in older:
                        inbox.put(CLOSED)
                    taken = self._released.wait_for(
                        lambda: (
                            self._following[follower] < self._max_per_follower
                            or not older & self._held.get((follower, key), set())
                        ),
                        TAKEOVER_SECONDS,
                    )
                finally:
                    self._taking.discard((follower, key))
                if not taken or self._following[follower] >= self._max_per_follower:
                    raise Busy("your earlier stream of this generation has not ended yet")
            self._following[follower] += 1

    def _unfollow(self, follower: str) -> None:
        with self._lock:
            self._following[follower] -= 1
            if not self._following[follower]:
                del self._following[follower]
            self._released.notify_all()

    def subscribers(self, generation_id: str) -> int:
        """How many of this process's requests follow the generation now."""
        with self._lock:
            return len(self._subscribers.get(str(generation_id), ()))

    def stop(self) -> None:
        """End every stream (the app is closing); the connection is the app's to close."""
        self._stopped.set()
        self._listening.clear()
        self._broadcast(CLOSED)

    # what the connection calls ---------------------------------------------------------

    def connected(self) -> None:
        if self._stopped.is_set():
            return
        self._broadcast(RESYNC)
        self._listening.set()

    def disconnected(self) -> None:
        self._listening.clear()

    def deliver(self, payload: str) -> None:
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
