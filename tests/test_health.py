"""Liveness, readiness (this instance's own database only), and the operators' status (every
dependency, shared ones included) and metrics."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from api_support import assert_error, running_api
from fixtures_app import app_settings
from prometheus_client.parser import text_string_to_metric_families
from test_fail_closed import PRODUCTION

from backend import close_app, create_app
from backend.cache.listener import EXTENSION as LISTENER
from backend.cache.store import EXTENSION as CACHE
from backend.observability import health
from backend.observability.health import REDIS_PROBE
from backend.observability.metrics import quantile

METRICS_TOKEN = "t" * 40


READY = "/api/v1/health/ready"
READY_BODY = {"status": "ready", "checks": {"database": "ok"}}  # all an anonymous caller sees


def test_live_and_ready(client):
    assert client.get("/api/v1/health/live").get_json() == {"status": "ok"}
    ready = client.get(READY)
    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json() == READY_BODY


def test_not_ready_without_a_database_but_still_live():
    app = create_app(
        {
            "APP_ENV": "test",
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/none",
            "DB_POOL_TIMEOUT": 0.5,
        }
    )
    try:
        client = app.test_client()
        assert client.get("/api/v1/health/live").status_code == 200
        response = client.get(READY)
        assert response.status_code == 503
        assert response.get_json()["error"] == "not_ready"
        assert "database: the database does not answer" in response.get_json()["message"]
    finally:
        close_app(app)


# What every instance shares, or can do without, leaves /ready alone: a load balancer would
# take out every instance at once. Operators see it in /status, as "degraded".


def degraded(client, part: str) -> dict:
    """/status's account of ``part``, insisting it fails and the status says so."""
    status = client.get("/api/v1/health/status").get_json()
    assert status["status"] == "degraded", status
    assert status["dependencies"][part]["state"] == "failing", status["dependencies"]
    return status["dependencies"][part]


def test_redis_down_is_degraded_not_unready(make_app, redis_url):
    with_redis = make_app(REDIS_URL=redis_url).test_client()
    assert with_redis.get(READY).get_json() == READY_BODY
    status = with_redis.get("/api/v1/health/status").get_json()
    assert status["dependencies"]["redis"]["state"] == "ok", status

    app = make_app(REDIS_URL="redis://127.0.0.1:9/0", RATE_LIMIT_ENABLED=True)
    unreachable = app.test_client()
    ready = unreachable.get(READY)
    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json() == READY_BODY
    assert REDIS_PROBE not in app.extensions, "no Redis round trip for an anonymous caller"
    assert degraded(unreachable, "redis")["detail"].startswith("no answer")


def test_an_open_fal_circuit_is_degraded_and_not_shown_to_anonymous_callers(fresh_db_url):
    with running_api(fresh_db_url) as api:
        api.sql("select public.record_fal_outcome(false, 1, 600)")
        ready = api.client.get(READY)
        assert ready.status_code == 200, ready.get_json()
        assert ready.get_json() == READY_BODY
        assert "circuit breaker is open" in degraded(api.client, "fal")["detail"]


def test_a_missing_job_engine_is_degraded_not_unready(fresh_db_url):
    with running_api(fresh_db_url) as api:
        api.sql("alter table procrastinate.procrastinate_jobs rename to jobs_gone")
        assert api.client.get(READY).get_json() == READY_BODY
        assert degraded(api.client, "jobs")["detail"] == "the job engine's schema is missing"


def test_an_untrusted_cache_listener_is_degraded_not_unready(make_app):
    # the cache that distrusts itself sends every read to Postgres: the instance still
    # serves correctly, only slower
    app = make_app(CACHE_ENABLED=True)
    app.extensions[LISTENER].stop()  # no listener: nothing renews the trust
    app.extensions[CACHE].distrust()
    client = app.test_client()
    assert client.get(READY).get_json() == READY_BODY
    assert degraded(client, "listener")["detail"].startswith("the invalidation listener is not")


@pytest.fixture
def counted_checks(monkeypatch):
    """Each readiness check takes a pooled connection: the connections taken."""
    taken: list[float] = []
    pool = health.pool

    def counting_pool():
        taken.append(time.monotonic())
        time.sleep(0.05)  # a check long enough for callers to overlap it
        return pool()

    monkeypatch.setattr(health, "pool", counting_pool)
    return taken


def test_ready_checks_once_however_many_ask_within_its_window(
    make_app, counted_checks, monkeypatch
):
    monkeypatch.setattr(health, "READY_SECONDS", 60.0)  # a window no slow machine outlasts
    app = make_app()
    with ThreadPoolExecutor(max_workers=8) as callers:
        answers = list(callers.map(lambda _: app.test_client().get(READY), range(40)))
    assert len(counted_checks) == 1, "every caller within the window shared one check"
    # callers that came while the first check ran did not wait for it: not ready yet
    codes = [answer.status_code for answer in answers]
    assert set(codes) <= {200, 503}, codes
    assert app.test_client().get(READY).status_code == 200


def test_ready_callers_do_not_wait_behind_a_hung_check(make_app, monkeypatch):
    window = 2.0  # long enough for a loaded machine's next request to fall inside it
    monkeypatch.setattr(health, "READY_SECONDS", window)
    app = make_app()
    client = app.test_client()
    assert client.get(READY).status_code == 200
    time.sleep(window + 0.1)  # that answer is stale: the next caller checks again

    entered, released = threading.Event(), threading.Event()
    pool = health.pool

    def hung_pool():  # the database stops answering in the middle of a check
        entered.set()
        released.wait(30)
        return pool()

    monkeypatch.setattr(health, "pool", hung_pool)
    with ThreadPoolExecutor(max_workers=1) as checker:
        hung = checker.submit(lambda: app.test_client().get(READY))
        assert entered.wait(10), "the check never started"
        # while the check is young, others get the last answer at once
        assert client.get(READY).status_code == 200
        time.sleep(window + 0.1)
        # once it is older than the window, they hear that the database does not answer
        refused = client.get(READY)
        assert_error(refused, 503, "not_ready")
        assert "has not answered a check for" in refused.get_json()["message"]
        assert not hung.done(), "the hung check answered: the callers above proved nothing"
        released.set()
        assert hung.result(timeout=30).status_code == 200
    assert client.get(READY).status_code == 200


def test_ready_checks_again_once_its_answer_is_a_second_old(make_app, counted_checks):
    client = make_app().test_client()
    assert client.get(READY).status_code == 200
    time.sleep(health.READY_SECONDS + 0.1)
    assert client.get(READY).status_code == 200
    assert len(counted_checks) == 2


def test_status_answers_with_real_numbers(db_url, make_app):
    client = make_app().test_client()
    before = client.get("/api/v1/health/status").get_json()
    for _ in range(3):
        client.get("/api/v1/health/live")
    refused = client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong-password"}
    )
    assert refused.status_code in (400, 401), refused.get_json()
    client.get("/api/v1/projects/not-a-uuid")  # 401 or 404: a client error either way

    after = client.get("/api/v1/health/status")
    assert after.status_code == 200, after.get_json()
    status = after.get_json()
    assert status["status"] == "ok"
    assert status["version"] and status["uptime_seconds"] >= 0
    assert set(status["dependencies"]) == {"database", "jobs", "fal"}
    assert status["dependencies"]["database"]["latency_ms"] >= 0
    # the status request itself, 3 probes, the login and the bad path
    assert status["requests"]["total"] - before["requests"]["total"] == 6
    assert status["requests"]["client_errors"] - before["requests"]["client_errors"] == 2
    assert status["requests"]["failed_logins"] - before["requests"]["failed_logins"] == 1
    assert status["requests"]["errors"] == before["requests"]["errors"]
    latency = status["latency"]
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    assert status["jobs"]["queue_depth"] >= 0 and status["jobs"]["refunds"] >= 0
    assert set(status["cache"]) >= {"enabled", "l1", "l2", "invalidations"}
    assert "histogram" in status["percentiles_from"]


def test_route_metrics_are_by_url_rule(make_app):
    client = make_app().test_client()

    def live_count() -> int:
        routes = client.get("/api/v1/health/metrics").get_json()["routes"]
        found = [r for r in routes if r["route"] == "/api/v1/health/live" and r["method"] == "GET"]
        return found[0]["count"] if found else 0

    before = live_count()
    for _ in range(5):
        client.get("/api/v1/health/live")
    assert live_count() - before == 5
    routes = client.get("/api/v1/health/metrics").get_json()["routes"]
    for route in routes:
        assert "not-a-uuid" not in route["route"], "raw paths would explode the label set"
        assert route["p50_ms"] <= route["p95_ms"] <= route["p99_ms"]
        assert route["error_rate"] is None or 0 <= route["error_rate"] <= 1


@pytest.mark.parametrize(
    "path", ["/api/v1/health/status", "/api/v1/health/metrics", "/api/v1/health/cache", "/metrics"]
)
def test_in_production_details_need_an_operator(db_url, path):
    app = create_app(app_settings(db_url, **PRODUCTION, METRICS_TOKEN=METRICS_TOKEN))
    try:
        client = app.test_client()
        assert_error(client.get(path), 401, "invalid_token")
        assert_error(client.get(path, headers={"Authorization": "Bearer " + "t" * 39}), 401)
        allowed = client.get(path, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert allowed.status_code == 200
        assert client.get("/api/v1/health/live").status_code == 200
        assert client.get("/api/v1/health/ready").status_code == 200
    finally:
        close_app(app)


def test_prometheus_text_in_one_process(make_app):
    client = make_app().test_client()
    client.get("/api/v1/health/live")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    assert 'velro_http_request_duration_seconds_count{method="GET",route="/api/v1/health/live"' in (
        text
    )
    assert 'velro_job_queue_depth{status="todo"}' in text
    assert "velro_credit_refunds " in text
    assert 'velro_db_pool_connections{state="size"}' in text


def test_methods_a_client_invents_share_one_label(make_app):
    client = make_app().test_client()
    for invented in ("ZZ000001", "ZZ000002", "PROPFIND"):
        assert client.open("/api/v1/health/live", method=invented).status_code == 405
    text = client.get("/metrics").get_data(as_text=True)
    methods = {
        sample.labels["method"]
        for family in text_string_to_metric_families(text)
        if family.name == "velro_http_request_duration_seconds"
        for sample in family.samples
    }
    assert "other" in methods
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


def test_quantiles_interpolate_inside_buckets():
    buckets = {0.1: 50.0, 0.2: 90.0, 0.5: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.7, buckets) == pytest.approx(0.15)
    assert quantile(0.95, buckets) == pytest.approx(0.35)
    assert quantile(0.25, buckets) == pytest.approx(0.05)
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.99, {0.1: 1.0, float("inf"): 10.0}) == 0.1, "beyond the last bound"
