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

from backend.migrations import REPO_ROOT

DATA_DIR = REPO_ROOT / ".pgdata"


def data_dir() -> Path:
    """Where the embedded server keeps its files: $VELRO_PGDATA, else .pgdata/."""
    return Path(os.environ.get("VELRO_PGDATA", DATA_DIR))


def start(directory: Path | None = None) -> str:
    """Start (or find running) the embedded server and return its connection URL."""
    with warnings.catch_warnings():
        # platformdirs warns at import that XDG_RUNTIME_DIR is unset; pgserver copes with it
        warnings.simplefilter("ignore")
        import pgserver

    server = pgserver.get_server(directory or data_dir(), cleanup_mode=None)
    return server.get_uri()


def stop(directory: Path | None = None) -> bool:
    """Stop the embedded server if it runs; return whether one was running."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import pg_ctl
        from pgserver.utils import PostmasterInfo

    directory = Path(directory or data_dir())
    info = PostmasterInfo.read_from_pgdata(directory) if directory.exists() else None
    if info is None or not info.is_running():
        return False
    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "stop"], pgdata=directory, user=user)
    return True


def database_url() -> str:
    """$DATABASE_URL when set, else the embedded server's URL (started on demand)."""
    return os.environ.get("DATABASE_URL") or start()
