"""The supabase auth provider: the same operations, answered by Supabase Auth (GoTrue).

Each call uses a fresh ``SyncGoTrueClient`` from the official ``supabase_auth`` package
(its session state is per-client, so clients are never shared between requests) over one
shared HTTP connection pool. GoTrue's refusals (4xx) come back as ``AuthFailure`` with its
status, code and message; its own failures (5xx, an answer that is not its JSON, no answer)
are a bare 503 whose detail stays in our log.
"""

from __future__ import annotations

import logging

import httpx
from supabase_auth import SyncGoTrueClient
from supabase_auth.errors import AuthError, AuthRetryableError

from backend.auth.providers.base import SIGN_OUT_SCOPES, AuthFailure, Client, Session
from backend.cache import cache
from backend.cache.listener import announce
from backend.config import Settings
from backend.db import pool
from backend.errors import Unavailable

log = logging.getLogger(__name__)


class SupabaseProvider:
    def __init__(self, settings: Settings, http: httpx.Client):
        self._url = f"{settings.SUPABASE_URL.rstrip('/')}/auth/v1"
        self._key = settings.SUPABASE_ANON_KEY
        self._http = http

    def sign_up(
        self, email: str, password: str, data: dict | None = None, *, client: Client
    ) -> Session:
        # GoTrue records the caller itself (it sees our request, not the client's)
        credentials = {"email": email, "password": password, "options": {"data": data or {}}}
        response = self._call(lambda client: client.sign_up(credentials))
        return _session(response.session, response.user)

    def sign_in(self, email: str, password: str, *, client: Client) -> Session:
        credentials = {"email": email, "password": password}
        response = self._call(lambda client: client.sign_in_with_password(credentials))
        return _session(response.session, response.user)

    def refresh(self, refresh_token: str, *, client: Client) -> Session:
        response = self._call(lambda client: client.refresh_session(refresh_token))
        return _session(response.session, response.user)

    def sign_out(self, auth, scope: str = "global", *, client: Client) -> None:
        if scope not in SIGN_OUT_SCOPES:
            raise AuthFailure(
                400, "validation_failed", f"scope must be one of {', '.join(SIGN_OUT_SCOPES)}"
            )
        self._call(lambda client: client.admin.sign_out(auth.token, scope))
        announce_sign_out(auth, scope)

    def _call(self, operation):
        client = SyncGoTrueClient(
            url=self._url,
            headers={"apikey": self._key, "Authorization": f"Bearer {self._key}"},
            http_client=self._http,
            auto_refresh_token=False,
            persist_session=False,
        )
        try:
            return operation(client)
        except AuthError as error:
            raise _ours(error) from None


def _ours(error: AuthError) -> Exception:
    """Supabase Auth's refusal of the request (4xx) as it said it; its own failures, or an
    answer that is not its JSON, as a bare 503, their detail in our log only."""
    status = _status_of(error)
    if status == 429:
        return AuthFailure(
            429, "over_request_rate_limit", "Supabase Auth is limiting requests: try again shortly"
        )
    if not isinstance(error, AuthRetryableError) and status is not None and 400 <= status < 500:
        return AuthFailure(status, error.code or "auth_error", error.message)
    log.warning("Supabase Auth failed (status %s): %s", status, error.message)
    return Unavailable("Supabase Auth cannot answer now: try again shortly")


def _status_of(error: AuthError) -> int | None:
    """The HTTP status Supabase Auth answered with, also for an answer that was not JSON."""
    status = getattr(error, "status", None)
    if isinstance(status, int) and status:
        return status
    for cause in (getattr(error, "original_error", None), error.__cause__):
        response = getattr(cause, "response", None)  # httpx.HTTPStatusError's
        if isinstance(response, httpx.Response):
            return response.status_code
    return None


def announce_sign_out(auth, scope: str) -> None:
    """Tell every instance that the session (scope local) or the user's sessions ended.

    Supabase Auth deleted the rows in its own transaction; a hosted project may not let
    this app add the trigger that would announce that, so the app does it, and evicts
    here at once.
    """
    tag = ("session", auth.session_id) if scope == "local" else ("user", auth.user_id)
    with pool().connection() as conn:
        announce(conn.cursor(), [tag])
    cache().invalidate(f"{tag[0]}:{tag[1]}")


def _session(session, user) -> Session:
    user_json = user.model_dump(mode="json") if user else {}
    if session is None:  # sign-up with email confirmation on: no session yet
        return Session(None, None, None, None, user_json)
    return Session(
        session.access_token,
        session.refresh_token,
        session.expires_in,
        session.expires_at,
        session.user.model_dump(mode="json"),
    )
