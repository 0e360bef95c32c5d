"""Which FAL the pipeline talks to: one place for the worker, the cancel route and the
webhook verifier to ask, each with the settings its process validated at start. With a key,
FAL's queue through the official client; without one, in a process started for local work,
the simulated provider that speaks the same protocol (production refuses to start without
a key, so it never gets here)."""

from __future__ import annotations

import functools

from backend.config import Settings
from backend.fal.queue import FalQueue, FalUnavailable


def queue_for(settings: Settings) -> FalQueue:
    """FAL's queue, or the simulator for local work; FalUnavailable when neither applies."""
    if settings.FAL_KEY:
        return _queue(settings.FAL_KEY)
    if not settings.is_local:
        raise FalUnavailable("FAL_KEY is not set: there is no FAL provider to talk to")
    # imported here: the simulator's module is Flask's, and a worker with a key never loads it
    from backend.fal.simulated_routes import simulated_queue

    return simulated_queue(settings)


@functools.lru_cache(maxsize=4)
def _queue(key: str) -> FalQueue:
    # one client per process and key: its connections (and TLS sessions) are reused
    return FalQueue(key)


def jwks_url_for(settings: Settings) -> str:
    """Where the keys that sign this provider's webhooks are published."""
    if settings.FAL_KEY or not settings.is_local:
        return settings.FAL_JWKS_URL
    from backend.fal.simulated_routes import jwks_url

    return jwks_url(settings)
