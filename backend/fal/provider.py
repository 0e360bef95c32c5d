"""Which FAL the pipeline talks to: one place for the worker, the cancel route and the
webhook verifier to ask. With a key, FAL's queue through the official client; without one,
in a process started for local work, the simulated provider that speaks the same protocol
(production refuses to start without a key, so it never gets here)."""

from __future__ import annotations

import functools
import os

from backend.fal.queue import FalQueue, FalUnavailable
from backend.jobs.settings import PipelineSettings

LOCAL_ENVIRONMENTS = ("development", "test")


def queue_for(settings: PipelineSettings) -> FalQueue:
    """FAL's queue, or the simulator for local work; FalUnavailable when neither applies."""
    if settings.FAL_KEY:
        return _queue(settings.FAL_KEY)
    local = _local_settings()
    if local is None:
        raise FalUnavailable("FAL_KEY is not set: there is no FAL provider to talk to")
    from backend.fal.simulated_routes import simulated_queue

    return simulated_queue(local)


@functools.lru_cache(maxsize=4)
def _queue(key: str) -> FalQueue:
    # one client per process and key: its connections (and TLS sessions) are reused
    return FalQueue(key)


def jwks_url_for(settings: PipelineSettings) -> str:
    """Where the keys that sign this provider's webhooks are published."""
    local = None if settings.FAL_KEY else _local_settings()
    if local is None:
        return settings.FAL_JWKS_URL
    from backend.fal.simulated_routes import jwks_url

    return jwks_url(local)


def _local_settings():
    """The app's settings when this process runs for local work with no FAL key, else None."""
    if os.environ.get("APP_ENV") not in LOCAL_ENVIRONMENTS:
        return None
    from backend.config import load_settings
    from backend.fal.simulated_routes import uses_simulator

    settings = load_settings()
    return settings if uses_simulator(settings) else None
