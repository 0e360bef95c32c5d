"""Logging: one configuration at start, the request id on every record, JSON in production."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask

from backend import logging as velro_logging
from backend.config import load_settings

LOCAL = {"DATABASE_URL": "postgresql://app@db/db", "APP_ENV": "development"}
PRODUCTION = {
    **LOCAL,
    "APP_ENV": "production",
    "JWT_SECRET": "p" * 40,
    "FAL_KEY": "fal-key",
    "PUBLIC_URL": "https://velro.example",
    "SMTP_HOST": "smtp.example",
    "SMTP_SENDER": "velro@example.com",
}


@pytest.fixture(autouse=True)
def restore_root_logger():
    """Each test configures logging; the next test finds the root logger as it was."""
    handlers, level = logging.root.handlers[:], logging.root.level
    yield
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


def lines_of_request(capsys, request_id: str) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if request_id in line]


def log_in_a_request(request_id: str) -> None:
    app = Flask(__name__)
    with app.test_request_context(headers={"X-Request-ID": request_id}):
        logging.getLogger("backend.somewhere").warning("disk almost full")
        logging.getLogger("psycopg.pool").error("connection lost")  # not ours, same stamp


def test_a_requests_lines_are_found_by_its_id_in_readable_form(capsys):
    velro_logging.configure(load_settings(LOCAL, environ={}))
    log_in_a_request("req-readable-0001")
    lines = lines_of_request(capsys, "req-readable-0001")
    assert len(lines) == 2
    assert "WARNING [req-readable-0001] backend.somewhere: disk almost full" in lines[0]
    assert "ERROR [req-readable-0001] psycopg.pool: connection lost" in lines[1]


def test_production_writes_one_json_object_per_line(capsys):
    velro_logging.configure(load_settings(PRODUCTION, environ={}))
    log_in_a_request("req-json-000000001")
    records = [json.loads(line) for line in lines_of_request(capsys, "req-json-000000001")]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("WARNING", "backend.somewhere", "disk almost full"),
        ("ERROR", "psycopg.pool", "connection lost"),
    ]
    assert {r["request_id"] for r in records} == {"req-json-000000001"}


def test_records_outside_a_request_say_so_and_tracebacks_stay_in_one_json_line(capsys):
    velro_logging.configure(load_settings(PRODUCTION, environ={}))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("backend.jobs").exception("job failed")
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "job failed" in line]
    record = json.loads(line)
    assert record["request_id"] == "-"
    assert "RuntimeError: boom" in record["exception"]


def test_log_level_is_honoured(capsys):
    velro_logging.configure(load_settings({**LOCAL, "LOG_LEVEL": "ERROR"}, environ={}))
    log_in_a_request("req-level-00000001")
    (line,) = lines_of_request(capsys, "req-level-00000001")
    assert "connection lost" in line


def test_configuring_twice_keeps_one_handler_and_the_first_error_changes_nothing(capsys):
    settings = load_settings(LOCAL, environ={})
    velro_logging.configure(settings)
    velro_logging.configure(settings)
    ours = [h for h in logging.root.handlers if h.get_name() == velro_logging.HANDLER]
    assert len(ours) == 1
    app = Flask("backend.app")
    app.logger.error("first error")  # Flask adds its own handler here unless one exists
    app.logger.error("second error")
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" ", 2)[2] for line in err if "error" in line] == [
        "ERROR [-] backend.app: first error",
        "ERROR [-] backend.app: second error",
    ]
