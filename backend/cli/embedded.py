"""The embedded Postgres used when no DATABASE_URL is given (`make run`, `make db`).

pgserver (PyPI) bundles PostgreSQL 16 and serves it on a unix socket from a data
directory; it has no pgcrypto, pgTAP or pg_cron, which the migrations must tolerate. The
server is left running when this process exits (`cleanup_mode=None`) so that the command
that starts it (`velro db url`) can hand the URL to gunicorn; `velro db stop` (called by
`make clean`) stops it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import click

from backend.cli.migrations import REPO_ROOT

DATA_DIR = REPO_ROOT / ".pgdata"


def data_dir() -> Path:
    """Where the embedded server keeps its files: $VELRO_PGDATA, else .pgdata/."""
    return Path(os.environ.get("VELRO_PGDATA", DATA_DIR))


class EmbeddedUnavailable(click.ClickException):
    """pgserver is not installed: it is the ``local`` extra, not a production dependency."""


def _import_pgserver():
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import that XDG_RUNTIME_DIR is unset; pgserver copes
            warnings.simplefilter("ignore")
            import pgserver
            from pgserver import _commands, utils
    except ImportError as error:
        raise EmbeddedUnavailable(
            "DATABASE_URL is not set and the embedded Postgres is not installed:"
            " set DATABASE_URL, or pip install -e '.[local]' (make run does)"
        ) from error
    return pgserver, _commands, utils


def start(directory: Path | None = None) -> str:
    """Start (or find running) the embedded server and return its connection URL."""
    pgserver, _, _ = _import_pgserver()
    server = pgserver.get_server(directory or data_dir(), cleanup_mode=None)
    return server.get_uri()


def stop(directory: Path | None = None) -> bool:
    """Stop the embedded server if it runs; return whether one was running."""
    _, commands, utils = _import_pgserver()
    directory = Path(directory or data_dir())
    info = utils.PostmasterInfo.read_from_pgdata(directory) if directory.exists() else None
    if info is None or not info.is_running():
        return False
    user = "pgserver" if os.geteuid() == 0 else None
    commands.pg_ctl(["-w", "stop"], pgdata=directory, user=user)
    return True


def database_url() -> str:
    """$DATABASE_URL when set, else the embedded server's URL (started on demand)."""
    return os.environ.get("DATABASE_URL") or start()
