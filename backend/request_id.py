"""A request id on every request and response, so a log line and a client report meet.

An incoming ``X-Request-ID`` is kept when it looks like an id (it may come from a load
balancer); anything else is replaced. Read it with ``request_id()``.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask, g, has_request_context, request

HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def request_id() -> str:
    """The current request's id (made on first use), or "-" outside a request."""
    if not has_request_context():
        return "-"
    if "request_id" not in g:
        incoming = request.headers.get(HEADER, "")
        g.request_id = incoming if _SANE_ID.match(incoming) else uuid.uuid4().hex
    return g.request_id


def _assign() -> None:
    request_id()  # a before_request hook must return None, or Flask answers with its value


def _add_header(response):
    response.headers[HEADER] = request_id()
    return response


def init_app(app: Flask) -> None:
    app.before_request(_assign)
    app.after_request(_add_header)
