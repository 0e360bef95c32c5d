"""Liveness and readiness: /api/v1/health/live answers while the process runs;
/api/v1/health/ready answers 200 only when the database does."""

from __future__ import annotations

import logging

import psycopg
from flask_smorest import Blueprint
from marshmallow import Schema, fields

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
