"""Security headers on every response, whatever its status, and CORS by allow-list."""

from __future__ import annotations

import pytest
from api_support import assert_error
from fixtures_app import within_one_clock_minute

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Content-Security-Policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": (
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
        "microphone=(), payment=(), usb=()"
    ),
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "X-Permitted-Cross-Domain-Policies": "none",
    "X-DNS-Prefetch-Control": "off",
    "Origin-Agent-Cluster": "?1",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}
ALLOWED = "https://app.example.com"


def test_the_list_is_long_enough():
    assert len(SECURITY_HEADERS) >= 12


@pytest.fixture
def every_status(make_app):
    """An app (limits on, in memory: one request per minute) with a route that fails."""
    app = make_app(RATE_LIMIT_ENABLED=True, RATE_LIMIT_PER_IP="1/minute")

    def fail():
        raise RuntimeError("a bug")

    app.add_url_rule("/api/v1/test-failure", "test_failure", fail)
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "192.0.2.10"
    return {
        200: lambda: client.get("/api/v1/models"),
        429: lambda: client.get("/api/v1/models"),  # the second one this minute
        404: lambda: client.get("/api/v1/no-such-thing"),
        405: lambda: client.delete("/api/v1/models"),
        401: lambda: client.get("/api/v1/auth/me", environ_base={"REMOTE_ADDR": "192.0.2.11"}),
        500: lambda: client.get("/api/v1/test-failure", environ_base={"REMOTE_ADDR": "192.0.2.12"}),
    }


def test_security_headers_on_every_status(every_status):
    within_one_clock_minute()
    for status, send in every_status.items():
        response = send()
        assert response.status_code == status, response.get_data(as_text=True)
        present = {name: response.headers.get(name) for name in SECURITY_HEADERS}
        assert present == SECURITY_HEADERS, status
        if status != 200:
            assert_error(response, status)


def test_a_public_document_keeps_its_own_cache_control(client):
    response = client.get("/auth/v1/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=600"
    assert "Pragma" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# CORS -----------------------------------------------------------------------------------


def cors_headers(response) -> list[str]:
    return [name for name, _ in response.headers if name.startswith("Access-Control")]


@pytest.fixture
def cors_client(make_app):
    app = make_app(CORS_ORIGINS=f"{ALLOWED}, https://admin.example.com")
    return app.test_client()


def test_an_allowed_origin_may_read_the_answer_and_its_headers(cors_client):
    response = cors_client.get("/api/v1/models", headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Origin" in response.headers["Vary"]
    exposed = {
        h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert exposed >= {
        "x-request-id",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "retry-after",
        "preference-applied",
    }
    assert "Access-Control-Allow-Credentials" not in response.headers  # bearer tokens only


def test_an_error_answer_is_readable_too(cors_client):
    response = cors_client.get("/api/v1/auth/me", headers={"Origin": ALLOWED})
    assert_error(response, 401)
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize(
    ("path", "method", "headers"),
    [
        ("/api/v1/generations", "POST", "authorization, content-type, idempotency-key, prefer"),
        (
            "/api/v1/generations/00000000-0000-4000-8000-000000000000/events",
            "GET",
            "authorization, last-event-id",
        ),
        ("/auth/v1/token", "POST", "apikey, content-type, x-client-info, x-supabase-api-version"),
    ],
)
def test_a_preflight_is_answered(cors_client, path, method, headers):
    response = cors_client.options(
        path,
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert method in response.headers["Access-Control-Allow-Methods"]
    allowed = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert allowed >= {h.strip() for h in headers.split(",")}
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_an_unlisted_origin_gets_no_cors_headers(cors_client):
    for response in (
        cors_client.get("/api/v1/models", headers={"Origin": "https://evil.example.com"}),
        cors_client.options(
            "/api/v1/generations",
            headers={
                "Origin": "https://evil.example.com",
                "Access-Control-Request-Method": "POST",
            },
        ),
    ):
        assert cors_headers(response) == []


def test_no_origins_configured_means_no_cors(client):
    response = client.get("/api/v1/models", headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert cors_headers(response) == []
