"""Liveness, readiness and, for operators, the details.

- ``/api/v1/health/live`` answers while the process runs;
- ``/api/v1/health/ready`` answers 200 while this instance can serve: its database pool
  reaches Postgres; else 503 saying why. What every instance shares does not count (Redis,
  the job engine, FAL's circuit breaker: a load balancer would take every instance out at
  once, for what none of them can fix), nor does what this one can serve without (the
  cache's listener: without it the cache distrusts itself and reads go to Postgres). One
  check at a time per process, its answer reused for a second (``Readiness``), so
  anonymous callers cannot multiply database work;
- ``/api/v1/health/status``: version, uptime, each dependency's state and latency (the
  shared parts too: "degraded" while one fails), request latency percentiles, request,
  error and failed-login counts, cache hit rates, queue depth;
- ``/api/v1/health/metrics``: per route, count, p50/p95/p99 and error rate;
- ``/api/v1/health/cache``: this process's cache layers;
- ``/metrics``: Prometheus's text format.

Live and ready are for load balancers and open to all. The others describe the running
system, so they are for operators (``require_operator``): the ``METRICS_TOKEN`` bearer, or
a signed-in user whose ``app_metadata.role`` is ``admin`` (app_metadata is set only by the
service role, never by the user). Started for local work (development, test) without a
METRICS_TOKEN they are open, so ``make run`` can show them.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import threading
import time
from collections.abc import Callable

import flask
import psycopg
from flask import Response, current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from prometheus_client import CONTENT_TYPE_LATEST
from redis.cluster import RedisCluster

from backend.auth.guard import (
    BEARER_SCHEME,
    bearer_token,
    bears_metrics_token,
    session_is_live,
    verify_token,
)
from backend.cache import cache
from backend.cache.redis_client import ERRORS as REDIS_ERRORS
from backend.cache.redis_client import Client as RedisClient
from backend.cache.redis_client import connect as connect_redis
from backend.cache.redis_client import primaries
from backend.cache.store import EXTENSION as CACHE_EXTENSION
from backend.db import pool
from backend.errors import Forbidden, InvalidToken, Unavailable
from backend.http.access import access
from backend.http.openapi import ErrorSchema
from backend.observability import metrics

log = logging.getLogger(__name__)

REDIS_PROBE = "velro.health_redis"
READINESS = "velro.readiness"
READY_SECONDS = 1.0  # how long one readiness answer is reused in a process

blp = Blueprint("health", __name__, url_prefix="/api/v1/health", description="Health checks")


class HealthSchema(Schema):
    status = fields.String()
    checks = fields.Dict(keys=fields.String(), values=fields.String())


@blp.get("/live")
@access("public")
@blp.response(200, HealthSchema)
def live():
    """The process is up."""
    return {"status": "ok"}


@blp.get("/ready")
@access("public")
@blp.response(200, HealthSchema)
def ready():
    """This instance can serve: its database pool reaches Postgres.

    Otherwise 503 (``not_ready``), its message saying why as ``database: why``. What every
    instance shares (Redis, the job engine, FAL's circuit breaker) or can do without (the
    cache's invalidation listener) is not asked: operators see it in ``/health/status``.
    The answer is at most two seconds old: a caller does not wait for a check another
    caller runs, and a check that has not answered within a second reads as a failure.
    """
    problem = readiness().answer()
    if problem is not None:
        raise Unavailable(f"database: {problem}", error="not_ready")
    return {"status": "ready", "checks": {"database": "ok"}}


class Readiness:
    """This process's readiness: one check at a time, its answer reused for ``seconds``.

    The route is anonymous and never rate limited (a load balancer's probes must not be
    refused), and each check takes a pooled connection: reusing the answer keeps callers
    from multiplying that work. Nobody waits for a check another caller runs, since every
    waiting caller would hold a request thread while the database hangs: they get the last
    answer while the check is younger than ``seconds``, and "not answering" once it is
    older. Until the first check has answered, the instance is not ready.
    """

    def __init__(self, check: Callable[[], str | None], seconds: float) -> None:
        self._check = check
        self._seconds = seconds
        self._lock = threading.Lock()
        self._answer: str | None = "the first check has not answered yet"
        self._stale_at = float("-inf")
        self._checking_since: float | None = None

    def answer(self) -> str | None:
        """Why this instance cannot serve, or None when it can."""
        with self._lock:
            now = time.monotonic()
            if now < self._stale_at:
                return self._answer
            if self._checking_since is not None:
                running = now - self._checking_since
                if running < self._seconds:
                    return self._answer
                return f"the database has not answered a check for {running:.0f} s"
            self._checking_since = now
        answer: str | None = "the readiness check failed"  # kept if the check raises
        try:
            answer = self._check()
        finally:
            with self._lock:
                self._checking_since = None
                self._answer = answer
                self._stale_at = time.monotonic() + self._seconds
        return answer


def readiness() -> Readiness:
    found = current_app.extensions.get(READINESS)
    if found is None:  # two first callers may both build one; setdefault keeps one
        found = current_app.extensions.setdefault(
            READINESS, Readiness(database_problem, READY_SECONDS)
        )
    return found


def database_problem() -> str | None:
    """Why this process's pool cannot reach Postgres, or None when a connection answers."""
    try:
        with pool().connection() as conn:
            conn.execute("select 1")
    except psycopg.Error as error:
        return _database_not_answering(error)
    return None


def _database_not_answering(error: psycopg.Error) -> str:
    """What a health answer says of a failed database call (the class only); logged whole."""
    detail = f"the database does not answer ({type(error).__name__})"
    log.warning("health: %s: %s", detail, error)
    return detail


def dependency_checks() -> dict[str, dict]:
    """Each dependency's state (ok, failing), why, and how long it took to answer: this
    instance's database, and what every instance shares or can do without."""
    checks: dict[str, dict] = {}
    checks.update(_timed("database", _check_database_and_friends))
    settings = current_app.config["SETTINGS"]
    if settings.REDIS_URL:
        checks.update(_timed("redis", _check_redis))
    if settings.CACHE_ENABLED:
        checks["listener"] = _check_listener()
    return checks


def _timed(name: str, check) -> dict[str, dict]:
    started = time.perf_counter()
    found = check()
    elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
    found.setdefault(name, {}).setdefault("latency_ms", elapsed_ms)
    return found


def _check_database_and_friends() -> dict[str, dict]:
    """One connection answers for the database, the job engine and FAL's circuit."""
    try:
        with pool().connection() as conn:
            started = time.perf_counter()
            row = conn.execute(
                "select public.fal_circuit_allows() as closed,"
                " pg_catalog.to_regclass('procrastinate.procrastinate_jobs') is not null"
                " as engine"
            ).fetchone()
            latency = round((time.perf_counter() - started) * 1000, 2)
    except psycopg.Error as error:
        return {
            "database": {"state": "failing", "detail": _database_not_answering(error)},
            "jobs": {"state": "failing", "detail": "the job engine lives in the database"},
            "fal": {"state": "failing", "detail": "the circuit's state is in the database"},
        }
    jobs_ok, fal_ok = row["engine"], row["closed"]
    return {
        "database": {"state": "ok", "detail": "answers", "latency_ms": latency},
        "jobs": {
            "state": "ok" if jobs_ok else "failing",
            "detail": "installed" if jobs_ok else "the job engine's schema is missing",
        },
        "fal": {
            "state": "ok" if fal_ok else "failing",
            "detail": "circuit closed"
            if fal_ok
            else "the circuit breaker is open (FAL has been failing); new generations wait"
            " in the job queue until it closes",
        },
    }


def _check_redis() -> dict[str, dict]:
    """Every server that holds data answers: the one Redis, or each primary of a cluster
    and the cluster serving all its slots."""
    try:
        client = _redis_probe()
        for server in primaries(client).values():
            server.ping()  # raises unless it answers; no address in a public message
        if isinstance(client, RedisCluster):
            state = client.cluster_info()["cluster_state"]
            if state != "ok":
                return _redis_failing(f"cluster_state is {state}")
    except REDIS_ERRORS as error:
        return _redis_failing(f"no answer ({type(error).__name__})")
    return {"redis": {"state": "ok", "detail": "answers"}}


def _redis_probe() -> RedisClient:
    """The probe's own client, built on first use (a cluster's connects when built)."""
    client = current_app.extensions.get(REDIS_PROBE)
    if client is None:
        url = current_app.config["SETTINGS"].REDIS_URL
        client = connect_redis(url, socket_timeout=1, socket_connect_timeout=1)
        current_app.extensions[REDIS_PROBE] = client
    return client


def _redis_failing(detail: str) -> dict[str, dict]:
    detail += "; rate limits count in each process's memory, the cache serves from L1 and Postgres"
    return {"redis": {"state": "failing", "detail": detail}}


def _check_listener() -> dict:
    if cache().trusted:
        return {"state": "ok", "detail": "trusted"}
    return {
        "state": "failing",
        "detail": "the invalidation listener is not trusted (down, or no round trip within"
        " its bound): the cache is bypassed",
    }


class CacheLayerSchema(Schema):
    hits = fields.Integer()
    misses = fields.Integer()
    hit_rate = fields.Float(allow_none=True)
    errors = fields.Integer()
    size = fields.Integer(allow_none=True, metadata={"description": "null when unknown"})
    max_size = fields.Integer()
    evictions = fields.Integer(allow_none=True, metadata={"description": "null when unknown"})
    enabled = fields.Boolean()
    available = fields.Boolean()
    tags_indexed = fields.Integer(
        metadata={"description": "L1: tags with entries depending on them"}
    )
    trusted = fields.Boolean(
        metadata={"description": "L2: its Redis evicts nothing (maxmemory-policy noeviction)"}
    )
    maxmemory_policy = fields.String(
        allow_none=True, metadata={"description": "L2: Redis's policy; null when unknown"}
    )
    namespace = fields.String(
        metadata={
            "description": "L2: the prefix of its keys, the same on every instance of one"
            " deployment (REDIS_NAMESPACE, or derived from where DATABASE_URL leads)"
        }
    )


class CacheStatsSchema(Schema):
    trusted = fields.Boolean(
        metadata={
            "description": "false while invalidations cannot arrive: the listener is down or"
            " completed no round trip within its bound"
        }
    )
    invalidations_received = fields.Integer()
    bypassed = fields.Integer(metadata={"description": "reads sent past the cache"})
    coalesced = fields.Integer(
        metadata={"description": "misses served by a concurrent load of the same key"}
    )
    seconds_since_listener_round_trip = fields.Float(allow_none=True)
    listener_bound_seconds = fields.Float(allow_none=True)
    l1 = fields.Nested(CacheLayerSchema)
    l2 = fields.Nested(CacheLayerSchema)


def require_operator(view):
    """Only operators see details: the metrics token or an admin's token (401/403 otherwise)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        current = current_app.config["SETTINGS"]
        if current.is_local and not current.METRICS_TOKEN:
            return view(*args, **kwargs)
        token = bearer_token()
        if token is None:
            raise InvalidToken("Send the metrics token or an admin's token as a bearer token.")
        if bears_metrics_token(token):
            return view(*args, **kwargs)
        claims = verify_token(token)
        if not session_is_live(claims):
            raise InvalidToken("This session has ended; sign in again.")
        if (claims.get("app_metadata") or {}).get("role") != "admin":
            raise Forbidden("Only operators (app_metadata.role admin) may read this.")
        return view(*args, **kwargs)

    return Blueprint.doc(security=[{BEARER_SCHEME: []}])(wrapper)


def operator_errors(view):
    """Document what require_operator answers to anyone else, in the common error shape."""
    view = blp.alt_response(
        401, schema=ErrorSchema, description="No bearer token, or an invalid or ended one"
    )(view)
    return blp.alt_response(
        403, schema=ErrorSchema, description="A signed-in user who is not an operator"
    )(view)


@blp.get("/cache")
@require_operator
@access("operator")
@blp.response(200, CacheStatsSchema)
@operator_errors
def cache_stats():
    """This process's cache: hits, misses, hit rate, size, evictions, invalidations.

    Operators only in production: the METRICS_TOKEN bearer or an admin's token.
    """
    return cache().stats()


STARTED = time.time()  # this process's start; uptime is the oldest answering process's


class DependencySchema(Schema):
    state = fields.String(metadata={"description": "ok, or failing"})
    detail = fields.String()
    latency_ms = fields.Float(allow_none=True)


class LatencySchema(Schema):
    count = fields.Integer()
    p50_ms = fields.Float(allow_none=True)
    p95_ms = fields.Float(allow_none=True)
    p99_ms = fields.Float(allow_none=True)
    mean_ms = fields.Float(allow_none=True)


class StatusSchema(Schema):
    status = fields.String(
        metadata={
            "description": "ok, or degraded when a dependency fails (the instance may still"
            " serve: /ready answers only for its own database pool)"
        }
    )
    version = fields.String()
    environment = fields.String()
    uptime_seconds = fields.Float(metadata={"description": "this process's"})
    dependencies = fields.Dict(keys=fields.String(), values=fields.Nested(DependencySchema))
    requests = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(),
        metadata={
            "description": "total, errors (5xx), client_errors (4xx), failed_logins"
            " and rate_limited, over every process sharing the metrics directory"
        },
    )
    latency = fields.Nested(LatencySchema, metadata={"description": "every request"})
    cache = fields.Dict(keys=fields.String(), values=fields.Raw())
    jobs = fields.Dict(keys=fields.String(), values=fields.Raw())
    percentiles_from = fields.String()


class RouteMetricsSchema(LatencySchema):
    route = fields.String()
    method = fields.String()
    errors = fields.Integer(metadata={"description": "5xx answers"})
    client_errors = fields.Integer(metadata={"description": "4xx answers"})
    error_rate = fields.Float(allow_none=True, metadata={"description": "5xx / count"})


class RoutesMetricsSchema(Schema):
    routes = fields.List(fields.Nested(RouteMetricsSchema))
    percentiles_from = fields.String()


PERCENTILES_FROM = (
    "the request histogram (velro_http_request_duration_seconds), interpolated inside"
    " buckets as histogram_quantile does; over every process since the metrics were reset"
)


@blp.get("/status")
@require_operator
@access("operator")
@blp.response(200, StatusSchema)
@operator_errors
def status():
    """Version, uptime, dependencies, request latency and counts, cache hit rate, queue depth.

    Operators only in production: the METRICS_TOKEN bearer or an admin's token.
    """
    checks = dependency_checks()
    series = metrics.histogram_samples()
    everything = metrics.merge(series.values())
    settings = current_app.config["SETTINGS"]
    return {
        "status": "ok" if all(c["state"] == "ok" for c in checks.values()) else "degraded",
        "version": velro_version(),
        "environment": settings.APP_ENV,
        "uptime_seconds": round(time.time() - STARTED, 1),
        "dependencies": checks,
        "requests": request_counts(series),
        "latency": metrics.latency_summary(everything),
        "cache": cache_figures(settings.CACHE_ENABLED),
        "jobs": job_figures(),
        "percentiles_from": PERCENTILES_FROM,
    }


@blp.get("/metrics")
@require_operator
@access("operator")
@blp.response(200, RoutesMetricsSchema)
@operator_errors
def route_metrics():
    """Per route and method: count, p50/p95/p99, errors and error rate.

    Operators only in production: the METRICS_TOKEN bearer or an admin's token.
    """
    by_route: dict[tuple, list] = {}
    for (route, method, status_code), entry in metrics.histogram_samples().items():
        by_route.setdefault((route, method), []).append((status_code, entry))
    routes = []
    for (route, method), entries in sorted(by_route.items()):
        summary = metrics.latency_summary(metrics.merge(entry for _, entry in entries))
        errors = sum(int(e["count"]) for code, e in entries if code.startswith("5"))
        client_errors = sum(int(e["count"]) for code, e in entries if code.startswith("4"))
        count = summary["count"]
        routes.append(
            {
                "route": route,
                "method": method,
                **summary,
                "errors": errors,
                "client_errors": client_errors,
                "error_rate": round(errors / count, 4) if count else None,
            }
        )
    return {"routes": routes, "percentiles_from": PERCENTILES_FROM}


def request_counts(series: dict) -> dict:
    counts = {"total": 0, "errors": 0, "client_errors": 0}
    for (_route, _method, status_code), entry in series.items():
        counts["total"] += int(entry["count"])
        if status_code.startswith("5"):
            counts["errors"] += int(entry["count"])
        elif status_code.startswith("4"):
            counts["client_errors"] += int(entry["count"])
    counts["failed_logins"] = int(metrics.counter_total("velro_auth_failed_logins"))
    counts["rate_limited"] = int(metrics.counter_total("velro_rate_limit_refusals"))
    return counts


def cache_figures(enabled: bool) -> dict:
    figures: dict = {"enabled": enabled}
    for layer in ("l1", "l2"):
        hits = metrics.counter_total("velro_cache_lookups", layer=layer, result="hit")
        misses = metrics.counter_total("velro_cache_lookups", layer=layer, result="miss")
        figures[layer] = {
            "hits": int(hits),
            "misses": int(misses),
            "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
        }
    figures["invalidations"] = int(metrics.counter_total("velro_cache_invalidations"))
    return figures


def job_figures() -> dict:
    try:
        with pool().connection() as conn:
            depth = metrics.queue_depth(conn)
            refunds = metrics.refund_count(conn)
    except psycopg.Error as error:
        log.warning("health: job figures unavailable: %s", error)
        return {"queue_depth": None, "running": None, "refunds": None}
    return {
        "queue_depth": depth["todo"],
        "running": depth["doing"],
        "refunds": refunds,
        "run": int(metrics.counter_total("velro_jobs")),
    }


def velro_version() -> str:
    try:
        return importlib.metadata.version("velro-backend")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# Prometheus's text format is for scrapers, not API clients: a plain Flask blueprint, so it
# stays out of the OpenAPI document
prometheus_blp = flask.Blueprint("prometheus", __name__)


@prometheus_blp.get("/metrics")
@require_operator
@access("operator")
def prometheus_metrics():
    """Every process's metrics in Prometheus's text format, and the queue and refunds.

    Operators only in production: the METRICS_TOKEN bearer or an admin's token.
    """
    record_process_state()
    body = metrics.exposition(connect=pool().connection)
    return Response(body, content_type=CONTENT_TYPE_LATEST)


def record_process_state() -> None:
    cache_extension = current_app.extensions.get(CACHE_EXTENSION)
    metrics.record_process_state(pool(), cache_extension)


def close(app) -> None:
    """Release the readiness probe's Redis client."""
    client = app.extensions.pop(REDIS_PROBE, None)
    if client is not None:
        client.close()
