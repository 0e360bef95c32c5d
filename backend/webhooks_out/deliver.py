"""Delivering one logged webhook event: sign per Standard Webhooks, POST, record the answer.

A delivery is claimed with ``for update skip locked``, so two workers never send the same
attempt; the row stays locked while its request runs (bounded by WEBHOOK_TIMEOUT). Every
attempt of one event carries the same ``webhook-id`` (the delivery's id), as the spec asks,
so receivers drop duplicates. A 2xx ends it; anything else (an error status, a timeout, a
refused address) schedules the next attempt with exponential backoff, until
WEBHOOK_MAX_ATTEMPTS, when it is marked failed. Redirects are not followed, and the request
goes to the address that was checked, so a DNS answer that changes in between cannot
turn it toward our own network.

A ``completed`` event carries signed URLs to our copies of the outputs, not the provider's
expiring ones, so it waits (without using up an attempt) while the media copy is still
running, for at most two minutes after the event; then it goes with what is stored.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import psycopg
from psycopg.rows import dict_row
from standardwebhooks import Webhook

from backend.media.copy import output_urls
from backend.media.fetch import UnsafeMedia, as_host, pinned, refuse_private

log = logging.getLogger(__name__)

CLAIM = """
select d.id, d.generation_id, d.owner_id, d.event, d.url, d.attempts, s.secret
from public.webhook_deliveries as d
left join private.webhook_secrets as s on s.user_id = d.owner_id
where d.id = %s and d.status = 'pending'
for update of d skip locked
"""
DUE = """
select id from public.webhook_deliveries
where status = 'pending' and next_attempt_at <= now()
order by next_attempt_at
limit %s
"""
GENERATION = """
select id, owner_id, project_id, model_id, prompt, parameters, title, status, error, cost,
       created_at, updated_at, completed_at,
       (select count(*) from public.generation_media as m where m.generation_id = g.id) as stored
from public.generations as g where id = %s
"""
OUTPUTS = "select outputs from public.generations where id = %s"
MEDIA_STILL_COPYING = """
update public.webhook_deliveries set next_attempt_at = now() + interval '5 seconds'
where id = %s and created_at > now() - interval '2 minutes'
returning id
"""
DELIVERED = """
update public.webhook_deliveries
set status = 'delivered', attempts = attempts + 1, response_status = %s, last_error = null,
    delivered_at = now()
where id = %s
"""
RETRY = """
update public.webhook_deliveries
set attempts = attempts + 1, response_status = %s, last_error = left(%s, 1000),
    status = case when attempts + 1 >= %s then 'failed' else 'pending' end,
    next_attempt_at = now() + make_interval(secs => least(3600, 5 * power(2, attempts)))
where id = %s
"""


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int
    timeout: float
    allow_private: bool  # tests only: production never calls private or loopback addresses
    require_https: bool


class Refused(Exception):
    """A destination we do not call; the message says why (it goes to the delivery log)."""


def deliver_due(database_url: str, policy: DeliveryPolicy, media=None, limit: int = 50) -> int:
    """Deliver what is due now (the periodic job); returns how many were attempted."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        due = [row["id"] for row in conn.execute(DUE, (limit,)).fetchall()]
    return sum(deliver(database_url, delivery_id, policy, media) for delivery_id in due)


def deliver(database_url: str, delivery_id, policy: DeliveryPolicy, media=None) -> bool:
    """Attempt one delivery; False if it is not pending or another worker holds it.

    ``media(generation_id) -> list`` adds the generation's signed output URLs to the
    ``completed`` event.
    """
    with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.transaction():
        delivery = conn.execute(CLAIM, (delivery_id,)).fetchone()
        if delivery is None:
            return False
        generation = conn.execute(GENERATION, (delivery["generation_id"],)).fetchone()
        if (
            _media_pending(conn, delivery, generation)
            and conn.execute(MEDIA_STILL_COPYING, (delivery_id,)).fetchone()
        ):
            return True
        status, error = _attempt(delivery, generation, policy, media)
        if error is None:
            conn.execute(DELIVERED, (status, delivery_id))
        else:
            log.info("webhook %s attempt failed: %s", delivery_id, error)
            conn.execute(RETRY, (status, error, policy.max_attempts, delivery_id))
        return True


def _media_pending(conn, delivery, generation) -> bool:
    """A completed generation whose outputs are not all in our storage yet."""
    if delivery["event"] != "completed" or not generation or generation["status"] != "completed":
        return False
    outputs = conn.execute(OUTPUTS, (generation["id"],)).fetchone()["outputs"]
    return generation["stored"] < len(output_urls(outputs))


def _attempt(delivery, generation, policy: DeliveryPolicy, media) -> tuple[int | None, str | None]:
    if not delivery["secret"]:
        return None, "no signing secret: create one with POST /api/v1/webhooks/secret"
    try:
        target, options = _destination(delivery["url"], policy)
    except Refused as refused:
        return None, str(refused)
    body = json.dumps(_event(delivery, generation, media), default=str, separators=(",", ":"))
    headers = {
        **options.pop("headers", {}),
        **signed_headers(delivery["secret"], str(delivery["id"]), body),
    }
    try:
        with httpx.Client(timeout=policy.timeout, follow_redirects=False, trust_env=False) as http:
            response = http.post(target, content=body, headers=headers, **options)
    except httpx.HTTPError as error:
        return None, f"request failed: {error.__class__.__name__}: {error}"
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"answered {response.status_code}"


def signed_headers(secret: str, message_id: str, body: str, now: datetime | None = None) -> dict:
    timestamp = now or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, timestamp, body),
    }


def _event(delivery, generation, media) -> dict:
    data = {key: value for key, value in (generation or {}).items() if key != "stored"}
    if delivery["event"] == "completed" and media is not None and generation:
        data["media"] = media(generation["id"])
    return {
        "type": f"generation.{delivery['event']}",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": data,
    }


def _destination(url: str, policy: DeliveryPolicy) -> tuple[httpx.URL, dict]:
    """Where to send (the checked address) and the options that keep the host's name."""
    target = httpx.URL(url)
    if policy.require_https and target.scheme != "https":
        raise Refused("webhook_url must be https")
    if not target.host:
        raise Refused("webhook_url has no host")
    if policy.allow_private:
        return target, {}
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        addresses = sorted({info[4][0] for info in socket.getaddrinfo(target.host, port)})
        refuse_private(target.host, addresses)
    except OSError as error:
        raise Refused(f"{target.host} does not resolve: {error}") from None
    except UnsafeMedia as unsafe:
        raise Refused(str(unsafe)) from None
    return pinned(target, addresses[0]), as_host(target)
