"""Prometheus metrics: what every process counts, and ``GET /metrics`` in the text format.

The metrics are module-level, so any process (a gunicorn worker, ``velro worker``) counts
into them. Under gunicorn each worker is its own process: with ``PROMETHEUS_MULTIPROC_DIR``
set (``gunicorn.conf.py`` sets it up) the client writes every value to a file in that
directory and a scrape sums the files of all processes, the worker process's included when
it shares the directory (``make run`` does). The variable must be set before
``prometheus_client`` is first imported, which gunicorn's config file does in the master.

Two figures are read from the database at scrape time, because Postgres is their one
truth across processes: the job queue's depth and the refunds in the credit ledger.

The percentiles of ``/api/v1/health/status`` and ``/health/metrics`` come from the same
request histograms, by linear interpolation inside the bucket holding the rank (as
Prometheus's ``histogram_quantile`` does): no second bookkeeping, and the same numbers a
Grafana panel shows.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import time
from collections.abc import Callable, Iterable

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

# seconds; fine below 100 ms where most answers fall (cached reads take well under 1 ms),
# coarse above
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.035, 0.05, 0.075,
    0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUEST_SECONDS = Histogram(
    "velro_http_request_duration_seconds",
    "Time to answer a request, by route (the URL rule, not the raw path), method and status.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
FAILED_LOGINS = Counter(
    "velro_auth_failed_logins", "Sign-ins refused (wrong password, unknown or unconfirmed user)."
)
# the cache's counters live beside it (backend.cache.store), FAL's in backend.fal.metrics
LISTENER_TRUSTED = Gauge(
    "velro_cache_listener_trusted",
    "1 while every live process's invalidation listener is trusted, else 0 (the minimum).",
    multiprocess_mode="livemin",
)
POOL_CONNECTIONS = Gauge(
    "velro_db_pool_connections",
    "Database pool connections by state (size, available, in_use, waiting), summed over"
    " live processes.",
    ["state"],
    multiprocess_mode="livesum",
)
RATE_LIMITED = Counter(
    "velro_rate_limit_refusals", "Requests refused with 429, by route.", ["route"]
)
JOBS = Counter(
    "velro_jobs", "Jobs run by the worker, by kind (task name) and outcome.", ["kind", "outcome"]
)
JOB_SECONDS = Histogram(
    "velro_job_duration_seconds", "Time a job ran, by kind.", ["kind"], buckets=JOB_BUCKETS
)


def counted_job(function):
    """Count a task's runs by outcome and time them, under its name (sync or async)."""
    kind = function.__name__
    for outcome in ("succeeded", "failed"):
        JOBS.labels(kind, outcome)  # exported at 0 from the worker's start
    JOB_SECONDS.labels(kind)

    def finish(started: float, outcome: str) -> None:
        JOBS.labels(kind, outcome).inc()
        JOB_SECONDS.labels(kind).observe(time.perf_counter() - started)

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def run_async(*args, **kwargs):
            started, outcome = time.perf_counter(), "failed"
            try:
                result = await function(*args, **kwargs)
                outcome = "succeeded"
                return result
            finally:
                finish(started, outcome)

        return run_async

    @functools.wraps(function)
    def run(*args, **kwargs):
        started, outcome = time.perf_counter(), "failed"
        try:
            result = function(*args, **kwargs)
            outcome = "succeeded"
            return result
        finally:
            finish(started, outcome)

    return run


STATE_REFRESH_SECONDS = 1.0


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_DIR))


def registry() -> CollectorRegistry:
    """What a scrape reads: every process's files in multiprocess mode, else this process."""
    if not multiprocess():
        return REGISTRY
    scraped = CollectorRegistry()
    MultiProcessCollector(scraped)
    return scraped


# requests -----------------------------------------------------------------------------------


# a client may send any token as its method: the others share one label, as unmatched
# paths share one route, so no client can add series
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_of_request() -> str:
    """The URL rule (``/api/v1/projects/<uuid:project_id>``): bounded, unlike raw paths."""
    rule = request.url_rule
    return rule.rule if rule is not None else "(unmatched)"


def _start_timer() -> None:
    g.velro_started = time.perf_counter()


def _record_request(response: Response) -> Response:
    started = g.pop("velro_started", None)
    if started is None:
        return response
    route = route_of_request()
    status = response.status_code
    method = request.method if request.method in KNOWN_METHODS else "other"
    REQUEST_SECONDS.labels(route, method, str(status)).observe(time.perf_counter() - started)
    if status == 429:
        RATE_LIMITED.labels(route).inc()
    if status in (400, 401) and is_password_sign_in():
        FAILED_LOGINS.inc()
    _record_process_state_now()
    return response


def is_password_sign_in() -> bool:
    if request.endpoint == "auth.login":
        return True
    return request.endpoint == "gotrue.token" and request.args.get("grant_type") == "password"


_state_recorded_at = 0.0


def _record_process_state_now() -> None:
    """Refreshed as requests end (at most once a second), so that a scrape served by another
    process sees this one's pool and listener."""
    global _state_recorded_at
    now = time.monotonic()
    if now - _state_recorded_at < STATE_REFRESH_SECONDS:
        return
    _state_recorded_at = now
    extensions = current_app.extensions
    database = extensions.get("velro.db")
    record_process_state(
        getattr(database, "pool", None) if database else None, extensions.get("velro.cache")
    )


def record_process_state(pool, cache) -> None:
    """The gauges only this process knows: its pool and its listener's trust."""
    if pool is not None:
        stats = pool.get_stats()
        size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
        POOL_CONNECTIONS.labels("size").set(size)
        POOL_CONNECTIONS.labels("available").set(available)
        POOL_CONNECTIONS.labels("in_use").set(size - available)
        POOL_CONNECTIONS.labels("waiting").set(stats.get("requests_waiting", 0))
    if cache is not None:
        LISTENER_TRUSTED.set(1 if cache.trusted else 0)


# figures from the database ------------------------------------------------------------------


class DatabaseFigures:
    """Queue depth by status and refunds, read at scrape time (the same for every process)."""

    def __init__(self, connect: Callable):
        self.connect = connect

    def collect(self) -> Iterable:
        depth = GaugeMetricFamily(
            "velro_job_queue_depth", "Jobs in the job engine's queue, by status.", labels=["status"]
        )
        refunds = GaugeMetricFamily(
            "velro_credit_refunds", "Refunds in the credit ledger (each failed generation once)."
        )
        try:
            with self.connect() as conn:
                for row in queue_depth(conn).items():
                    depth.add_metric([row[0]], row[1])
                refunds.add_metric([], refund_count(conn))
        except Exception as error:  # a scrape still answers with what the processes counted
            log.warning("metrics: the database figures are missing: %s", error)
            return []
        return [depth, refunds]


def queue_depth(conn) -> dict[str, int]:
    rows = conn.execute(
        "select status::text as status, count(*) as jobs from procrastinate.procrastinate_jobs"
        " where status in ('todo', 'doing') group by status"
    ).fetchall()
    found = {"todo": 0, "doing": 0}
    for row in rows:
        status, jobs = (row["status"], row["jobs"]) if isinstance(row, dict) else row
        found[status] = jobs
    return found


def refund_count(conn) -> int:
    row = conn.execute(
        "select count(*) as refunds from public.credit_ledger where kind = 'refund'"
    ).fetchone()
    return row["refunds"] if isinstance(row, dict) else row[0]


def exposition(connect: Callable) -> bytes:
    """The text format: what the processes counted, then the database's figures."""
    from_database = CollectorRegistry(auto_describe=True)
    from_database.register(DatabaseFigures(connect))
    return generate_latest(registry()) + generate_latest(from_database)


# percentiles --------------------------------------------------------------------------------


def histogram_samples(name: str = "velro_http_request_duration_seconds"):
    """The request histogram's buckets and counts per (route, method, status)."""
    series: dict[tuple, dict] = {}
    for family in registry().collect():
        if family.name != name:
            continue
        for sample in family.samples:
            labels = dict(sample.labels)
            le = labels.pop("le", None)
            key = (labels.get("route"), labels.get("method"), labels.get("status"))
            entry = series.setdefault(key, {"buckets": {}, "count": 0.0, "sum": 0.0})
            if sample.name.endswith("_bucket"):
                entry["buckets"][float(le)] = entry["buckets"].get(float(le), 0) + sample.value
            elif sample.name.endswith("_count"):
                entry["count"] += sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] += sample.value
    return series


def merge(entries: Iterable[dict]) -> dict:
    merged = {"buckets": {}, "count": 0.0, "sum": 0.0}
    for entry in entries:
        merged["count"] += entry["count"]
        merged["sum"] += entry["sum"]
        for le, value in entry["buckets"].items():
            merged["buckets"][le] = merged["buckets"].get(le, 0) + value
    return merged


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """``histogram_quantile``: the rank's bucket, linearly interpolated; None without data."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] == 0:
        return None
    total = buckets[bounds[-1]]  # +Inf holds every observation
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def latency_summary(entry: dict) -> dict:
    """p50/p95/p99 in milliseconds, the mean, and the count of one histogram."""

    def ms(seconds):
        return round(seconds * 1000, 2) if seconds is not None else None

    count = int(entry["count"])
    return {
        "count": count,
        "p50_ms": ms(quantile(0.50, entry["buckets"])),
        "p95_ms": ms(quantile(0.95, entry["buckets"])),
        "p99_ms": ms(quantile(0.99, entry["buckets"])),
        "mean_ms": ms(entry["sum"] / count) if count else None,
    }


def counter_total(name: str, **labels) -> float:
    """A counter's value over every process, summed over the labels not given."""
    total = 0.0
    for family in registry().collect():
        if family.name != name:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            if all(sample.labels.get(key) == value for key, value in labels.items()):
                total += sample.value
    return total


def init_app(app: Flask) -> None:
    app.before_request(_start_timer)
    app.after_request(_record_request)
