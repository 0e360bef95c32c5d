"""What FAL's answers mean for a generation, written through ``record_generation_progress``.

The SQL function moves a generation only forward (queued -> processing -> completed or
failed) and refunds a failure once, so duplicate, late and out-of-order answers are
harmless: applying them again changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

log = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 2000


def outputs_of(payload: Any) -> list[dict[str, Any]]:
    """The media a FAL result names: ``images`` (a list), ``image`` or ``video`` (one each)."""
    if not isinstance(payload, dict):
        return []
    found = []
    for key in ("images", "videos"):
        if isinstance(payload.get(key), list):
            found.extend(item for item in payload[key] if isinstance(item, dict))
    for key in ("image", "video"):
        if isinstance(payload.get(key), dict):
            found.append(payload[key])
    kept = ("url", "content_type", "width", "height")
    return [
        {name: item[name] for name in kept if name in item}
        for item in found
        if isinstance(item.get("url"), str)
    ]


def record(
    cur: psycopg.Cursor,
    generation_id: str,
    status: str,
    *,
    request_id: str | None = None,
    outputs: list | None = None,
    error: str | None = None,
) -> dict:
    cur.execute(
        "select * from public.record_generation_progress(%s, %s, %s, %s, %s)",
        (
            generation_id,
            status,
            request_id,
            Jsonb(outputs) if outputs is not None else None,
            error[:MAX_ERROR_LENGTH] if error else None,
        ),
    )
    return cur.fetchone()


def record_submission(cur: psycopg.Cursor, generation_id: str, request_id: str) -> bool:
    """The generation is queued under FAL's request id; False if, while FAL was taking it,
    the generation was cancelled or deleted (then FAL runs it for nobody)."""
    # locked first: a cancel or a delete either commits before this (seen here) or waits
    # and then finds the request id: the cancel answers 409, and a cancel sent again goes
    # through FAL (a delete of work FAL holds is refused, or cancelled at FAL by its job)
    cur.execute("select 1 from public.generations where id = %s for update", (generation_id,))
    if cur.fetchone() is None:
        return False
    recorded = record(cur, generation_id, "queued", request_id=request_id)
    return recorded["fal_request_id"] == request_id


def complete(
    cur: psycopg.Cursor,
    generation_id: str,
    request_id: str,
    payload: Any,
    max_outputs: int,
) -> dict:
    """Record a finished result: its first ``max_outputs`` outputs (what the media copy
    takes, MEDIA_MAX_OUTPUTS, so that a result naming thousands cannot bloat its row), or a
    failure if it has none."""
    outputs = outputs_of(payload)
    if not outputs:
        return record(
            cur, generation_id, "failed", request_id=request_id, error="FAL returned no outputs"
        )
    if len(outputs) > max_outputs:
        log.warning(
            "generation %s: FAL returned %d outputs, the first %d are kept",
            generation_id,
            len(outputs),
            max_outputs,
        )
    kept = outputs[:max_outputs]
    return record(cur, generation_id, "completed", request_id=request_id, outputs=kept)


def fail(cur: psycopg.Cursor, generation_id: str, error: str, request_id: str | None = None):
    return record(cur, generation_id, "failed", request_id=request_id, error=error)


def generation(cur: psycopg.Cursor, generation_id: str) -> dict | None:
    cur.execute(
        "select id, owner_id, model_id, prompt, parameters, status, fal_request_id, created_at, "
        "extract(epoch from now() - created_at) as age_seconds "
        "from public.generations where id = %s",
        (generation_id,),
    )
    return cur.fetchone()
