"""Following one generation: its statuses in order, and waiting until it ends."""

from __future__ import annotations

import logging
import queue
import re
import time
from collections.abc import Callable

import psycopg

from backend.errors import ApiError
from backend.live.listener import CLOSED, RESYNC, Busy, Notice, NotListening, StatusListener

log = logging.getLogger(__name__)

# a status only moves forward: a notice at or behind what the follower saw is old news
ORDER = {"pending": 0, "queued": 1, "processing": 2, "completed": 3, "failed": 3, "cancelled": 3}
FINISHED = ("completed", "failed", "cancelled")
MAX_WAIT = 60
PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*([^,;\s]*)", re.IGNORECASE)


class BadPreference(ValueError):
    """A ``Prefer: wait=N`` we cannot honour as written; the message says what to send."""


def requested_wait(prefer: str | None) -> int | None:
    """N from ``Prefer: wait=N`` (1..60), None without a wait preference."""
    if not prefer:
        return None
    match = PREFER_WAIT.search(prefer)
    if match is None:
        return None
    value = match.group(1)
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_WAIT:
        raise BadPreference(f"Prefer: wait must be a whole number of seconds from 1 to {MAX_WAIT}")
    return int(value)


def is_later(status: str, than: str) -> bool:
    return ORDER.get(status, -1) > ORDER.get(than, -1)


def wait_until_finished(
    listener: StatusListener,
    generation_id: str,
    follower: str,
    seconds: float,
    read: Callable[[], dict | None],
) -> tuple[dict | None, bool]:
    """Wait up to ``seconds`` for the generation to end; ``read()`` reads it as the caller
    (``follower``, whose share of the live slots the wait takes).

    Returns the last good read (None when there was none) and whether the wait was applied:
    False when every live slot was taken or the listener is down (the caller answers at once
    instead), and False when a read failed (see ``LastGoodRead``).
    """
    reads = LastGoodRead(read)
    try:
        with listener.subscribe(generation_id, follower) as inbox:
            reads.again()  # after subscribing: an end before this read is seen here
            _follow(inbox, reads, time.monotonic() + seconds)
    except (Busy, NotListening):
        reads.again()
        return reads.generation, False
    return reads.generation, not reads.failed


def _follow(inbox: queue.Queue, reads: LastGoodRead, deadline: float) -> None:
    """Read the generation again whenever it may have ended, until it has, a read fails or
    the deadline passes."""
    while not reads.failed and reads.generation["status"] not in FINISHED:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            notice = inbox.get(timeout=remaining)
        except queue.Empty:
            return
        if notice == CLOSED:
            reads.again()  # what it is now, since the wait ends early
            return
        if notice == RESYNC or (isinstance(notice, Notice) and notice.status in FINISHED):
            reads.again()


class LastGoodRead:
    """The generation as last read. A read that fails (the caller's session ended, they may
    no longer read it, the database did not answer) keeps the read before it and ends the
    wait: by then the generation exists and was charged, so the answer must carry it, never
    an error that hides its id and invites paying again."""

    def __init__(self, read: Callable[[], dict | None]):
        self._read = read
        self.generation: dict | None = None
        self.failed = False

    def again(self) -> None:
        try:
            current = self._read()
        except ApiError as refused:  # a logout during the wait, say
            log.info("a wait's read was refused (%s); answering with the last good read", refused)
            current = None
        except psycopg.Error as error:
            log.warning("a wait's read failed (%s); answering with the last good read", error)
            current = None
        if current is None:
            self.failed = True
        else:
            self.generation = current
