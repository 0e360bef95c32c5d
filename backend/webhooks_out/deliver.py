"""Delivering one logged webhook event: sign per Standard Webhooks, POST, record the answer.

A due delivery is claimed with ``for update skip locked`` and leased: its next attempt
moves past the time this one may take, and the claim commits before the request, so no
lock or transaction is held while a receiver answers, other sweeps pass it by, and a worker
that dies mid-attempt leaves it due again once the lease runs out. An attempt takes at most
WEBHOOK_TIMEOUT in all (however slowly a receiver drips its answer), and only its status is
read, never its body. Every attempt of one event carries the same ``webhook-id`` (the
delivery's id), as the spec asks, so receivers drop duplicates. A 2xx ends it; anything
else (an error status, a timeout, a refused or malformed address, an event we could not
build) schedules the next attempt with exponential backoff and jitter, until
WEBHOOK_MAX_ATTEMPTS, when it is marked failed. Redirects are not followed, and the request
goes to an address that was checked, so a DNS answer that changes in between cannot turn it
toward our own network; when the host has several, one that refuses or does not connect in
its share of the time gives way to the next.

A ``completed`` event carries signed URLs to our copies of the outputs, not the provider's
expiring ones, so it waits (without using up an attempt) while the media copy is still
running, for at most two minutes after the event; then it goes with what is stored.
"""

from __future__ import annotations

import functools
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import httpx
import psycopg
from psycopg.rows import dict_row
from standardwebhooks import Webhook

from backend.media.copy import output_urls
from backend.media.fetch import (
    UnsafeMedia,
    as_host,
    first_to_connect,
    pinned,
    refuse_private,
    resolve_in_time,
    system_resolve,
)

log = logging.getLogger(__name__)

CLAIM = """
select d.id, d.generation_id, d.owner_id, d.event, d.url, d.attempts, s.secret
from public.webhook_deliveries as d
left join private.webhook_secrets as s on s.user_id = d.owner_id
where d.id = %s and d.status = 'pending' and d.next_attempt_at <= now()
for update of d skip locked
"""
LEASE = """
update public.webhook_deliveries set next_attempt_at = now() + make_interval(secs => %s)
where id = %s
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
set status = 'delivered', attempts = greatest(attempts, %(claimed)s + 1),
    response_status = %(status)s, last_error = null, delivered_at = now()
where id = %(id)s and status <> 'delivered'
"""
RETRY = """
update public.webhook_deliveries
set attempts = attempts + 1, response_status = %s, last_error = left(%s, 1000),
    status = case when attempts + 1 >= %s then 'failed' else 'pending' end,
    next_attempt_at = now() + make_interval(secs => %s)
where id = %s and status = 'pending' and attempts = %s
"""
# the backoff's bounds: the wait after a first failure is at least this...
FIRST_WAIT_SECONDS = 5
# ...and no wait is longer than this
LONGEST_WAIT_SECONDS = 3600
# how long past an attempt's own limit its lease runs, for the claim and the record
LEASE_MARGIN_SECONDS = 30
MAX_PORT = 65535


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int
    timeout: float
    allow_private: bool  # tests only: production never calls private or loopback addresses
    require_https: bool
    # a number in [0, 1) for the backoff's jitter; tests pass their own to know the waits
    random_fraction: Callable[[], float] = field(default=random.random, compare=False)


class Refused(Exception):
    """A destination we do not call; the message says why (it goes to the delivery log)."""


def deliver_due(database_url: str, policy: DeliveryPolicy, media=None, limit: int = 50) -> int:
    """Deliver what is due now (the periodic job); returns how many were attempted."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        due = [row["id"] for row in conn.execute(DUE, (limit,)).fetchall()]
    attempted = 0
    for delivery_id in due:
        try:
            attempted += deliver(database_url, delivery_id, policy, media)
        except Exception:
            # one delivery's fault must not hold back everyone else's: it is logged, and
            # its lease makes it due again later
            log.exception("webhook %s could not be attempted", delivery_id)
    return attempted


def deliver(database_url: str, delivery_id, policy: DeliveryPolicy, media=None) -> bool:
    """Attempt one delivery; False if it is not due or another worker holds it.

    ``media(generation_id) -> list`` adds the generation's signed output URLs to the
    ``completed`` event.
    """
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        with conn.transaction():
            delivery = conn.execute(CLAIM, (delivery_id,)).fetchone()
            if delivery is None:
                return False
            generation = conn.execute(GENERATION, (delivery["generation_id"],)).fetchone()
            if (
                _media_pending(conn, delivery, generation)
                and conn.execute(MEDIA_STILL_COPYING, (delivery_id,)).fetchone()
            ):
                return True
            lease = policy.timeout + LEASE_MARGIN_SECONDS
            conn.execute(LEASE, (lease, delivery_id))
        status, error = _send(delivery, generation, media, policy)
        # a failure is fenced by the attempts it claimed: a sweep that claimed it again after
        # this attempt's lease ran out records its own attempt, not this one twice
        claimed = delivery["attempts"]
        if error is None:  # a 2xx stands, whichever attempt recorded first
            conn.execute(DELIVERED, {"status": status, "id": delivery_id, "claimed": claimed})
        else:
            log.info("webhook %s attempt failed: %s", delivery_id, error)
            wait = backoff_seconds(claimed, policy.random_fraction)
            conn.execute(RETRY, (status, error, policy.max_attempts, wait, delivery_id, claimed))
        conn.commit()
        return True


def backoff_seconds(attempts: int, random_fraction: Callable[[], float]) -> float:
    """The wait before the next attempt, after ``attempts + 1`` have failed: a random point
    in the upper half of a ceiling that doubles from 10 s up to LONGEST_WAIT_SECONDS, so
    from FIRST_WAIT_SECONDS (after a first failure) to at most LONGEST_WAIT_SECONDS.

    Random because a fixed schedule keeps deliveries that failed together (one receiver
    down, a burst of events) coming back together, each retry a new burst. Only the upper
    half ("equal jitter", not a full one from zero), so that each wait is still at least
    half its ceiling: backing off must leave a receiver that is down the time to recover,
    and a full jitter could retry within seconds after the seventh failure and so give up
    on an event minutes after its first.
    """
    doublings = min(attempts, 30)  # far past the longest wait already; keeps the number small
    ceiling = min(LONGEST_WAIT_SECONDS, 2 * FIRST_WAIT_SECONDS * 2**doublings)
    return ceiling / 2 * (1 + random_fraction())


def _media_pending(conn, delivery, generation) -> bool:
    """A completed generation whose outputs are not all in our storage yet."""
    if delivery["event"] != "completed" or not generation or generation["status"] != "completed":
        return False
    outputs = conn.execute(OUTPUTS, (generation["id"],)).fetchone()["outputs"]
    return generation["stored"] < len(output_urls(outputs))


def _send(delivery, generation, media, policy: DeliveryPolicy) -> tuple[int | None, str | None]:
    """Build the event and attempt it: the answer's status, and why it failed if it did."""
    try:
        body = json.dumps(_event(delivery, generation, media), default=str, separators=(",", ":"))
    except Exception:
        # say, the media's signed URLs could not be made: a failed attempt like any other,
        # so it backs off and is given up on at the limit, instead of coming back uncounted
        # each time its lease runs out; the cause goes to our log only, since the delivery
        # log is its owner's to read
        log.exception("webhook %s: the event could not be built", delivery["id"])
        return None, "the event could not be built (an error on our side)"
    return _attempt(delivery, body, policy)


def _attempt(delivery, body: str, policy: DeliveryPolicy) -> tuple[int | None, str | None]:
    if not delivery["secret"]:
        return None, "no signing secret: create one with POST /api/v1/webhooks/secret"
    headers = signed_headers(delivery["secret"], str(delivery["id"]), body)
    try:
        status = anyio.run(_post, delivery["url"], body, headers, policy)
    except Refused as refused:
        return None, str(refused)
    except TimeoutError:
        return None, f"no answer within {policy.timeout:g} s"
    except (httpx.HTTPError, ValueError) as error:  # ValueError: a host IDNA refuses
        return None, f"request failed: {error.__class__.__name__}: {error}"
    if 200 <= status < 300:
        return status, None
    return status, f"answered {status}"


async def _post(url: str, body: str, headers: dict, policy: DeliveryPolicy) -> int:
    """The answer's status, within the policy's timeout in all (resolving the host and
    trying each of its addresses included); its body is never read."""
    with anyio.fail_after(policy.timeout) as deadline:
        routes, options = await _destination(url, policy)
        headers = {**options.pop("headers", {}), **headers}
        request = {"content": body, "headers": headers, **options}
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as http:
            status = functools.partial(_status, http, request)
            return await first_to_connect(routes, deadline, policy.timeout, status)


async def _status(http: httpx.AsyncClient, request: dict, route: httpx.URL, timeout) -> int:
    async with http.stream("POST", route, timeout=timeout, **request) as response:
        return response.status_code


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


def checked_url(url: str) -> tuple[httpx.URL, str, int]:
    """The URL with its host and port as a delivery reads them; Refused, saying why, when
    it cannot be sent to: a host name IDNA refuses, a port out of range. The API checks a
    webhook_url with this too."""
    try:
        target = httpx.URL(url)
        host = target.host  # decoding it checks the name (IDNA)
        port = target.port
    except (httpx.InvalidURL, ValueError) as error:
        raise Refused(f"webhook_url is not a valid URL: {error}") from None
    if port is None:  # none given: the scheme's (httpx drops one that equals it)
        port = 443 if target.scheme == "https" else 80
    elif not 0 < port <= MAX_PORT:
        raise Refused(f"webhook_url is not a valid URL: port {port} is not from 1 to {MAX_PORT}")
    return target, host, port


async def _destination(url: str, policy: DeliveryPolicy) -> tuple[list[httpx.URL], dict]:
    """Where to send, in the order to try (the URL pinned to each checked address), and
    the options that keep the host's name."""
    target, host, port = checked_url(url)
    if policy.require_https and target.scheme != "https":
        raise Refused("webhook_url must be https")
    if not host:
        raise Refused("webhook_url has no host")
    if policy.allow_private:
        return [target], {}
    try:
        addresses = await resolve_in_time(system_resolve, host, port)
        refuse_private(host, addresses)
    except (OSError, ValueError, OverflowError) as error:
        # a name the resolver or IDNA refuses, or a port out of range
        raise Refused(f"{host} does not resolve: {error}") from None
    except UnsafeMedia as unsafe:
        raise Refused(str(unsafe)) from None
    if not addresses:
        raise Refused(f"{host} does not resolve")
    # every address passed the check above, so whichever answers is one we may call
    return [pinned(target, address) for address in addresses], as_host(target)
