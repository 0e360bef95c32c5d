"""Rate limits, all in one place (flask-limiter).

- every request: per client IP (``RATE_LIMIT_PER_IP``, 1000/hour like the original service)
  and, with a valid token, per user (``RATE_LIMIT_PER_USER``);
- login and signup: per IP and per email (``RATE_LIMIT_AUTH_PER_IP``,
  ``RATE_LIMIT_AUTH_PER_EMAIL``), against password guessing and signup floods;
- generation submission: per user (``RATE_LIMIT_GENERATIONS_PER_USER``): it costs money.

Counters live in Redis, shared by every instance; when Redis fails flask-limiter counts in
memory and goes back to Redis when it answers again. Responses carry ``RateLimit-Limit``,
``RateLimit-Remaining``, ``RateLimit-Reset`` (seconds until the window resets) and, on a
429, ``Retry-After``; the 429 body is the common error shape (backend.errors).
"""

from __future__ import annotations

import time

import jwt
from flask import Flask, Response, current_app, g, request
from flask_limiter import Limit, Limiter

from backend.auth.guard import bearer_token, verify_token
from backend.errors import ApiError

# endpoint -> which tight limits apply to it
AUTH_ENDPOINTS = ("auth.login", "auth.signup", "gotrue.signup", "gotrue.token")
GENERATION_ENDPOINTS = ("generations.Generations",)


def _settings():
    return current_app.config["SETTINGS"]


def client_ip() -> str:
    # request.remote_addr is the peer, or the client behind TRUSTED_PROXIES (ProxyFix)
    return request.remote_addr or "unknown"


def caller_id() -> str | None:
    """The verified caller's user id, or None; verified once per request."""
    if "limits_caller" not in g:
        g.limits_caller = _verified_subject()
    return g.limits_caller


def _verified_subject() -> str | None:
    token = bearer_token()
    if token is None:
        return None
    try:
        return verify_token(token)["sub"]
    except (ApiError, jwt.PyJWTError):
        return None  # the view answers 401; the IP limit still counts it


def _user_key() -> str:
    return f"user:{caller_id()}"


def _email_key() -> str:
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    return f"email:{str(email).strip().lower()}" if email else f"ip:{client_ip()}"


def _no_caller() -> bool:
    return caller_id() is None


def _is_post() -> bool:
    return request.method != "POST"


limiter = Limiter(
    key_func=client_ip,
    key_prefix="velro",
    default_limits=[
        Limit(lambda: _settings().RATE_LIMIT_PER_IP, key_function=client_ip, scope="ip"),
        Limit(
            lambda: _settings().RATE_LIMIT_PER_USER,
            key_function=_user_key,
            scope="user",
            exempt_when=_no_caller,
        ),
    ],
)


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    app.config.update(
        RATELIMIT_ENABLED=settings.RATE_LIMIT_ENABLED,
        RATELIMIT_STORAGE_URI=settings.REDIS_URL or "memory://",
        RATELIMIT_STORAGE_OPTIONS={"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        RATELIMIT_STRATEGY="sliding-window-counter",
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_HEADER_LIMIT="RateLimit-Limit",
        RATELIMIT_HEADER_REMAINING="RateLimit-Remaining",
        RATELIMIT_HEADER_RESET="RateLimit-Reset",
    )
    limiter.init_app(app)
    _limit_endpoints(
        app,
        AUTH_ENDPOINTS,
        [
            Limit(
                lambda: _settings().RATE_LIMIT_AUTH_PER_IP, key_function=client_ip, scope="auth-ip"
            ),
            Limit(
                lambda: _settings().RATE_LIMIT_AUTH_PER_EMAIL,
                key_function=_email_key,
                scope="auth-email",
            ),
        ],
    )
    _limit_endpoints(
        app,
        GENERATION_ENDPOINTS,
        [
            Limit(
                lambda: _settings().RATE_LIMIT_GENERATIONS_PER_USER,
                key_function=_user_key,
                scope="generations",
                exempt_when=lambda: _no_caller() or _is_post(),
            ),
        ],
    )
    app.after_request(_reset_as_seconds)


def _limit_endpoints(app: Flask, endpoints, limits) -> None:
    for endpoint in endpoints:
        view = app.view_functions.get(endpoint)
        if view is None:
            raise RuntimeError(f"rate limit set on unknown endpoint {endpoint!r}")
        for limit in limits:
            view = limiter.limit(
                limit.limit_provider,
                key_func=limit.key_function,
                scope=limit.scope,
                exempt_when=limit.exempt_when,
            )(view)
        app.view_functions[endpoint] = view


def _reset_as_seconds(response: Response) -> Response:
    # flask-limiter sends an epoch timestamp; the RateLimit header fields carry seconds
    reset = response.headers.get("RateLimit-Reset")
    if reset and reset.isdigit() and int(reset) > 1_000_000_000:
        response.headers["RateLimit-Reset"] = str(max(0, int(reset) - int(time.time())))
    return response
