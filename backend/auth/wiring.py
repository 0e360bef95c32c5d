"""Wiring of the auth package into the app: verifier, provider, HTTP client, routes."""

from __future__ import annotations

import httpx
from flask import Flask
from flask_smorest import Api

from backend.auth import gotrue, gotrue_docs, routes
from backend.auth.guard import VERIFIER
from backend.auth.mailer import EXTENSION as MAILER
from backend.auth.providers.local import LocalProvider
from backend.auth.providers.supabase import SupabaseProvider
from backend.auth.tokens import RemoteKeySet, TokenSigner, TokenVerifier
from backend.config import ConfigError

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
            settings.jwks_url,
            http,
            settings.JWKS_CACHE_SECONDS,
            settings.JWKS_MIN_REFETCH_SECONDS,
            settings.JWKS_MAX_AGE_SECONDS,
        )
    local_keys = signer.verification_keys() if settings.AUTH_MODE == "local" else {}
    app.extensions[VERIFIER] = TokenVerifier(settings, local_keys, remote)
    if settings.AUTH_MODE == "local":
        app.extensions[routes.PROVIDER] = LocalProvider(settings, signer, app.extensions[MAILER])
        app.extensions[gotrue.SIGNER] = signer
        app.register_blueprint(gotrue.blp)
        gotrue_docs.document(app, api.spec)
    else:
        app.extensions[routes.PROVIDER] = SupabaseProvider(settings, http)
    api.register_blueprint(routes.blp)
