"""What a verified FAL webhook does to its generation.

The generation is found by FAL's request id, which the signature covers. FAL signs the
deliveries of every FAL account alike, so a request id we never recorded proves nothing
by itself; the webhook URL we give FAL with each submission also names its generation,
with a tag only this service can make (an HMAC of the generation id), and that name is
used for two cases the request id cannot settle:

- the delivery outruns our record of the request id (FAL answered the submission, and
  finished, before the worker wrote the id down): the generation is still ``pending``
  with no request id, so it takes this one, and the delivery applies at once instead of
  waiting for FAL's retry;
- the delivery is of a request the generation does not hold (a submission repeated after
  its worker died before recording the first one; a generation cancelled while FAL took
  it; a generation deleted since): it is acknowledged, so FAL stops retrying, and changes
  nothing.

A delivery naming no generation, or one whose tag does not match, is found by its
request id alone, and an unknown id gets 404 (FAL retries it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from backend.config import FAL_WEBHOOK_NAMING, Settings
from backend.fal import progress

URL_TAG_LENGTH = 32  # hex characters of the HMAC kept in the URL (128 bits)
NAME, TAG = FAL_WEBHOOK_NAMING


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


def webhook_url(settings: Settings, generation_id: str) -> str:
    """The URL FAL posts this generation's result to: the webhook route, naming the
    generation with its tag (FAL_WEBHOOK_URL's own query is kept as written)."""
    generation_id = str(uuid.UUID(generation_id))
    parts = urlsplit(settings.fal_webhook_url)
    name = urlencode({NAME: generation_id, TAG: _tag(settings, generation_id)})
    return urlunsplit(parts._replace(query="&".join(filter(None, (parts.query, name)))))


def generation_named(settings: Settings, arguments: Mapping[str, str]) -> str | None:
    """The generation a webhook URL names, if its tag is ours; None otherwise."""
    try:
        generation_id = str(uuid.UUID(arguments.get(NAME, "")))
    except ValueError:
        return None
    # as bytes: compare_digest raises on a str that is not ASCII
    given, ours = arguments.get(TAG, "").encode(), _tag(settings, generation_id).encode()
    return generation_id if hmac.compare_digest(given, ours) else None


def _tag(settings: Settings, generation_id: str) -> str:
    # a key of its own, derived from JWT_SECRET: a URL tag and a token signature never coincide
    key = hmac.new(settings.JWT_SECRET.encode(), b"velro fal webhook urls", hashlib.sha256)
    digest = hmac.new(key.digest(), generation_id.encode(), hashlib.sha256).hexdigest()
    return digest[:URL_TAG_LENGTH]


@dataclass(frozen=True)
class Receipt:
    """What a delivery did: ``applied`` when its generation holds its request (recorded
    forward only: a generation that already ended keeps its end); ``status`` None when the
    named generation no longer exists."""

    generation_id: str
    status: str | None
    applied: bool


def apply_delivery(
    cur: psycopg.Cursor,
    request_id: str,
    delivery: dict,
    max_outputs: int,
    named_generation: str | None = None,
) -> Receipt | None:
    """Record the delivery on its generation (at most ``max_outputs`` of its outputs);
    None when no generation holds the request and none is named (FAL retries)."""
    row = _locked(cur, "fal_request_id", request_id)
    if row is None and named_generation is not None:
        # the same lock the worker's record of a submission takes: one of the two is first
        row = _locked(cur, "id", named_generation)
        if row is None:
            return Receipt(named_generation, None, False)
        if row["status"] == "pending" and row["fal_request_id"] is None:
            progress.record(cur, named_generation, "queued", request_id=request_id)
        elif row["fal_request_id"] != request_id:
            return Receipt(str(row["id"]), row["status"], False)
        # else the worker recorded this very request while the delivery waited for its lock
    if row is None:
        return None
    generation = _applied(cur, str(row["id"]), request_id, delivery, max_outputs)
    return Receipt(str(generation["id"]), generation["status"], True)


def _locked(cur: psycopg.Cursor, column: str, value: str) -> dict | None:
    query = sql.SQL(
        "select id, status, fal_request_id from public.generations where {} = %s for update"
    ).format(sql.Identifier(column))
    return cur.execute(query, (value,)).fetchone()


def _applied(
    cur: psycopg.Cursor, generation_id: str, request_id: str, delivery: dict, max_outputs: int
) -> dict:
    if delivery["status"] == "OK" and delivery.get("payload") is None:
        # FAL finished but could not put the result in the webhook (payload_error): it waits
        # in FAL's queue, where the poller fetches it once this webhook counts as late
        return progress.record(cur, generation_id, "processing")
    if delivery["status"] == "OK":
        payload = delivery["payload"]
        return progress.complete(cur, generation_id, request_id, payload, max_outputs)
    return progress.fail(cur, generation_id, error_of(delivery), request_id)
