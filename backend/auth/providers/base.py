"""What both auth providers (local and supabase) return and raise.

A provider has ``sign_up(email, password, data)``, ``sign_in(email, password)``,
``refresh(refresh_token)`` (each returns a ``Session``) and ``sign_out(auth, scope)``, each
with the keyword ``client`` (``Client``: address and user agent, taken by the route).
Failures are ``AuthFailure`` with GoTrue's status and error code (``invalid_credentials``,
``user_already_exists``, ...), so the /auth/v1 routes can answer exactly as GoTrue does and
the /api/v1 routes can answer in the common error shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from backend.errors import ApiError


class AuthFailure(ApiError):
    """A sign-up/sign-in/refresh failure: GoTrue's status and error code, and a sentence."""

    def __init__(self, status: int, error: str, message: str, extra: dict | None = None):
        super().__init__(message, status=status, error=error)
        self.extra = extra or {}


@dataclass(frozen=True)
class Session:
    """A signed-in session; ``user`` is GoTrue's user object.

    A sign-up that waits for its email to be confirmed has no tokens yet: every field but
    ``user`` is None, as GoTrue answers it.
    """

    access_token: str | None
    refresh_token: str | None
    expires_in: int | None
    expires_at: int | None
    user: dict

    def as_gotrue(self) -> dict:
        return {
            "access_token": self.access_token,
            "token_type": "bearer" if self.access_token else None,
            "expires_in": self.expires_in,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "user": self.user,
        }


SIGN_OUT_SCOPES = ("global", "local", "others")


@dataclass(frozen=True)
class Client:
    """Who is calling, as the routes saw it: kept on sessions and audit lines."""

    ip: str | None
    user_agent: str | None


class AuthProvider(Protocol):
    def sign_up(self, email: str, password: str, data: dict, *, client: Client) -> Session: ...
    def sign_in(self, email: str, password: str, *, client: Client) -> Session: ...
    def refresh(self, refresh_token: str, *, client: Client) -> Session: ...
    def sign_out(self, auth, scope: str, *, client: Client) -> None: ...
