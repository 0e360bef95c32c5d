"""Live status: Server-Sent Events of a generation's progress and ``Prefer: wait``.

- ``listener``: one LISTEN connection per process (started by the first subscriber) that
  fans ``generation_status`` notices out to subscribers; bounded per process.
- ``follow``: what both uses share: order of statuses, waiting for a generation to end.
- ``routes``: ``GET /api/v1/generations/{id}/events``.

It may import ``backend.db``, ``backend.config`` and Flask (routes only).
"""

from __future__ import annotations

from flask import Flask, current_app

from backend.live.listener import StatusListener

EXTENSION = "velro.live"


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    app.extensions[EXTENSION] = StatusListener(
        settings.direct_database_url, settings.live_max_waiters
    )


def listener() -> StatusListener:
    return current_app.extensions[EXTENSION]


def close(app: Flask) -> None:
    if EXTENSION in app.extensions:
        app.extensions[EXTENSION].stop()
