"""Velro's backend: ``create_app()`` builds the web app; ``gunicorn 'backend:create_app()'``
serves it; ``velro`` (``backend.cli``) is the operator's command.

One package per concern, lower layers first; each may import only the ones before it:

- ``config``: settings from the environment, checked at start;
- ``email_address``: what an email address is, for the API and the operator's command;
- ``db``: the pool, PostgREST-style transactions, rpc, SQLSTATEs as domain errors;
- ``cache``: the L1/L2 read cache, its invalidation listener, cached authorization;
- ``http``: the one error shape, request ids, security headers, rate limits, OpenAPI,
  pagination, text refused at the boundary;
- ``auth``: tokens, JWKS, the guard, routes (ours and GoTrue-compatible), providers, mailer;
- ``api``: one blueprint per resource, schemas beside them;
- ``observability``: health checks and Prometheus metrics;
- ``fal``: FAL's queue client, webhook signatures, the circuit breaker;
- ``jobs``: the worker process's jobs on the job engine (procrastinate);
- ``app``: ``create_app``, which only wires the above;
- ``cli``: the ``velro`` command and dev tooling (migration runner, embedded Postgres); it
  never imports the web app.

Importing ``backend`` loads nothing else: ``create_app`` and ``close_app`` are looked up in
``backend.app`` on first use, so that ``import backend.cli`` stays free of Flask.
"""

from __future__ import annotations

from typing import Any

_FROM_APP = ("create_app", "close_app")


def __getattr__(name: str) -> Any:
    if name in _FROM_APP:
        from backend import app

        return getattr(app, name)
    raise AttributeError(f"module 'backend' has no attribute {name!r}")
