"""/api/v1/auth: sign up, sign in, refresh, sign out and "who am I", for either provider."""

from __future__ import annotations

from flask import current_app, request
from flask_smorest import Blueprint

from backend.api.outcomes import documented_errors
from backend.auth.guard import confirm_session, current_user, require_user
from backend.auth.providers.base import AuthFailure, Client
from backend.auth.schemas import (
    CredentialsSchema,
    LogoutSchema,
    ProfileSchema,
    RefreshSchema,
    SessionSchema,
    SignupSchema,
)
from backend.db import user_query
from backend.errors import ApiError, InvalidToken
from backend.http.access import access

PROVIDER = "velro.auth_provider"

blp = Blueprint(
    "auth", __name__, url_prefix="/api/v1/auth", description="Sign-up, sign-in and sessions"
)

# GoTrue's codes that read better with another status in our API
STATUS_OVERRIDES = {
    "invalid_credentials": 401,
    "refresh_token_not_found": 401,
    "refresh_token_already_used": 401,
    "user_already_exists": 409,
    "email_exists": 409,
    "email_not_confirmed": 403,
    "user_not_found": 401,
}


def calling_client() -> Client:
    """The caller's address and user agent, which providers keep on sessions and audit lines."""
    return Client(ip=request.remote_addr, user_agent=request.user_agent.string[:255] or None)


def provider():
    return current_app.extensions[PROVIDER]


def _ours(failure: AuthFailure) -> ApiError:
    status = STATUS_OVERRIDES.get(failure.error, failure.code)
    if status == 401:
        return InvalidToken(failure.description, error=failure.error)
    return ApiError(failure.description, status=status, error=failure.error)


@blp.post("/signup")
@access("credentials")
@blp.arguments(SignupSchema)
@blp.response(201, SessionSchema)
@documented_errors(blp, 400, 403, 409, 422)
def signup(body):
    """Create an account: signed in at once, or (tokens null) once the emailed code is verified.

    Unless sign-ups are confirmed at once (AUTH_AUTOCONFIRM), the answer carries the user
    with ``confirmation_sent_at`` and null tokens, and a code goes to the address; POST
    /auth/v1/verify with it signs in.
    """
    data = {"display_name": body["display_name"]} if body.get("display_name") else {}
    try:
        return (
            provider()
            .sign_up(body["email"], body["password"], data, client=calling_client())
            .as_gotrue()
        )
    except AuthFailure as failure:
        raise _ours(failure) from None


@blp.post("/login")
@access("credentials")
@blp.arguments(CredentialsSchema)
@blp.response(200, SessionSchema)
@documented_errors(blp, 400, 401, 403, 422)
def login(body):
    """Sign in with email and password."""
    try:
        return (
            provider().sign_in(body["email"], body["password"], client=calling_client()).as_gotrue()
        )
    except AuthFailure as failure:
        raise _ours(failure) from None


@blp.post("/refresh")
@access("credentials")
@blp.arguments(RefreshSchema)
@blp.response(200, SessionSchema)
@documented_errors(blp, 400, 401, 403, 422)
def refresh(body):
    """Trade a refresh token (single use) for a new session."""
    try:
        return provider().refresh(body["refresh_token"], client=calling_client()).as_gotrue()
    except AuthFailure as failure:
        raise _ours(failure) from None


@blp.post("/logout")
@require_user
@access("account", "read")
@blp.arguments(LogoutSchema, location="query")
@blp.response(204)
@documented_errors(blp, 400, 401, 422)
def logout(query):
    """End this session (or all, or all others): its tokens stop working at once."""
    confirm_session()  # before the provider deletes it, so a live session gets its 204
    try:
        provider().sign_out(current_user(), query["scope"], client=calling_client())
    except AuthFailure as failure:
        raise _ours(failure) from None


@blp.get("/me")
@require_user
@access("account", "read")
@blp.response(200, ProfileSchema)
@documented_errors(blp, 401)
def me():
    """The caller's profile, read through row-level security."""
    rows = user_query(
        "select id, email, display_name, status, credits, plan, created_at, updated_at"
        " from public.profiles where id = (select auth.uid())"
    )
    if not rows:  # the account was deleted while its token still lives
        raise InvalidToken("This account does not exist.", error="account_not_found")
    return rows[0]
