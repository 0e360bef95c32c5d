"""JSON bodies that Python's json cannot read without raising more than a decoding error.

One nested past the interpreter's recursion limit raises RecursionError, and an integer of
more than 4,300 digits a ValueError that is not a JSONDecodeError. webargs handles only the
latter kind as bad JSON, Flask's ``get_json(silent=True)`` only ValueErrors, so either
would escape as a 500; inside a rate limit's key function, flask-limiter would even take it
for a storage failure and stop counting. Such a body is refused here, before any other
hook reads it, as webargs refuses malformed JSON: 400 invalid_json.
"""

from __future__ import annotations

import json

from flask import request
from webargs.flaskparser import abort, is_json_request


def refuse_unreadable_json() -> None:
    """before_request: a JSON body json.loads cannot read is the same 400 as malformed JSON."""
    if not is_json_request(request):
        return
    body = request.get_data(cache=True)
    if not body:
        return  # no body: the view decides whether it needs one
    try:
        json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        abort(400, messages={"json": ["Invalid JSON body."]})
