"""Liveness and readiness: /api/v1/health/live answers while the process runs;
/api/v1/health/ready answers 200 only when the database does; /api/v1/health/cache
reports this process's cache layers."""

from __future__ import annotations

import logging

import psycopg
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from backend.cache import cache
from backend.db import pool
from backend.errors import Unavailable

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


@blp.get("/cache")
@blp.response(200, CacheStatsSchema)
def cache_stats():
    """This process's cache: hits, misses, hit rate, size, evictions, invalidations."""
    return cache().stats()
