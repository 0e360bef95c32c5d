"""Request bodies that the views' parsers would misread, refused before any hook reads them.

- A body sent in chunks (no Content-Length) over MAX_CONTENT_LENGTH: werkzeug stops reading
  at the limit without complaint, so the view would act on the first MiB of it. Refused
  with 413, as the same body with a Content-Length is.
- A JSON body Python's json cannot read without raising more than a decoding error: one
  nested past the interpreter's recursion limit (RecursionError), an integer of more than
  4,300 digits (a ValueError that is not a JSONDecodeError). webargs handles only the latter
  kind as bad JSON, Flask's ``get_json(silent=True)`` only ValueErrors, so either would
  escape as a 500; inside a rate limit's key function, flask-limiter would even take it for
  a storage failure and stop counting. Refused as webargs refuses malformed JSON: 400
  invalid_json.
"""

from __future__ import annotations

from flask import request
from webargs.flaskparser import abort, is_json_request
from werkzeug.exceptions import BadRequest


def refuse_misread_bodies() -> None:
    """before_request: see the module's docstring."""
    body = request.get_data(cache=True)
    if request.content_length is None and body:
        request.stream.read(1)  # past the limit, werkzeug raises 413 only when asked for more
    if not body or not is_json_request(request):
        return  # no body: the view decides whether it needs one
    try:
        # parsed once, and kept for the hooks and views that ask Flask for it again (the
        # rate limits' email key, GoTrue's routes); webargs parses on its own
        request.get_json(force=True)
    except (BadRequest, RecursionError):  # Flask answers a ValueError with BadRequest
        abort(400, messages={"json": ["Invalid JSON body."]})
