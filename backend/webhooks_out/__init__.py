"""Webhooks to our users (Standard Webhooks): signing secrets, delivery, the delivery log.

- ``deliver``: claims one logged event, signs it with the owner's secret, POSTs it, records
  the answer and schedules retries with backoff (``deliver``, ``deliver_due``).
- ``routes``: the caller's signing secret (made or rotated, shown once) and a generation's
  delivery log.

Events are logged by a database trigger in the transaction that changes the status; the
worker runs ``deliver_due_webhooks(settings)`` periodically (and may run
``deliver_webhook(settings, delivery_id)`` for one). It may import ``backend.config``,
``backend.media`` and the database driver; only ``routes`` knows Flask.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from backend.config import Settings
from backend.media import storage_for
from backend.webhooks_out.deliver import DeliveryPolicy, deliver, deliver_due


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    return DeliveryPolicy(
        max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
        timeout=settings.WEBHOOK_TIMEOUT,
        allow_private=settings.WEBHOOKS_ALLOW_PRIVATE and not settings.is_production,
        require_https=settings.is_production,
    )


def media_links(settings: Settings):
    """Signed URLs of a generation's stored outputs, for the ``completed`` event."""
    storage = storage_for(settings)

    def links(generation_id) -> list[dict]:
        with psycopg.connect(settings.direct_database_url, row_factory=dict_row) as conn:
            rows = conn.execute(
                "select position, content_type, size_bytes, width, height, storage_path"
                " from public.generation_media where generation_id = %s order by position",
                (generation_id,),
            ).fetchall()
        return [
            {
                **{k: v for k, v in row.items() if k != "storage_path"},
                "url": storage.signed_url(row["storage_path"], settings.MEDIA_URL_SECONDS),
            }
            for row in rows
        ]

    return links


def deliver_webhook(settings: Settings, delivery_id) -> bool:
    return deliver(
        settings.direct_database_url, delivery_id, delivery_policy(settings), media_links(settings)
    )


def deliver_due_webhooks(settings: Settings) -> int:
    return deliver_due(
        settings.direct_database_url, delivery_policy(settings), media_links(settings)
    )
