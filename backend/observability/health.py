"""Liveness and readiness: /api/v1/health/live answers while the process runs;
/api/v1/health/ready answers 200 only when the database does; /api/v1/health/cache
reports this process's cache layers.

Live and ready are for load balancers and open to all. Detail endpoints (cache today,
status and metrics later) describe the running system, so they are for operators
(``require_operator``): the ``METRICS_TOKEN`` bearer, or a signed-in user whose
``app_metadata.role`` is ``admin`` (app_metadata is set only by the service role, never
by the user). Started for local work (development, test) without a METRICS_TOKEN they are
open, so ``make run`` can show them.
"""

from __future__ import annotations

import functools
import hmac
import logging

import psycopg
from flask import current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from backend.auth.guard import BEARER_SCHEME, bearer_token, session_is_live, verify_token
from backend.cache import cache
from backend.db import pool
from backend.errors import Forbidden, InvalidToken, Unavailable

log = logging.getLogger(__name__)

blp = Blueprint("health", __name__, url_prefix="/api/v1/health", description="Health checks")


class HealthSchema(Schema):
    status = fields.String()
    checks = fields.Dict(keys=fields.String(), values=fields.String())


@blp.get("/live")
@blp.response(200, HealthSchema)
def live():
    """The process is up."""
    return {"status": "ok"}


@blp.get("/ready")
@blp.response(200, HealthSchema)
def ready():
    """The app can serve: the database answers."""
    try:
        with pool().connection() as conn:
            conn.execute("select 1")
    except psycopg.Error as error:
        log.warning("not ready: the database does not answer: %s", error)
        raise Unavailable("The database is not reachable yet.", error="not_ready") from None
    return {"status": "ready", "checks": {"database": "ok"}}


class CacheLayerSchema(Schema):
    hits = fields.Integer()
    misses = fields.Integer()
    hit_rate = fields.Float(allow_none=True)
    errors = fields.Integer()
    size = fields.Integer()
    max_size = fields.Integer()
    evictions = fields.Integer()
    enabled = fields.Boolean()
    available = fields.Boolean()
    tags_indexed = fields.Integer(
        metadata={"description": "L1: tags with entries depending on them"}
    )
    trusted = fields.Boolean(
        metadata={"description": "L2: its Redis evicts nothing (maxmemory-policy noeviction)"}
    )
    maxmemory_policy = fields.String(
        allow_none=True, metadata={"description": "L2: Redis's policy; null when unknown"}
    )


class CacheStatsSchema(Schema):
    trusted = fields.Boolean(
        metadata={
            "description": "false while invalidations cannot arrive: the listener is down or"
            " completed no round trip within its bound"
        }
    )
    invalidations_received = fields.Integer()
    bypassed = fields.Integer(metadata={"description": "reads sent past the cache"})
    coalesced = fields.Integer(
        metadata={"description": "misses served by a concurrent load of the same key"}
    )
    seconds_since_listener_round_trip = fields.Float(allow_none=True)
    listener_bound_seconds = fields.Float(allow_none=True)
    l1 = fields.Nested(CacheLayerSchema)
    l2 = fields.Nested(CacheLayerSchema)


def require_operator(view):
    """Only operators see details: the metrics token or an admin's token (401/403 otherwise)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        current = current_app.config["SETTINGS"]
        if current.is_local and not current.METRICS_TOKEN:
            return view(*args, **kwargs)
        token = bearer_token()
        if token is None:
            raise InvalidToken("Send the metrics token or an admin's token as a bearer token.")
        if current.METRICS_TOKEN and hmac.compare_digest(
            token.encode(), current.METRICS_TOKEN.encode()
        ):
            return view(*args, **kwargs)
        claims = verify_token(token)
        if not session_is_live(claims):
            raise InvalidToken("This session has ended; sign in again.")
        if (claims.get("app_metadata") or {}).get("role") != "admin":
            raise Forbidden("Only operators (app_metadata.role admin) may read this.")
        return view(*args, **kwargs)

    return Blueprint.doc(security=[{BEARER_SCHEME: []}])(wrapper)


@blp.get("/cache")
@require_operator
@blp.response(200, CacheStatsSchema)
def cache_stats():
    """This process's cache: hits, misses, hit rate, size, evictions, invalidations.

    Operators only in production: the METRICS_TOKEN bearer or an admin's token.
    """
    return cache().stats()
