"""Velro's Flask app: ``create_app()`` builds it; ``gunicorn 'backend:create_app()'`` serves it.

Modules, one concern each: config (settings), request_id, errors (the one error shape),
db (pool and transactions), auth (tokens, providers, routes), openapi (the Api and its
document), health. Long-lived clients live in ``app.extensions``; per-request state on ``g``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from backend import auth, db, errors, health, openapi, request_id
from backend.config import Settings, load_settings, validate


def create_app(config: Mapping[str, Any] | Settings | None = None) -> Flask:
    """Build the app. ``config`` overrides the environment (a dict of settings, or Settings)."""
    if isinstance(config, Settings):
        validate(config)
        settings = config
    else:
        settings = load_settings(config)
    app = Flask(__name__)
    app.config.update(
        SETTINGS=settings, DEBUG=settings.DEBUG, MAX_CONTENT_LENGTH=settings.MAX_CONTENT_LENGTH
    )
    logging.getLogger("backend").setLevel(settings.LOG_LEVEL.upper())
    request_id.init_app(app)
    errors.init_app(app)
    api = openapi.init_app(app)
    auth.init_app(app, api)
    db.init_app(app)  # last: the pool's threads start only once the rest is valid
    api.register_blueprint(health.blp)
    return app


def close_app(app: Flask) -> None:
    """Release what the app holds (pool, HTTP clients): for tests and clean shutdowns."""
    app.extensions[db.EXTENSION].close()
    app.extensions[auth.HTTP].close()
