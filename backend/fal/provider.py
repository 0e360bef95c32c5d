"""Which FAL the pipeline talks to: one place for the worker, the cancel route and the
webhook verifier to ask, so a second provider (a simulator for local work) plugs in here."""

from __future__ import annotations

from backend.fal.queue import FalQueue, FalUnavailable
from backend.jobs.settings import PipelineSettings


def queue_for(settings: PipelineSettings) -> FalQueue:
    """FAL's queue through the official client; FalUnavailable without a key."""
    if not settings.FAL_KEY:
        raise FalUnavailable("FAL_KEY is not set: there is no FAL provider to talk to")
    return FalQueue(settings.FAL_KEY)


def jwks_url_for(settings: PipelineSettings) -> str:
    """Where the keys that sign this provider's webhooks are published."""
    return settings.FAL_JWKS_URL
