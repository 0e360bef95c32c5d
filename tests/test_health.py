"""Liveness, readiness (naming the failing part), and the operators' status and metrics."""

from __future__ import annotations

import pytest
from api_support import assert_error, running_api
from fixtures_app import app_settings
from prometheus_client.parser import text_string_to_metric_families
from test_fail_closed import PRODUCTION

from backend import close_app, create_app
from backend.cache.listener import EXTENSION as LISTENER
from backend.cache.store import EXTENSION as CACHE
from backend.observability.metrics import quantile

METRICS_TOKEN = "t" * 40


def test_live_and_ready(client):
    assert client.get("/api/v1/health/live").get_json() == {"status": "ok"}
    ready = client.get("/api/v1/health/ready")
    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json() == {
        "status": "ready",
        "checks": {"database": "ok", "jobs": "ok", "fal": "ok"},
    }


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
        response = client.get("/api/v1/health/ready")
        assert response.status_code == 503
        assert response.get_json()["error"] == "not_ready"
        assert "database: the database does not answer" in response.get_json()["message"]
    finally:
        close_app(app)


def test_ready_checks_redis_when_the_app_uses_it(make_app, redis_url):
    with_redis = make_app(REDIS_URL=redis_url).test_client().get("/api/v1/health/ready")
    assert with_redis.status_code == 200, with_redis.get_json()
    assert with_redis.get_json()["checks"]["redis"] == "ok"

    unreachable = make_app(REDIS_URL="redis://127.0.0.1:9/0").test_client()
    body = assert_error(unreachable.get("/api/v1/health/ready"), 503, "not_ready")
    assert body["message"].startswith("redis: no answer"), body


def test_not_ready_while_the_fal_circuit_is_open(fresh_db_url):
    with running_api(fresh_db_url) as api:
        api.sql("select public.record_fal_outcome(false, 1, 600)")
        body = assert_error(api.client.get("/api/v1/health/ready"), 503, "not_ready")
        assert body["message"].startswith("fal: the circuit breaker is open"), body
        assert "database" not in body["message"], "only the failing part is named"


def test_not_ready_without_the_job_engine(fresh_db_url):
    with running_api(fresh_db_url) as api:
        api.sql("alter table procrastinate.procrastinate_jobs rename to jobs_gone")
        body = assert_error(api.client.get("/api/v1/health/ready"), 503, "not_ready")
        assert "jobs: the job engine's schema is missing" in body["message"], body


def test_not_ready_while_the_cache_listener_is_not_trusted(make_app):
    app = make_app(CACHE_ENABLED=True)
    app.extensions[LISTENER].stop()  # no listener: nothing renews the trust
    app.extensions[CACHE].distrust()
    body = assert_error(app.test_client().get("/api/v1/health/ready"), 503, "not_ready")
    assert body["message"].startswith("listener: the invalidation listener is not trusted"), body


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
