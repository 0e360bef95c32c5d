"""Logging, configured once at start: every record carries the request id.

``configure(settings)`` runs one ``logging.config.dictConfig``: a handler on the root logger
writes JSON lines in production (one object per record: time, level, logger, message,
request_id, and the traceback when there is one) and readable lines elsewhere, at
``LOG_LEVEL``. Records from outside a request carry the request id ``-``. Flask adds no
handler of its own once the root logger has one, so the format never changes at the first
error. gunicorn's own loggers (``gunicorn.error``, ``gunicorn.access``) keep gunicorn's
configuration (``--access-logfile -`` in ``make run`` and the Procfile).
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from backend.config import Settings
from backend.http.request_id import request_id

HANDLER = "velro"
READABLE = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamps every record with the id of the request it was logged in, else "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(settings: Settings) -> None:
    """Route every logger through one handler in the format the environment wants."""
    # Handlers someone else put on the root logger (a test runner's capture) stay;
    # ours from an earlier call are replaced.
    foreign = [h for h in logging.root.handlers if h.get_name() != HANDLER]
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"request_id": {"()": RequestIdFilter}},
            "formatters": {
                "json": {"()": JsonFormatter},
                "readable": {"format": READABLE},
            },
            "handlers": {
                HANDLER: {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stderr",
                    "filters": ["request_id"],
                    "formatter": "json" if settings.is_production else "readable",
                }
            },
            "root": {"level": settings.LOG_LEVEL.upper(), "handlers": [HANDLER]},
        }
    )
    for handler in foreign:
        logging.root.addHandler(handler)
