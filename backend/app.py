"""The app factory: ``create_app()`` builds the Flask app and only wires the packages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from backend import api, cache, db, live
from backend import logging as velro_logging
from backend.api import refusals
from backend.auth import mailer
from backend.auth import wiring as auth
from backend.auth.guard import RequestCaller
from backend.cache.listener import EXTENSION as LISTENER
from backend.cache.listener import InvalidationListener
from backend.config import Settings, load_settings, validate
from backend.fal import simulated_routes
from backend.http import docs, errors, headers, limits, openapi, request_id
from backend.live import routes as live_routes
from backend.media import routes as media_routes
from backend.observability import health, metrics
from backend.webhooks_out import routes as webhooks_out_routes


def create_app(config: Mapping[str, Any] | Settings | None = None) -> Flask:
    """Build the app. ``config`` overrides the environment (a dict of settings, or Settings)."""
    if isinstance(config, Settings):
        validate(config)
        settings = config
    else:
        settings = load_settings(config)
    app = Flask(__name__, static_folder=None)  # no static files: no route to serve them
    app.config.update(
        SETTINGS=settings, DEBUG=settings.DEBUG, MAX_CONTENT_LENGTH=settings.MAX_CONTENT_LENGTH
    )
    velro_logging.configure(settings)
    if settings.TRUSTED_PROXIES:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=settings.TRUSTED_PROXIES, x_proto=settings.TRUSTED_PROXIES
        )
    request_id.init_app(app)
    metrics.init_app(app)  # early: its timer starts before any other hook can refuse
    errors.init_app(app)
    headers.init_app(app)
    spec = openapi.init_app(app)
    docs.init_app(app)
    mailer.init_app(app)  # before auth: the local provider sends confirmations through it
    auth.init_app(app, spec)
    spec.register_blueprint(health.blp)
    app.register_blueprint(health.prometheus_blp)
    api.register(spec)
    refusals.init_app(app)
    for blueprint in (media_routes.blp, live_routes.blp, webhooks_out_routes.blp):
        spec.register_blueprint(blueprint)
    if simulated_routes.uses_simulator(settings):
        # the simulated provider's keys and files; not an API of ours, so not in the document
        app.register_blueprint(simulated_routes.blp)
    limits.init_app(app)  # after the routes: it sets the tight limits by endpoint
    # last: the threads (pool, invalidation listener) start once the rest is valid;
    # background work (analytics refresh, the FAL pipeline) runs in the worker process
    db.init_app(app, caller=RequestCaller())
    cache.init_app(app)
    _start_listener(app, settings)
    return app


def _start_listener(app: Flask, settings: Settings) -> None:
    """The process's one LISTEN connection: the cache's invalidations and live status.

    The cache is trusted only while this listener feeds it, so with the cache on it starts
    now; with it off, the first client that follows a generation starts it.
    """
    listener = InvalidationListener(
        settings.direct_database_url,
        app.extensions[cache.EXTENSION] if settings.CACHE_ENABLED else None,
        bound_seconds=settings.CACHE_LISTENER_TIMEOUT,
    )
    app.extensions[LISTENER] = listener
    live.init_app(app, listener)
    if settings.CACHE_ENABLED:
        listener.start()


def close_app(app: Flask) -> None:
    """Release what the app holds (pool, HTTP clients): for tests and clean shutdowns."""
    if LISTENER in app.extensions:
        app.extensions[LISTENER].stop()
    live.close(app)
    cache.close(app)
    health.close(app)
    app.extensions[db.EXTENSION].close()
    app.extensions[auth.HTTP].close()
