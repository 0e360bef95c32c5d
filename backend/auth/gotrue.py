"""/auth/v1: the Supabase Auth (GoTrue) routes, answered by the local provider.

The official Supabase clients sign up, confirm an email (verify, resend), sign in,
refresh, read the user and sign out against these routes unchanged, so request and
response bodies follow GoTrue's JSON, errors included:
``{"code": <status>, "error_code": "<code>", "msg": "<sentence>"}``.
Registered only when AUTH_MODE=local.
"""

from __future__ import annotations

import logging

import psycopg
from flask import Blueprint, current_app, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from backend.auth.guard import VERIFIER, AuthContext, bearer_token, session_is_live
from backend.auth.providers.base import AuthFailure
from backend.auth.routes import calling_client, provider
from backend.errors import ApiError, InvalidToken
from backend.http.access import access
from backend.http.errors import UNSTORABLE_TEXT, gotrue_error_response, http_error_response
from backend.http.request_id import request_id
from backend.http.text import PROBLEM, JsonObject, problem_with

log = logging.getLogger(__name__)
SIGNER = "velro.token_signer"

blp = Blueprint("gotrue", __name__, url_prefix="/auth/v1")


@blp.post("/signup")
@access("credentials")
def signup():
    body = _json_body()
    session = _local().sign_up(
        _text(body, "email"), _text(body, "password"), _metadata(body), client=calling_client()
    )
    # GoTrue answers the user alone while the email waits for confirmation
    return jsonify(session.as_gotrue() if session.access_token else session.user)


@blp.post("/verify")
@access("credentials")
def verify():
    """Confirm a sign-up's email (type signup or email) by token_hash, or token and email."""
    body = _json_body()
    session = _local().verify(
        _text(body, "type"),
        _text(body, "token_hash"),
        _text(body, "token"),
        _text(body, "email"),
        client=calling_client(),
    )
    return jsonify(session.as_gotrue())


@blp.post("/resend")
@access("credentials")
def resend():
    """Mail a new confirmation code; the same answer whether or not the address signed up."""
    body = _json_body()
    if _text(body, "type") not in ("signup", "email"):
        raise AuthFailure(400, "validation_failed", "Only the signup confirmation is resent")
    _local().resend_confirmation(_text(body, "email"))
    return jsonify({})


@blp.post("/token")
@access("credentials")
def token():
    grant_type = request.args.get("grant_type")
    body = _json_body()
    if grant_type == "password":
        session = _local().sign_in(
            _text(body, "email"), _text(body, "password"), client=calling_client()
        )
    elif grant_type == "refresh_token":
        session = _local().refresh(_text(body, "refresh_token"), client=calling_client())
    else:
        raise AuthFailure(400, "validation_failed", "unsupported_grant_type")
    return jsonify(session.as_gotrue())


@blp.post("/logout")
@access("account", "read")
def logout():
    auth = _authenticated()
    _local().sign_out(auth, request.args.get("scope", "global"), client=calling_client())
    return "", 204


@blp.get("/user")
@access("account", "read")
def user():
    auth = _authenticated()
    found = _local().get_user(auth.user_id)
    if found is None:
        raise AuthFailure(403, "user_not_found", "User from sub claim in JWT does not exist")
    return jsonify(found)


@blp.get("/.well-known/jwks.json")
@access("public")
def jwks():
    response = jsonify(current_app.extensions[SIGNER].public_jwks())
    response.headers["Cache-Control"] = "public, max-age=600"
    return response


@blp.errorhandler(HTTPException)
def gotrue_error(error: HTTPException):
    """Every error under /auth/v1 in GoTrue's shape, which the clients parse."""
    if isinstance(error, AuthFailure):
        status, code, message, extra = error.code, error.error, error.description, error.extra
    elif error.code == 500:
        return _unexpected_failure(error.original_exception or error)
    elif isinstance(error, ApiError):  # e.g. the mailer's 503
        status, code, message, extra = error.code, error.error, error.description, {}
    elif _is_unreadable_json(error):
        status, code, message, extra = 400, "bad_json", "Could not parse request body as JSON", {}
    else:
        # what werkzeug's error says besides its body, e.g. a 405's Allow
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        return gotrue_error_response(
            error.code, _code_for(error), error.description, headers=headers
        )
    return gotrue_error_response(status, code, message, extra)


@blp.app_errorhandler(NotFound)
@blp.app_errorhandler(MethodNotAllowed)
def gotrue_routing_error(error: HTTPException):
    """A wrong method or an unknown path under /auth/v1 also answers in GoTrue's shape.

    Routing fails before Flask knows the blueprint, so the blueprint's handler above never
    sees these: they reach the app, which answers in the common shape outside /auth/v1.
    """
    if request.path == blp.url_prefix or request.path.startswith(f"{blp.url_prefix}/"):
        return gotrue_error(error)
    return http_error_response(error)


@blp.errorhandler(psycopg.Error)
def gotrue_database_error(error: psycopg.Error):
    if isinstance(error, psycopg.DataError):
        return _unstorable_text(error)
    return _unexpected_failure(error)


@blp.errorhandler(UnicodeEncodeError)
def _unstorable_text(_error: Exception):
    """A backstop: text the database cannot store is the request's fault, never a 500."""
    return gotrue_error_response(400, "validation_failed", UNSTORABLE_TEXT)


def _unexpected_failure(error: BaseException):
    log.error("unhandled error [request_id=%s]", request_id(), exc_info=error)
    status = 503 if isinstance(error, psycopg.OperationalError) else 500
    return gotrue_error_response(status, "unexpected_failure", "Unexpected failure")


def _is_unreadable_json(error: HTTPException) -> bool:
    # webargs' refusal of a body that is not JSON: a list of messages for the whole body
    # (a field's problems come as a dict of fields instead)
    messages = (getattr(error, "data", None) or {}).get("messages")
    return (
        error.code == 400 and isinstance(messages, dict) and isinstance(messages.get("json"), list)
    )


def _code_for(error: HTTPException) -> str:
    return {413: "request_too_large", 404: "not_found", 405: "method_not_allowed"}.get(
        error.code, "validation_failed"
    )


def _local():
    return provider()


def _authenticated() -> AuthContext:
    token = bearer_token()
    if token is None:
        raise AuthFailure(401, "no_authorization", "This endpoint requires a Bearer token")
    try:
        claims = current_app.extensions[VERIFIER].verify(token)
    except InvalidToken as error:
        raise AuthFailure(403, "bad_jwt", f"invalid JWT: {error.description}") from None
    if not session_is_live(claims):
        raise AuthFailure(
            403, "session_not_found", "Session from session_id claim in JWT does not exist"
        )
    return AuthContext(token=token, claims=claims)


def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise AuthFailure(400, "bad_json", "Could not parse request body as JSON")
    return body


def _text(body: dict, name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise AuthFailure(
            400, "bad_json", f"Could not parse request body as JSON: {name} must be a string"
        )
    if problem := problem_with(value):
        raise AuthFailure(422, "validation_failed", f"{name}: {problem}")
    return value


def _metadata(body: dict) -> dict:
    """The signup's user metadata ("data"), its keys and strings storable at any depth."""
    data = body.get("data")
    if not isinstance(data, dict):
        return {}
    try:
        JsonObject().deserialize(data)
    except ValidationError as error:
        field = next(iter(error.normalized_messages()), "")
        raise AuthFailure(422, "validation_failed", f"data.{field}: {PROBLEM}") from None
    return data
