"""Live status: Server-Sent Events of a generation's progress and ``Prefer: wait``.

- ``listener``: fans ``generation_status`` notices out to subscribers, bounded per process;
  the notices come over the process's one LISTEN connection (``backend.cache.listener``),
  started by the first subscriber when the cache is off.
- ``follow``: what both uses share: order of statuses, waiting for a generation to end.
- ``routes``: ``GET /api/v1/generations/{id}/events``.

It may import ``backend.db``, ``backend.config``, ``backend.errors`` and Flask (routes only);
the connection it listens on is handed to ``init_app``.
"""

from __future__ import annotations

from flask import Flask, current_app

from backend.live.listener import Connection, StatusListener

EXTENSION = "velro.live"


def init_app(app: Flask, connection: Connection) -> None:
    settings = app.config["SETTINGS"]
    app.extensions[EXTENSION] = StatusListener(
        connection, settings.live_max_waiters, settings.LIVE_MAX_PER_USER
    )


def listener() -> StatusListener:
    return current_app.extensions[EXTENSION]


def close(app: Flask) -> None:
    if EXTENSION in app.extensions:
        app.extensions[EXTENSION].stop()
