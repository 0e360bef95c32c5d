"""Progress lines on stdout, stamped with the time since the run started."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

_START = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _START:7.1f}s] {message}", flush=True)


@contextmanager
def step(message: str) -> Iterator[None]:
    """Announce a step, then how long it took."""
    say(f"{message} ...")
    began = time.monotonic()
    yield
    say(f"{message}: done in {time.monotonic() - began:.1f}s")
