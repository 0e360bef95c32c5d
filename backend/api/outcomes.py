"""How the resource modules answer "no": one rule for 404 versus 403, and its documentation.

After a write through RLS touched no row, the caller either cannot read the row (404, the
same answer as for a row that does not exist) or can read it but may not change it (403).
RLS answers which one: the same SELECT, as the caller, either sees the row or does not.
"""

from __future__ import annotations

import http

from flask_smorest import Blueprint

from backend.errors import Forbidden, NotFound
from backend.http.openapi import ErrorSchema


def denied_or_missing(cur, exists_sql: str, row_id, noun: str):
    """Raise 403 when the caller can read the row, else 404 (never a hint that it exists)."""
    cur.execute(exists_sql, (row_id,))
    if cur.fetchone() is not None:
        raise Forbidden(f"you can read this {noun} but your role does not allow this change")
    raise NotFound(f"{noun} not found")


def documented_errors(blp: Blueprint, *statuses: int):
    """Document the error answers a route can give, all in the common error shape."""

    def decorator(view):
        for status in statuses:
            view = blp.alt_response(
                status, schema=ErrorSchema, description=http.HTTPStatus(status).phrase
            )(view)
        return view

    return decorator
