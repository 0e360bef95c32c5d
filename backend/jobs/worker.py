"""The worker process: procrastinate's worker on the pipeline queue, periodic jobs included.

Run as many as you like, on as many machines: jobs are fetched with row locks (each goes to
one worker), periodic jobs are deferred once per tick by whichever worker gets there first,
and a worker that dies has its jobs retried by the others once its heartbeat is stale.
"""

from __future__ import annotations

import logging

from backend.config import load_settings
from backend.jobs import tasks  # noqa: F401 - registers the tasks on the app
from backend.jobs.engine import QUEUE, on_database

log = logging.getLogger(__name__)


def run(database_url: str | None = None, *, wait: bool = True, name: str | None = None) -> None:
    """Work until stopped (SIGINT/SIGTERM), or until the queue is empty when not ``wait``."""
    settings = load_settings()
    if not log.isEnabledFor(logging.DEBUG):
        # the engine logs every job's start and end: periodic jobs would fill the log
        logging.getLogger("procrastinate").setLevel(logging.WARNING)
    with on_database(database_url or settings.direct_database_url) as engine:
        engine.run_worker(
            queues=[QUEUE],
            wait=wait,
            name=name,
            concurrency=settings.WORKER_CONCURRENCY,
            update_heartbeat_interval=settings.WORKER_HEARTBEAT_SECONDS,
            stalled_worker_timeout=settings.WORKER_STALLED_SECONDS,
            delete_jobs="successful",
        )
