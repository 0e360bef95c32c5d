"""The pipeline's settings, from the environment, with the defaults production runs with."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class PipelineSettings:
    DATABASE_URL: str = ""
    # the worker LISTENs for new jobs: behind a transaction pooler, give it a direct connection
    DATABASE_DIRECT_URL: str | None = None
    FAL_KEY: str | None = None
    # where FAL posts its webhooks; default <PUBLIC_URL>/api/v1/webhooks/fal
    FAL_WEBHOOK_URL: str | None = None
    PUBLIC_URL: str = "http://localhost:8000"
    FAL_JWKS_URL: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"
    # a submission that has not reached FAL this long after creation fails and is refunded
    FAL_SUBMIT_DEADLINE_SECONDS: int = 600
    # first wait between submit attempts; it doubles up to FAL_SUBMIT_RETRY_MAX_SECONDS
    FAL_SUBMIT_RETRY_SECONDS: int = 2
    FAL_SUBMIT_RETRY_MAX_SECONDS: int = 60
    # the poller asks FAL about a request whose webhook is this late
    FAL_POLL_AFTER_SECONDS: int = 120
    # and gives up on one this old (since creation), failing and refunding it
    FAL_DEADLINE_SECONDS: int = 3600
    # consecutive FAL failures that open the breaker, and how long it stays open
    FAL_BREAKER_THRESHOLD: int = 5
    FAL_BREAKER_OPEN_SECONDS: int = 30
    # how often the worker refreshes the analytics views (pg_cron, where installed, does instead)
    ANALYTICS_REFRESH_SECONDS: float = 300.0
    # a worker that has not beaten its heartbeat this long is gone: its jobs are retried
    WORKER_STALLED_SECONDS: float = 30.0
    WORKER_HEARTBEAT_SECONDS: float = 10.0
    WORKER_CONCURRENCY: int = 4

    @property
    def worker_database_url(self) -> str:
        return self.DATABASE_DIRECT_URL or self.DATABASE_URL

    @property
    def webhook_url(self) -> str:
        return self.FAL_WEBHOOK_URL or f"{self.PUBLIC_URL.rstrip('/')}/api/v1/webhooks/fal"


PARSERS = {"int": int, "float": float}


def load_pipeline_settings(environ=None, **overrides) -> PipelineSettings:
    environ = os.environ if environ is None else environ
    values = {}
    for field in fields(PipelineSettings):
        raw = environ.get(field.name)
        if raw not in (None, ""):
            values[field.name] = PARSERS.get(field.type, str)(raw)
    values.update(overrides)
    return PipelineSettings(**values)
