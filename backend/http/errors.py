"""One error shape for every failure, made in one place.

Every error response is JSON::

    {"error": "<machine_code>", "message": "<sentence>", "request_id": "<id>"}

(validation errors add ``"details": {"<field>": ["<problem>", ...]}``).

Raise a domain error (``backend.errors``) from anywhere in a request and it becomes that
response::

    from backend.errors import NotFound, Forbidden
    raise NotFound("project not found")
    raise ApiError("a sentence", status=400, error="bad_cursor")

Postgres errors raised by our SQL functions map like PostgREST's: SQLSTATE ``PT404`` is
HTTP 404 with the function's message, and so on (see ``POSTGRES_STATUS``); constraint and
format errors are 400/409 with a generic sentence, a statement timeout is 503. SQL text
never reaches the client. Text the database cannot store (NUL, unpaired surrogates) is
refused at the boundary (backend/http/text.py); should any slip through, the driver's
``DataError``, SQLSTATE 22P05 and ``UnicodeEncodeError`` answer 400, not 500. Unhandled
exceptions are logged with the request id and answer a bare 500.
"""

from __future__ import annotations

import logging

import psycopg
from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.exceptions import NotFound as NotFoundRoute

from backend.errors import ApiError, InvalidToken, Unavailable
from backend.http import bodies, text
from backend.http.request_id import request_id

log = logging.getLogger(__name__)


UNSTORABLE_TEXT = (
    "A text value holds a character the database cannot store (a NUL or an unpaired"
    " surrogate); remove it and send the request again."
)

INTERNAL_ERROR = "Something went wrong on our side; quote the request id if you report it."

INVALID_DATA = "A value is not valid data here: check the types and ranges of what you sent."

# SQLSTATE -> (status, machine code, sentence or None to use the database's own message).
# Only our functions' PTxyz messages are shown as written: we wrote them for clients.
POSTGRES_STATUS = {
    "PT400": (400, "bad_request", None),
    "PT401": (401, "invalid_token", None),
    "PT402": (402, "insufficient_credits", None),
    "PT403": (403, "forbidden", None),
    "PT404": (404, "not_found", None),
    "PT409": (409, "conflict", None),
    "PT410": (410, "gone", None),
    "22P02": (400, "invalid_value", "A value is not in the expected format."),
    "22023": (400, "invalid_value", "A value is not allowed here."),
    "22P05": (400, "invalid_text", UNSTORABLE_TEXT),
    "23514": (400, "invalid_value", "A value is outside the allowed range."),
    "23502": (400, "invalid_value", "A required value is missing."),
    "23503": (400, "invalid_reference", "A referenced item does not exist."),
    "23505": (409, "conflict", "This already exists."),
    "42501": (403, "forbidden", "You are not allowed to do this."),
    "57014": (503, "timeout", "The database took too long to answer; try again."),
}


def error_response(
    status: int, error: str, message: str, *, headers=None, details=None
) -> Response:
    """The one place that makes an error response."""
    body = {"error": error, "message": message, "request_id": request_id()}
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def gotrue_error_response(
    status: int, code: str, message: str, extra=None, *, headers=None
) -> Response:
    """The error shape of Supabase Auth (GoTrue), which its clients parse: for /auth/v1."""
    response = jsonify({"code": status, "error_code": code, "msg": message, **(extra or {})})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def http_error_response(e: HTTPException) -> Response:
    if isinstance(e, InternalServerError) and e.original_exception is not None:
        return unhandled_error_response(e.original_exception)
    if isinstance(e, ApiError):
        return error_response(e.code, e.error, e.description, headers=e.extra_headers)
    data = getattr(e, "data", None) or {}
    if "messages" in data:
        return validation_error_response(e.code, data["messages"], data.get("headers"))
    headers = dict(e.get_headers())
    headers.pop("Content-Type", None)
    return error_response(e.code or 500, machine_code(e), _sentence(e), headers=headers)


def validation_error_response(status: int, messages: dict, headers=None) -> Response:
    """webargs' nested messages ({"json": {"email": [...]}}) as one sentence naming fields."""
    details = _flatten(messages)
    if list(details) == ["body"] and status == 400:
        return error_response(400, "invalid_json", "The request body is not valid JSON.")
    sentence = "; ".join(
        f"{field}: {' '.join(map(str, problems))}" for field, problems in details.items()
    )
    if "json" in messages and request.content_length and not request.is_json:
        # webargs reads only a JSON body: one sent as a form or text looks like no body at all
        sentence = (
            f"{sentence.rstrip('.')}. The body was sent as {request.mimetype or 'no type'}: "
            "send it as JSON, with Content-Type: application/json"
        )
    return error_response(
        status, "validation_failed", f"Invalid input. {sentence}", headers=headers, details=details
    )


def postgres_error_response(e: psycopg.Error) -> Response:
    status, error, sentence = POSTGRES_STATUS.get(e.sqlstate or "", (None, None, None))
    if status is None and isinstance(e, psycopg.DataError):
        # a value the server (class 22) or the driver refused as data: the request's fault,
        # never a 500; the driver's own refusal (no SQLSTATE) is a NUL in a text value
        status, error = 400, "invalid_value"
        sentence = UNSTORABLE_TEXT if e.sqlstate is None else INVALID_DATA
    if status is None:
        if isinstance(e, psycopg.OperationalError):
            log.warning("database unavailable [request_id=%s]: %s", request_id(), e)
            return error_response(503, "unavailable", Unavailable.description)
        return unhandled_error_response(e)
    message = sentence or (e.diag.message_primary or "").strip() or "The request failed."
    headers = InvalidToken().extra_headers if status == 401 else None
    return error_response(status, error, message, headers=headers)


def unencodable_text_response(_e: UnicodeEncodeError) -> Response:
    return error_response(400, "invalid_text", UNSTORABLE_TEXT)


def unhandled_error_response(e: BaseException) -> Response:
    log.error("unhandled error [request_id=%s]", request_id(), exc_info=e)
    return error_response(500, "internal_error", INTERNAL_ERROR)


def machine_code(e: HTTPException) -> str:
    """The error code of an HTTP error: its name in snake case ("Not Found" -> not_found)."""
    special = {413: "payload_too_large", 422: "validation_failed"}
    if e.code in special:
        return special[e.code]
    return (e.name or "error").lower().replace(" ", "_").replace("'", "")


def _sentence(e: HTTPException) -> str:
    if e.code == 404 and e.description == NotFoundRoute.description:
        return f"Nothing is at {request.path}; check the method and URL."
    if e.code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return f"The request body is larger than the limit of {limit} bytes."
    return e.description or e.name


def _flatten(messages, prefix: str = "") -> dict[str, list[str]]:
    """{"json": {"a": {"b": ["x"]}}} -> {"a.b": ["x"]}; the json location prefix is dropped."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, list):
        flat[prefix or "body"] = [str(m) for m in messages]
        return flat
    for key, value in messages.items():
        name = str(key) if prefix or key not in ("json", "form") else ""
        if name == "_schema":
            name = ""
        path = ".".join(p for p in (prefix, name) if p)
        if isinstance(value, dict):
            flat.update(_flatten(value, path))
        else:
            flat[path or "body"] = [str(m) for m in value]
    return flat


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(psycopg.Error, postgres_error_response)
    app.register_error_handler(UnicodeEncodeError, unencodable_text_response)
    app.before_request(text.refuse_bad_text_in_url)
    app.before_request(bodies.refuse_misread_bodies)
