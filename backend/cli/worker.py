"""velro worker: the job worker (FAL submission, polling, media copy, analytics refresh)."""

from __future__ import annotations

import os

import click


@click.command("worker")
@click.option("--name", default=None, help="A name for this worker in the logs.")
@click.option(
    "--until-empty", is_flag=True, help="Stop once the queue is empty instead of waiting."
)
def worker(name: str | None, until_empty: bool) -> None:
    """Run jobs from $DATABASE_URL's queue until stopped (SIGINT/SIGTERM end it cleanly).

    Start as many as you like, on as many machines: each job goes to one worker, and the
    jobs of a worker that dies are retried by the others.
    """
    metrics_directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_directory:  # shared with the web workers; whichever starts first makes it
        os.makedirs(metrics_directory, exist_ok=True)
    from backend import logging as velro_logging
    from backend.config import ConfigError, load_settings
    from backend.jobs import worker as job_worker

    try:
        settings = load_settings()  # the worker refuses what the web app refuses
    except ConfigError as error:
        raise click.ClickException(str(error)) from error
    velro_logging.configure(settings)
    job_worker.run(wait=not until_empty, name=name)
