"""A request id on every request and response, so a log line and a client report meet.

An incoming ``X-Request-ID`` is kept when it looks like an id (it may come from a load
balancer); anything else is replaced. Read it with ``request_id()``.
"""

from __future__ import annotations

import os
import random
import re

from flask import Flask, g, has_request_context, request

HEADER = "X-Request-ID"
_ids = random.Random()  # noqa: S311 (seeded from os.urandom; ids need no secrecy)
os.register_at_fork(after_in_child=_ids.seed)  # forked workers must not repeat each other
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def request_id() -> str:
    """The current request's id (made on first use), or "-" outside a request."""
    if not has_request_context():
        return "-"
    if "request_id" not in g:
        incoming = request.headers.get(HEADER, "")
        g.request_id = incoming if _SANE_ID.match(incoming) else new_id()
    return g.request_id


def new_id() -> str:
    # An id only has to be unique, not unguessable: a seeded generator saves the system
    # call that uuid4() makes on every request.
    return f"{_ids.getrandbits(128):032x}"


def _assign() -> None:
    request_id()  # a before_request hook must return None, or Flask answers with its value


def _add_header(response):
    response.headers[HEADER] = request_id()
    return response


def init_app(app: Flask) -> None:
    app.before_request(_assign)
    app.after_request(_add_header)
