"""One error shape for everything: routing errors, validation, domain errors, SQL, crashes."""

from __future__ import annotations

import io
import logging

import pytest
from fixtures_app import app_settings
from psycopg import sql

from backend import close_app, create_app
from backend.db import owner_transaction
from backend.errors import ApiError, Forbidden

LEAKY = "select secret_column from private.hidden_table"


def assert_shape(response, status, error):
    body = response.get_json()
    assert response.status_code == status, body
    assert set(body) <= {"error", "message", "request_id", "details"}
    assert body["error"] == error and body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


@pytest.fixture(scope="module")
def app(db_url):
    """An app with a few routes that fail on purpose."""
    application = create_app(
        app_settings(db_url, MAX_CONTENT_LENGTH=2048, DB_STATEMENT_TIMEOUT_MS=100)
    )

    @application.get("/test/crash")
    def crash():
        raise RuntimeError(LEAKY)

    @application.get("/test/forbidden")
    def forbidden():
        raise Forbidden("You may only read this project.")

    @application.get("/test/credits")
    def credits():
        raise ApiError(
            "This needs 50 credits; you have 10.", status=402, error="insufficient_credits"
        )

    @application.get("/test/sqlstate/<code>")
    def sqlstate(code):
        raise_in_sql = sql.SQL(
            "do $$ begin raise exception using errcode = {}, message = {}; end $$"
        ).format(sql.Literal(code), sql.Literal(f"project not found ({code})"))
        with owner_transaction() as cur:
            cur.execute(raise_in_sql)

    @application.get("/test/raise_error")
    def raise_error():
        with owner_transaction() as cur:
            cur.execute("select private.raise_error(402, 'not enough credits: this needs 50')")

    @application.get("/test/slow")
    def slow():
        with owner_transaction() as cur:
            cur.execute("select pg_sleep(2)")

    yield application
    close_app(application)


@pytest.fixture
def client(app):
    return app.test_client()


def test_unknown_route_is_404(client):
    body = assert_shape(client.get("/no/such/thing"), 404, "not_found")
    assert "/no/such/thing" in body["message"]


def test_wrong_method_is_405(client):
    response = client.delete("/api/v1/health/live")
    assert_shape(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_a_body_over_the_limit_is_413(client):
    response = client.post("/api/v1/auth/signup", data="x" * 4096, content_type="application/json")
    body = assert_shape(response, 413, "payload_too_large")
    assert "2048" in body["message"]


def test_a_body_sent_in_chunks_over_the_limit_is_413_not_cut_short(client):
    """No Content-Length (chunked): werkzeug stops reading at the limit without complaint,
    so the view would have read a valid JSON prefix of a body it should refuse."""
    body = b'{"email": "a@example.com", "password": "x"}' + b" " * 4096 + b"not json"
    response = client.post(
        "/api/v1/auth/signup",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        environ_overrides=CHUNKED,
    )
    assert response.request.content_length is None
    assert_shape(response, 413, "payload_too_large")
    short = b'{"email": "a@example.com", "password": "x"}'
    response = client.post(
        "/api/v1/auth/signup",
        input_stream=io.BytesIO(short),
        content_type="application/json",
        environ_overrides=CHUNKED,
    )
    assert response.status_code == 422  # read whole: the password is too short


# as gunicorn passes a chunked body: no length, and a stream that ends with the body
CHUNKED = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True}


def test_domain_errors_keep_their_status_and_sentence(client):
    body = assert_shape(client.get("/test/forbidden"), 403, "forbidden")
    assert body["message"] == "You may only read this project."
    assert_shape(client.get("/test/credits"), 402, "insufficient_credits")


def test_a_crash_is_500_without_details_and_logged_with_the_request_id(client, caplog):
    with caplog.at_level(logging.ERROR):
        response = client.get("/test/crash", headers={"X-Request-ID": "trace-12345678"})
    body = assert_shape(response, 500, "internal_error")
    assert body["request_id"] == "trace-12345678"
    assert LEAKY not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    (record,) = [r for r in caplog.records if "trace-12345678" in r.getMessage()]
    assert record.exc_info is not None
    assert record.request_id == "trace-12345678"  # every record carries it, whoever handles it


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("PT400", 400, "bad_request"),
        ("PT402", 402, "insufficient_credits"),
        ("PT403", 403, "forbidden"),
        ("PT404", 404, "not_found"),
        ("PT409", 409, "conflict"),
        ("PT410", 410, "gone"),
    ],
)
def test_our_sql_errors_map_like_postgrest(client, code, status, error):
    body = assert_shape(client.get(f"/test/sqlstate/{code}"), status, error)
    assert body["message"] == f"project not found ({code})"  # our functions' own sentence


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("22P02", 400, "invalid_value"),
        ("22023", 400, "invalid_value"),
        ("23514", 400, "invalid_value"),
        ("23505", 409, "conflict"),
        ("42501", 403, "forbidden"),
        ("XX000", 500, "internal_error"),
    ],
)
def test_other_sql_errors_never_show_the_database_message(client, code, status, error):
    body = assert_shape(client.get(f"/test/sqlstate/{code}"), status, error)
    assert "project not found" not in body["message"]


def test_private_raise_error_reaches_the_client(client):
    body = assert_shape(client.get("/test/raise_error"), 402, "insufficient_credits")
    assert body["message"] == "not enough credits: this needs 50"


def test_a_statement_timeout_is_503(client):
    assert_shape(client.get("/test/slow"), 503, "timeout")


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("abc-123_DEF.456", True),
        ("short", False),
        ("<script>alert(1)</script>", False),
        ("x" * 200, False),
    ],
)
def test_request_ids(client, incoming, kept):
    response = client.get("/api/v1/health/live", headers={"X-Request-ID": incoming})
    assert (response.headers["X-Request-ID"] == incoming) is kept
    assert len(response.headers["X-Request-ID"]) >= 8
