"""Refused requests on a resource (403 and 404) are counted in the audit's denials.

A refusal raised in SQL rolls its transaction back, and any record written in it, so the
record is written after the answer, in a statement of its own, through
``private.record_denial``: one row per user, resource and hour with a count, and one row
for every made-up id, so refusals cannot flood the database. The resource is the route's
first id (``/projects/{project_id}/teams/{team_id}`` counts against the project). Without a
signed-in caller (401) or a resource in the path, nothing is recorded.
"""

from __future__ import annotations

import logging

import psycopg
from flask import Flask, Response, g, request

from backend.db import pool

log = logging.getLogger(__name__)

RESOURCES = {"generation_id": "generation", "project_id": "project", "team_id": "team"}
REFUSALS = (403, 404)
RECORD = "select private.record_denial(%s, %s, %s, %s)"


def record_refusal(response: Response) -> Response:
    if response.status_code not in REFUSALS or g.get("auth") is None:
        return response
    resource = _resource()
    if resource is None:
        return response
    reason = f"{response.status_code} {request.method} {request.url_rule.rule}"
    try:
        with pool().connection() as conn:
            conn.execute(RECORD, (g.auth.claims["sub"], *resource, reason))
    except psycopg.Error as error:
        # the refusal stands; only its line in the audit is missing, and the log says so
        log.warning("a refusal was not recorded: %s", error)
    return response


def _resource() -> tuple[str, object] | None:
    for name, value in (request.view_args or {}).items():
        if name in RESOURCES:
            return RESOURCES[name], value
    return None


def init_app(app: Flask) -> None:
    app.after_request(record_refusal)
