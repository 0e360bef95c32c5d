"""Domain errors: an HTTP status, a machine code and a sentence for the client.

Raise one anywhere (the db layer, a provider, a view); ``backend.http.errors`` turns it
into the one error shape. They are werkzeug HTTP exceptions, not Flask: the layers below
the web (db, cache, auth providers) may raise them without importing Flask.
"""

from __future__ import annotations

from werkzeug.exceptions import HTTPException


class ApiError(HTTPException):
    """A domain error: an HTTP status, a machine code and a sentence for the client."""

    code = 400
    error = "bad_request"
    description = "The request is not valid."

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        error: str | None = None,
        headers: dict | None = None,
    ):
        super().__init__(description=message)
        if status is not None:
            self.code = status
        if error is not None:
            self.error = error
        self.extra_headers = headers or {}


class InvalidToken(ApiError):
    code, error = 401, "invalid_token"
    description = "A valid bearer token is required."

    def __init__(self, message: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.extra_headers.setdefault("WWW-Authenticate", 'Bearer error="invalid_token"')


class Forbidden(ApiError):
    code, error = 403, "forbidden"
    description = "You are not allowed to do this."


class NotFound(ApiError):
    code, error = 404, "not_found"
    description = "Not found."


class Unavailable(ApiError):
    code, error = 503, "unavailable"
    description = "A service this request needs is unavailable; try again shortly."
