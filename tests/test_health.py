"""Liveness and readiness."""

from __future__ import annotations

from backend import close_app, create_app


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
    finally:
        close_app(app)
