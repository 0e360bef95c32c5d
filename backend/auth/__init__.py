"""Authentication: token verification, the local and supabase providers, and their routes.

For other blueprints, two names matter::

    from backend.auth import require_user, current_user

``require_user`` guards a view (401 unless a valid token of a live session) and
``current_user()`` returns the caller (``AuthContext``: ``user_id``, ``email``,
``session_id``, ``claims``, ``token``). ``backend.db.user_transaction()`` then runs SQL as
that caller. See ``guard.py`` for an example.
"""

from __future__ import annotations

import httpx
from flask import Flask
from flask_smorest import Api

from backend.auth import gotrue, routes
from backend.auth.guard import VERIFIER, AuthContext, current_user, require_user
from backend.auth.local import LocalProvider
from backend.auth.supabase_provider import SupabaseProvider
from backend.auth.tokens import RemoteKeySet, TokenSigner, TokenVerifier
from backend.config import ConfigError
from backend.mailer import EXTENSION as MAILER

__all__ = ["AuthContext", "current_user", "init_app", "require_user"]

HTTP = "velro.auth_http"


def init_app(app: Flask, api: Api) -> None:
    settings = app.config["SETTINGS"]
    http = httpx.Client(timeout=10.0)
    app.extensions[HTTP] = http
    try:
        signer = TokenSigner(settings)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    remote = None
    if settings.jwks_url:
        remote = RemoteKeySet(
            settings.jwks_url, http, settings.JWKS_CACHE_SECONDS, settings.JWKS_MIN_REFETCH_SECONDS
        )
    local_keys = signer.verification_keys() if settings.AUTH_MODE == "local" else {}
    app.extensions[VERIFIER] = TokenVerifier(settings, local_keys, remote)
    if settings.AUTH_MODE == "local":
        app.extensions[routes.PROVIDER] = LocalProvider(settings, signer, app.extensions[MAILER])
        app.extensions[gotrue.SIGNER] = signer
        app.register_blueprint(gotrue.blp)
    else:
        app.extensions[routes.PROVIDER] = SupabaseProvider(settings, http)
    api.register_blueprint(routes.blp)
