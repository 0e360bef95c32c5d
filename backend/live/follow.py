"""Following one generation: its statuses in order, and waiting until it ends."""

from __future__ import annotations

import queue
import re
import time
from collections.abc import Callable

from backend.live.listener import CLOSED, RESYNC, Busy, Notice, NotListening, StatusListener

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

    Returns the last read and whether waiting was possible (False when every live slot was
    taken or the listener is down: the caller answers at once instead).
    """
    try:
        with listener.subscribe(generation_id, follower) as inbox:
            generation = read()  # after subscribing: an end before this read is seen here
            deadline = time.monotonic() + seconds
            while generation is not None and generation["status"] not in FINISHED:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    notice = inbox.get(timeout=remaining)
                except queue.Empty:
                    break
                if notice == CLOSED:
                    generation = read()  # what it is now, since the wait ends early
                    break
                if notice == RESYNC or (isinstance(notice, Notice) and notice.status in FINISHED):
                    generation = read()
            return generation, True
    except (Busy, NotListening):
        return read(), False
