"""Who is calling: ``require_user`` for views, ``current_user()`` inside them.

    from backend.auth.guard import require_user, current_user

    @blp.get("/projects/<uuid:project_id>")
    @require_user                          # right under the route: 401 comes before 422
    @blp.response(200, ProjectSchema)
    def get_project(project_id):
        user = current_user()              # AuthContext: .user_id, .email, .claims, .token
        with user_transaction() as cur:    # runs as this user, through RLS
            ...

A missing, malformed, expired or forged token, or one whose session was logged out,
answers 401 ``invalid_token`` with ``WWW-Authenticate: Bearer``. The session check is part
of ``user_transaction``'s preamble; ``service_transaction``/``owner_transaction`` check first
when a user is signed in (``RequestCaller``, which tells the database layer who is signed
in), and a view that opens none gets a check before its answer goes out. ``require_user``
also marks the route as needing the bearer scheme in the OpenAPI document.
"""

from __future__ import annotations

import functools
import hmac
import uuid
from dataclasses import dataclass

from flask import current_app, g, has_app_context, request
from flask_smorest import Blueprint

from backend import db
from backend.cache import cache
from backend.errors import InvalidToken

VERIFIER = "velro.token_verifier"
SESSION_LIVENESS = "select * from private.session_liveness(%s, %s)"
BEARER_SCHEME = "bearerAuth"


@dataclass(frozen=True)
class AuthContext:
    """The verified caller: their token and its claims."""

    token: str
    claims: dict

    @property
    def user_id(self) -> uuid.UUID:
        return uuid.UUID(self.claims["sub"])

    @property
    def session_id(self) -> uuid.UUID:
        return uuid.UUID(self.claims["session_id"])

    @property
    def email(self) -> str | None:
        return self.claims.get("email")


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def bears_metrics_token(token: str | None) -> bool:
    """Whether ``token`` is the configured METRICS_TOKEN (compared in constant time)."""
    expected = current_app.config["SETTINGS"].METRICS_TOKEN
    if not expected or token is None:
        return False
    return hmac.compare_digest(token.encode(), expected.encode())


def verify_token(token: str) -> dict:
    """Verified claims of a token (signature and claims only; no session check)."""
    return current_app.extensions[VERIFIER].verify(token)


def authenticate() -> AuthContext:
    """Verify the request's bearer token and remember the caller on ``g.auth``."""
    token = bearer_token()
    if token is None:
        raise InvalidToken("Send a bearer token: Authorization: Bearer <access_token>.")
    g.auth = AuthContext(token=token, claims=verify_token(token))
    g.session_confirmed = False
    return g.auth


def current_user() -> AuthContext:
    """The caller of a ``require_user`` view."""
    return g.auth


def require_user(view):
    """Refuse the request with 401 unless it carries a valid token of a live session."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        auth = authenticate()
        result = view(*args, **kwargs)
        if not g.get("session_confirmed") and not session_is_live(auth.claims):
            raise InvalidToken("This session has ended; sign in again.")
        return result

    return Blueprint.doc(security=[{BEARER_SCHEME: []}])(wrapper)


def session_is_live(claims: dict) -> bool:
    """Whether the token's session still exists; cached until a notice says it ended.

    Where auth.sessions announces no deletions (a hosted project may refuse the trigger),
    an answer is kept CACHE_SESSION_TTL seconds only: sign-outs through this app are
    announced by the app itself, but a session ended elsewhere is not.
    """
    session_id, user_id = claims.get("session_id"), claims.get("sub")
    if not session_id or not user_id:
        return False
    live, _ = cache().get_or_load(
        f"session:{user_id}:{session_id}", lambda: _session_liveness(claims)
    )
    return live


def _session_liveness(claims: dict) -> tuple[bool, list[str], float | None]:
    """(live, tags, seconds to keep the answer), all from the database."""
    try:
        session_id, user_id = uuid.UUID(claims["session_id"]), uuid.UUID(claims["sub"])
    except (KeyError, TypeError, ValueError):
        return False, [], 0.0
    with db.pool().connection() as conn:
        row = conn.execute(SESSION_LIVENESS, (session_id, user_id)).fetchone()
    seconds = None if row["announced"] else current_app.config["SETTINGS"].CACHE_SESSION_TTL
    if row["seconds_left"] is not None:  # not_after: the session ends by itself then
        left = row["seconds_left"]
        seconds = left if seconds is None else min(seconds, left)
    return row["live"], row["tags"], seconds


def confirm_session() -> None:
    """Before system work on a signed-in user's behalf, make sure their session still lives.

    ``user_transaction`` checks in its preamble; other transactions call this (through
    ``RequestCaller``) so that nothing is written for a token whose session was logged out.
    """
    if not has_app_context() or g.get("auth") is None or g.get("session_confirmed"):
        return
    if not session_is_live(g.auth.claims):
        raise InvalidToken("This session has ended; sign in again.")
    g.session_confirmed = True


class RequestCaller:
    """The database layer's ``Caller`` in the web app: the request's verified caller."""

    def claims(self) -> dict:
        return g.auth.claims

    def session_confirmed(self) -> None:
        if has_app_context():
            g.session_confirmed = True

    def before_system_work(self) -> None:
        confirm_session()
