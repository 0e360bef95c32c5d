"""What a verified FAL webhook does to its generation.

The generation is found by FAL's request id, which the signature covers; nothing the
sender chooses outside the signature picks the row. A delivery that outruns our own
record of the request id finds nothing and gets 404: FAL retries it (10 times over two
hours) and the retry finds the row.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from backend.fal import progress


class BadDelivery(ValueError):
    """The body is not a FAL webhook for the signed request id."""


def parse_delivery(body: bytes, signed_request_id: str) -> dict[str, Any]:
    try:
        delivery = json.loads(body)
    except ValueError:
        raise BadDelivery("the webhook body is not JSON") from None
    if not isinstance(delivery, dict):
        raise BadDelivery("the webhook body is not a JSON object")
    if delivery.get("request_id") != signed_request_id:
        raise BadDelivery("the body's request_id differs from the signed request id")
    if delivery.get("status") not in ("OK", "ERROR"):
        raise BadDelivery("the webhook status must be OK or ERROR")
    return delivery


def error_of(delivery: dict[str, Any]) -> str:
    detail = delivery.get("error") or delivery.get("payload_error") or delivery.get("payload")
    return "FAL reported an error: " + (detail if isinstance(detail, str) else json.dumps(detail))


def apply_delivery(
    cur: psycopg.Cursor, request_id: str, delivery: dict, max_outputs: int
) -> dict | None:
    """Record the delivery on its generation (at most ``max_outputs`` of its outputs); the
    generation after it, None if unknown."""
    cur.execute(
        "select id from public.generations where fal_request_id = %s for update", (request_id,)
    )
    row = cur.fetchone()
    if row is None:
        return None
    generation_id = str(row["id"])
    if delivery["status"] == "OK" and delivery.get("payload") is None:
        # FAL finished but could not put the result in the webhook (payload_error): it waits
        # in FAL's queue, where the poller fetches it once this webhook counts as late
        return progress.record(cur, generation_id, "processing")
    if delivery["status"] == "OK":
        payload = delivery["payload"]
        return progress.complete(cur, generation_id, request_id, payload, max_outputs)
    return progress.fail(cur, generation_id, error_of(delivery), request_id)
