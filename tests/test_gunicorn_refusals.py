"""Requests gunicorn refuses before the app sees them get the API's one error shape.

An overlong request line, oversized or too many headers, or bytes that are not HTTP are
refused by gunicorn itself while it reads the request; the worker class
(backend/http/gunicorn_worker.py) writes those answers as JSON, like every other error.
Checked on a real gunicorn over a raw socket, since no HTTP client sends such requests.
"""

from __future__ import annotations

import json
import socket

import pytest

from harness.servers import Server

# gunicorn's defaults, which the Procfile keeps
LINE_LIMIT = 4094
FIELD_LIMIT = 8190
FIELDS_LIMIT = 100


@pytest.fixture(scope="module")
def server(database_factory, migrated_template, tmp_path_factory):
    log = tmp_path_factory.mktemp("refusals") / "gunicorn.log"
    env = {"RATE_LIMIT_ENABLED": "false", "ANALYTICS_REFRESH_SECONDS": "0"}
    with Server(database_factory(migrated_template), env, workers=1, log=log) as server:
        yield server


def exchange(server: Server, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes: (status line, headers, body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(raw)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    fields = (line.partition(":") for line in lines)
    headers = {name.lower(): value.strip() for name, _, value in fields}
    return status, headers, body


def assert_error_shape(headers: dict, body: bytes, error: str) -> str:
    assert headers["content-type"] == "application/json"
    assert headers["x-content-type-options"] == "nosniff"
    assert int(headers["content-length"]) == len(body)
    answer = json.loads(body)
    assert set(answer) == {"error", "message", "request_id"}, answer
    assert answer["error"] == error
    assert answer["request_id"] == headers["x-request-id"]
    return answer["message"]


def test_an_overlong_request_line_is_414_in_the_error_shape(server):
    path = "/api/v1/health/live?q=" + "a" * LINE_LIMIT
    status, headers, body = exchange(server, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status.startswith("HTTP/1.1 414 "), status
    message = assert_error_shape(headers, body, "request_uri_too_long")
    assert f"longer than {LINE_LIMIT} bytes" in message


@pytest.mark.parametrize(
    "extra",
    [
        f"X-Big: {'a' * FIELD_LIMIT}\r\n",
        "".join(f"X-H{n}: v\r\n" for n in range(FIELDS_LIMIT + 1)),
    ],
    ids=["one header too large", "too many headers"],
)
def test_oversized_headers_are_431_in_the_error_shape(server, extra):
    raw = f"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
    status, headers, body = exchange(server, raw)
    assert status.startswith("HTTP/1.1 431 "), status
    message = assert_error_shape(headers, body, "request_header_fields_too_large")
    assert f"at most {FIELDS_LIMIT} headers of {FIELD_LIMIT} bytes each" in message


def test_bytes_that_are_not_http_are_400_in_the_error_shape(server):
    status, headers, body = exchange(server, b"HELLO <script>\r\n\r\n")
    assert status.startswith("HTTP/1.1 400 "), status
    message = assert_error_shape(headers, body, "bad_request")
    assert message.startswith("The request is not valid HTTP/1.1 (")
    assert b"<html" not in body.lower()


def test_a_request_gunicorn_accepts_still_reaches_the_app(server):
    status, _, body = exchange(
        server, b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status.startswith("HTTP/1.1 200 "), status
    assert json.loads(body)["status"] == "ok"
