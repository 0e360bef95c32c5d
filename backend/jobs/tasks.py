"""The jobs the worker runs. Each is small: read the generation, ask FAL, record the answer.

Every write goes through SQL functions that are safe to repeat (status only moves forward,
a refund happens once), so a job retried after its worker died, or run by two workers on
two machines, changes nothing twice. Each job reads the settings as it starts
(``load_settings``: the app's names, parsing and checks).
"""

from __future__ import annotations

import contextlib
import logging

import psycopg
from procrastinate import RetryStrategy, exceptions
from procrastinate.jobs import Status

from backend.config import Settings, load_settings, read_setting
from backend.fal import breaker, progress
from backend.fal.metrics import SUBMISSIONS
from backend.fal.provider import queue_for
from backend.fal.queue import FalQueue, FalRejected, FalUnavailable
from backend.fal.webhooks import webhook_url
from backend.jobs.analytics import pg_cron_schedules_it, refresh_once
from backend.jobs.database import service_transaction
from backend.jobs.engine import QUEUE, Backoff, app
from backend.observability.metrics import counted_job

log = logging.getLogger(__name__)


def every(seconds: int) -> str:
    """A cron line (with procrastinate's seconds column) firing every ``seconds`` seconds."""
    if seconds < 60:
        return f"*/{max(seconds, 1)} * * * * *"
    return f"0 */{max(seconds // 60, 1)} * * * *"


def record_breaker(settings: Settings, *, succeeded: bool) -> None:
    with service_transaction(settings.direct_database_url) as cur:
        record_outcome(cur, settings, succeeded=succeeded)


def record_outcome(cur, settings: Settings, *, succeeded: bool) -> None:
    breaker.record(
        cur,
        succeeded=succeeded,
        threshold=settings.FAL_BREAKER_THRESHOLD,
        open_seconds=settings.FAL_BREAKER_OPEN_SECONDS,
    )


@app.task(name="velro.submit_generation", queue=QUEUE, retry=Backoff())
@counted_job
def submit_generation(generation_id: str) -> None:
    """Send a pending generation to FAL's queue; it becomes ``queued`` with its request id."""
    settings = load_settings()
    with service_transaction(settings.direct_database_url) as cur:
        generation = progress.generation(cur, generation_id)
        if generation is None or generation["status"] != "pending":
            return  # deleted, cancelled or already submitted by an earlier attempt
        if generation["age_seconds"] > settings.FAL_SUBMIT_DEADLINE_SECONDS:
            progress.fail(cur, generation_id, "FAL could not be reached before the deadline")
            return
        if not breaker.allows(cur):
            raise breaker.CircuitOpen("FAL is failing: the submission waits for the breaker")
    arguments = {**generation["parameters"], "prompt": generation["prompt"]}
    try:
        request_id = queue_for(settings).submit(
            generation["model_id"], arguments, webhook_url(settings, generation_id)
        )
    except FalRejected as error:
        SUBMISSIONS.labels("rejected").inc()
        record_breaker(settings, succeeded=True)  # FAL answered: it is up
        with service_transaction(settings.direct_database_url) as cur:
            progress.fail(cur, generation_id, str(error))
        return
    except FalUnavailable:
        SUBMISSIONS.labels("unavailable").inc()
        record_breaker(settings, succeeded=False)
        raise
    SUBMISSIONS.labels("queued").inc()
    with service_transaction(settings.direct_database_url) as cur:
        recorded = progress.record_submission(cur, generation_id, request_id)
        record_outcome(cur, settings, succeeded=True)
    if not recorded:
        # cancelled (and refunded) or deleted while FAL took it: nobody waits for this run
        with contextlib.suppress(FalRejected, FalUnavailable):
            queue_for(settings).cancel(generation["model_id"], request_id)


@app.task(name="velro.cancel_fal_request", queue=QUEUE, retry=Backoff())
@counted_job
def cancel_fal_request(model_id: str, request_id: str) -> None:
    """Cancel at FAL a request whose generation a deletion dropped: nobody waits for it.
    One FAL has started or finished ends on its own; an unreachable FAL is retried."""
    with contextlib.suppress(FalRejected):
        queue_for(load_settings()).cancel(model_id, request_id)


def reconcile(settings: Settings, queue: FalQueue, generation: dict) -> str:
    """Bring one in-flight generation up to date with FAL; returns what was done."""
    generation_id = str(generation["id"])
    request_id = generation["fal_request_id"]
    model_id = generation["model_id"]
    expired = generation["age_seconds"] > settings.FAL_DEADLINE_SECONDS
    try:
        state = queue.state(model_id, request_id)
    except (FalRejected, FalUnavailable):
        if not expired:
            raise
        state = None
    if expired and (state is None or state.status != "COMPLETED"):
        # it may have started, or FAL may be down: we stop waiting either way (what FAL
        # finished, even late, is still collected below)
        with contextlib.suppress(FalRejected, FalUnavailable):
            queue.cancel(model_id, request_id)
        with service_transaction(settings.direct_database_url) as cur:
            progress.fail(cur, generation_id, "FAL did not finish before the deadline", request_id)
        return "expired"
    with service_transaction(settings.direct_database_url) as cur:
        if state.status == "IN_PROGRESS":
            progress.record(cur, generation_id, "processing")
            return "processing"
        if state.status != "COMPLETED":
            return "waiting"
        if state.error:
            progress.fail(cur, generation_id, state.error, request_id)
            return "failed"
    result = queue.result(model_id, request_id)
    with service_transaction(settings.direct_database_url) as cur:
        progress.complete(cur, generation_id, request_id, result, settings.MEDIA_MAX_OUTPUTS)
    return "completed"


def poll_once(settings: Settings, limit: int = 100) -> dict[str, int]:
    """One poller round over the generations whose webhook is late; counts by outcome."""
    with service_transaction(settings.direct_database_url) as cur:
        cur.execute(
            "select g.*, extract(epoch from now() - g.created_at) as age_seconds "
            "from public.generations_awaiting_fal(%s, %s) as g",
            (settings.FAL_POLL_AFTER_SECONDS, limit),
        )
        late = cur.fetchall()
    outcomes: dict[str, int] = {}
    queue = queue_for(settings) if late else None
    for generation in late:
        outcome = _reconciled(settings, queue, generation)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def _reconciled(settings: Settings, queue: FalQueue, generation: dict) -> str:
    """``reconcile``'s outcome, never its error: one generation that cannot be brought up to
    date (deleted since the round began, say) must not hold back the others behind it."""
    try:
        return reconcile(settings, queue, generation)
    except FalUnavailable:
        return "unreachable"
    except FalRejected as error:
        with service_transaction(settings.direct_database_url) as cur:
            progress.fail(cur, str(generation["id"]), str(error), generation["fal_request_id"])
        return "failed"
    except Exception:
        log.exception("FAL poller: generation %s could not be reconciled", generation["id"])
        return "error"


@app.periodic(cron=every(15))
@app.task(name="velro.poll_fal", queue=QUEUE, queueing_lock="velro.poll_fal")
@counted_job
def poll_fal(timestamp: int) -> None:
    outcomes = poll_once(load_settings())
    if outcomes:
        log.info("FAL poller: %s", outcomes)


@app.task(
    name="velro.copy_outputs",
    queue=QUEUE,
    retry=RetryStrategy(max_attempts=8, exponential_wait=2),
)
@counted_job
def copy_outputs(generation_id: str) -> None:
    """Copy a completed generation's outputs from FAL's expiring URLs into our storage."""
    from backend.media import copy_generation_outputs

    copy_generation_outputs(load_settings(), generation_id)


@app.periodic(cron=every(60))
@app.task(name="velro.delete_media", queue=QUEUE, queueing_lock="velro.delete_media")
@counted_job
def delete_media(timestamp: int) -> None:
    """Delete the stored outputs of generations deleted since the last run."""
    from backend.media import clean_deleted_generations_media

    clean_deleted_generations_media(load_settings())


@app.periodic(cron=every(5))
@app.task(name="velro.deliver_webhooks", queue=QUEUE, queueing_lock="velro.deliver_webhooks")
def deliver_webhooks(timestamp: int) -> None:
    """Send users' due webhook events: signed, retried with backoff, one sender per event."""
    from backend.webhooks_out import deliver_due_webhooks

    deliver_due_webhooks(load_settings())


@app.periodic(cron=every(int(read_setting("ANALYTICS_REFRESH_SECONDS")) or 300))
@app.task(name="velro.refresh_analytics", queue=QUEUE, queueing_lock="velro.refresh_analytics")
@counted_job
def refresh_analytics(timestamp: int) -> None:
    """Refresh the analytics views unless pg_cron does (or another refresh is running)."""
    settings = load_settings()
    if settings.ANALYTICS_REFRESH_SECONDS <= 0:
        return  # turned off: pg_cron or an operator refreshes
    with psycopg.connect(settings.direct_database_url, autocommit=True) as conn:
        if not pg_cron_schedules_it(conn):
            refresh_once(conn)


@app.periodic(cron=every(10))
@app.task(name="velro.retry_stalled_jobs", queue=QUEUE, queueing_lock="velro.retry_stalled")
@counted_job
async def retry_stalled_jobs(timestamp: int) -> None:
    """Jobs whose worker stopped beating (killed, machine lost) go back to the queue."""
    await retry_jobs_of_stopped_workers(load_settings().WORKER_STALLED_SECONDS)


async def retry_jobs_of_stopped_workers(seconds_since_heartbeat: float) -> int:
    manager = app.job_manager
    stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)
    for job in stalled:
        log.warning("job %s (%s): its worker stopped; retrying it", job.id, job.task_name)
        try:
            await manager.retry_job(job)
        except exceptions.UniqueViolation:
            # a periodic job whose next run is already queued under the same queueing lock:
            # that run does its work, so this one ends here instead of stopping the retries
            await manager.finish_job(job, status=Status.FAILED, delete_job=False)
    return len(stalled)
