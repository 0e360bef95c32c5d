"""Rate limits, all in one place (flask-limiter).

- every request: per client IP (``RATE_LIMIT_PER_IP``, 1000/hour like the original service)
  and, with a verified token, per user (``RATE_LIMIT_PER_USER``), each one bucket across
  all routes;
- sign-in and sign-up (``/api/v1/auth/login``, ``/api/v1/auth/signup``, ``/auth/v1/signup``,
  ``/auth/v1/token?grant_type=password``, ``/auth/v1/verify``, ``/auth/v1/resend``): per IP
  and per email
  (``RATE_LIMIT_AUTH_PER_IP``, ``RATE_LIMIT_AUTH_PER_EMAIL``), against password guessing
  and signup floods, on top of the limits above;
- generation submission (``POST /api/v1/generations``): per user
  (``RATE_LIMIT_GENERATIONS_PER_USER``): it costs money.

Not limited (``is_unlimited``): preflights, the health routes (load balancers' probes),
FAL's signed webhooks, and scrapes of ``/metrics`` that carry the valid ``METRICS_TOKEN``.

Every limit is an application limit with a condition, not a decorator on a view: a
decorated limit replaces flask-limiter's defaults on its route, so sign-in would escape
the per-IP limit. Each app builds its own Limiter: a module-level one is shared by every
app in the process, and the last app built would decide whether limits are on, where
counters live, and would add its route limits again on each build.

Counters live in Redis under one prefix, shared by every instance, or on a Redis Cluster
(``limit_storage``); when Redis fails, flask-limiter counts in memory and tries Redis again
after 1, 2, 4 ... 32 seconds. It cannot tell a failing Redis from a key or exemption
function that raised, so those read the request without raising, whatever it carries.
Responses carry ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``
(seconds until a request is allowed again) for the tightest limit that applied; a 429
adds ``Retry-After`` and has the common error shape (GoTrue's shape under /auth/v1).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time

import redis
from flask import Flask, Response, current_app, g, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded, RequestLimit
from limits import parse_many
from limits.errors import StorageError
from redis.exceptions import RedisClusterException

from backend.auth.guard import bearer_token, bears_metrics_token, verify_token
from backend.config import ConfigError, Settings
from backend.errors import ApiError
from backend.http.errors import error_response, gotrue_error_response
from backend.http.limit_storage import storage_uri
from backend.http.text import problem_with

log = logging.getLogger(__name__)

EXTENSION = "velro.limiter"
# verify and resend too: an emailed code is six digits, guessable without a limit per email
SIGN_IN_ENDPOINTS = ("auth.login", "auth.signup", "gotrue.signup", "gotrue.verify", "gotrue.resend")
GRANT_ENDPOINT = "gotrue.token"  # also refreshes; only the password grant counts
GENERATION_ENDPOINT = "generations.Generations"
METRICS_ENDPOINT = "prometheus.prometheus_metrics"  # Prometheus's text, behind METRICS_TOKEN
LIMIT_SETTINGS = (
    "RATE_LIMIT_PER_IP",
    "RATE_LIMIT_PER_USER",
    "RATE_LIMIT_AUTH_PER_IP",
    "RATE_LIMIT_AUTH_PER_EMAIL",
    "RATE_LIMIT_GENERATIONS_PER_USER",
)
REDIS_TIMEOUTS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def client_ip() -> str:
    """The client's address, or for IPv6 its /64: one subscriber gets a whole /64, so its
    single addresses would each be a bucket of their own."""
    # request.remote_addr is the peer, or the client behind TRUSTED_PROXIES (ProxyFix)
    address = request.remote_addr or "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


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
    except ApiError:
        return None  # forged or expired: no bucket of its own; the view answers 401
    except Exception:
        # flask-limiter takes any error of a key function for a storage failure and stops
        # counting: a token we fail to read gets no bucket, and the view answers for it
        log.exception("reading a bearer token for its rate limit failed")
        return None


def _user_key() -> str:
    return f"user:{caller_id()}"


def submitted_email() -> str | None:
    """The address a sign-in names, as its per-email limit counts it; None when the body
    names none that could sign in.

    Never raises, whatever the body: the per-email limit's exemption and key call it, and
    flask-limiter takes any error of theirs for a dead Redis and counts every limit of the
    process in memory for a while.
    """
    try:
        body = request.get_json(silent=True)
    except Exception:
        log.exception("reading a sign-in's body for its rate limit failed")
        return None
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str) or problem_with(email):
        # not text, or text no account holds (an unpaired surrogate cannot even be hashed):
        # the route refuses it (422) before any password is checked, so nothing is guessed
        return None
    return email.strip().lower() or None


def _email_key() -> str:
    # hashed: a fixed-size key, and no address stored in Redis
    digest = hashlib.sha256((submitted_email() or "").encode()).hexdigest()[:32]
    return f"email:{digest}"


def is_sign_in() -> bool:
    if request.endpoint in SIGN_IN_ENDPOINTS:
        return True
    return request.endpoint == GRANT_ENDPOINT and request.args.get("grant_type") == "password"


def is_unlimited() -> bool:
    # preflights carry no credentials; probes from a load balancer must never be refused;
    # FAL delivers every webhook from a few addresses, each checked by signature before
    # any database work, so a per-client limit would only delay generations
    return (
        request.method == "OPTIONS"
        or request.blueprint in ("health", "webhooks")
        or is_metrics_scrape()
    )


def is_metrics_scrape() -> bool:
    """A request to /metrics with the valid METRICS_TOKEN.

    One Prometheus scrapes every host from one address, and every instance counts in the
    same per-IP bucket: its scrapes would draw 429s. A wrong or missing token is counted,
    so the limit still slows guessing.
    """
    return request.endpoint == METRICS_ENDPOINT and bears_metrics_token(bearer_token())


def is_generation_submission() -> bool:
    return request.endpoint == GENERATION_ENDPOINT and request.method == "POST"


def application_limits(settings: Settings) -> list[ApplicationLimit]:
    """Every limit, with the requests it applies to (``exempt_when`` says which it skips)."""
    return [
        ApplicationLimit(settings.RATE_LIMIT_PER_IP, key_function=client_ip, scope="ip"),
        ApplicationLimit(
            settings.RATE_LIMIT_PER_USER,
            key_function=_user_key,
            scope="user",
            exempt_when=lambda: caller_id() is None,
        ),
        ApplicationLimit(
            settings.RATE_LIMIT_AUTH_PER_IP,
            key_function=client_ip,
            scope="auth-ip",
            exempt_when=lambda: not is_sign_in(),
        ),
        ApplicationLimit(
            settings.RATE_LIMIT_AUTH_PER_EMAIL,
            key_function=_email_key,
            scope="auth-email",
            exempt_when=lambda: not (is_sign_in() and submitted_email()),
        ),
        ApplicationLimit(
            settings.RATE_LIMIT_GENERATIONS_PER_USER,
            key_function=_user_key,
            scope="generations",
            exempt_when=lambda: not (is_generation_submission() and caller_id()),
        ),
    ]


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    if not settings.RATE_LIMIT_ENABLED:
        return
    _check_limit_strings(settings)
    _check_endpoints(app, settings)
    limiter = Limiter(
        key_func=client_ip,
        application_limits=application_limits(settings),
        strategy="sliding-window-counter",
        storage_uri=storage_uri(settings),
        storage_options=REDIS_TIMEOUTS if settings.REDIS_URL else {},
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        headers_enabled=False,  # written below: Reset in seconds, Retry-After only on a 429
        key_prefix=settings.redis_namespace,
    )
    limiter.request_filter(is_unlimited)
    limiter.init_app(app)
    app.extensions[EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, too_many_requests)
    app.after_request(add_rate_limit_headers)


def _check_limit_strings(settings: Settings) -> None:
    # flask-limiter would only log a bad string, per request, and then limit nothing
    for name in LIMIT_SETTINGS:
        value = getattr(settings, name)
        try:
            parse_many(value)
        except ValueError:
            raise ConfigError(
                f"{name}={value!r} is not a rate limit; write e.g. 1000/hour or 10 per minute"
            ) from None


def _check_endpoints(app: Flask, settings: Settings) -> None:
    # a renamed endpoint would silently lose its limit (the metrics route, its exemption)
    expected = ["auth.login", "auth.signup", GENERATION_ENDPOINT, METRICS_ENDPOINT]
    if settings.AUTH_MODE == "local":
        expected += ["gotrue.signup", "gotrue.verify", "gotrue.resend", GRANT_ENDPOINT]
    missing = [endpoint for endpoint in expected if endpoint not in app.view_functions]
    if missing:
        raise RuntimeError(f"rate limits name unknown endpoints: {', '.join(missing)}")


def too_many_requests(error: RateLimitExceeded) -> Response:
    wait = _seconds_until_reset(current_app.extensions[EXTENSION].current_limit)
    message = f"Too many requests: the limit is {error.limit.limit}."
    if wait is not None:
        message += f" Try again in {max(1, wait)} seconds."
    if request.blueprint == "gotrue":  # the Supabase clients parse GoTrue's error shape
        return gotrue_error_response(429, "over_request_rate_limit", message)
    return error_response(429, "too_many_requests", message)


def add_rate_limit_headers(response: Response) -> Response:
    current = current_app.extensions[EXTENSION].current_limit
    reset_in = _seconds_until_reset(current)
    if reset_in is None:
        return response
    response.headers["RateLimit-Limit"] = str(current.limit.amount)
    response.headers["RateLimit-Remaining"] = str(current.remaining)
    response.headers["RateLimit-Reset"] = str(reset_in)
    if response.status_code == 429:
        response.headers["Retry-After"] = str(max(1, reset_in))
    return response


def _seconds_until_reset(current: RequestLimit | None) -> int | None:
    """Seconds until ``current`` allows a request again; None without a limit or a store."""
    if current is None:
        return None
    try:
        reset_at = current.window[0]  # read once per request, then kept on ``current``
    except (redis.RedisError, RedisClusterException, StorageError, OSError) as error:
        log.warning("rate limit headers left out, the store failed: %s", error)
        return None
    return max(0, math.ceil(reset_at - time.time()))
