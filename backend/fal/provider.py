"""Which FAL the pipeline talks to: one place for the worker, the cancel route and the
webhook verifier to ask, so a second provider (a simulator for local work) plugs in here."""

from __future__ import annotations

import functools

from backend.fal.queue import FalQueue, FalUnavailable
from backend.jobs.settings import PipelineSettings


def queue_for(settings: PipelineSettings) -> FalQueue:
    """FAL's queue through the official client; FalUnavailable without a key."""
    if not settings.FAL_KEY:
        raise FalUnavailable("FAL_KEY is not set: there is no FAL provider to talk to")
    return _queue(settings.FAL_KEY)


@functools.lru_cache(maxsize=4)
def _queue(key: str) -> FalQueue:
    # one client per process and key: its connections (and TLS sessions) are reused
    return FalQueue(key)


def jwks_url_for(settings: PipelineSettings) -> str:
    """Where the keys that sign this provider's webhooks are published."""
    return settings.FAL_JWKS_URL
