"""The media-copy job's work: every output URL of a completed generation into our storage.

Run by the worker once a generation completes. It is safe to run again (a retried job),
even beside itself (a job retried while the worker that seemed stalled still runs it):
each copy stores under names of its own, records its rows while holding the generation's
row, and then deletes the objects of the rows it replaced. A URL we refuse (host, address,
type, size, time), or more outputs than a generation may have, stops the copy with
``UnsafeMedia``, which the job records; nothing half-stored is shown, since a row is
written only after its object is, and a copy that stops deletes what it stored, which no
other copy's rows name.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from backend.media.fetch import FetchPolicy, UnsafeMedia, fetch
from backend.media.probe import probe

READ_OUTPUTS = "select status, outputs from public.generations where id = %s"
RECORD = (
    "select * from public.record_generation_media(p_generation_id => %s, p_position => %s,"
    " p_storage_path => %s, p_content_type => %s, p_size_bytes => %s, p_width => %s,"
    " p_height => %s, p_source_url => %s)"
)
AS_SERVICE = "select set_config('role', 'service_role', true)"
# no key update: two copies record one after the other, each seeing the rows it replaces
STILL_THERE = "select 1 from public.generations where id = %s for no key update"
RECORDED = "select storage_path from public.generation_media where generation_id = %s"


def output_urls(outputs: Any) -> list[str]:
    """Every ``url`` in a provider's result, in document order.

    FAL's results hold them as ``{"images": [{"url": ...}]}`` or ``{"video": {"url": ...}}``;
    walking the document keeps one rule for every model.
    """
    return list(_urls(outputs))


def _urls(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("url"), str):
            yield node["url"]
            return
        for value in node.values():
            yield from _urls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _urls(value)


def copy_outputs(
    database_url: str,
    generation_id: UUID | str,
    storage,
    policy: FetchPolicy,
    max_outputs: int,
) -> list[dict]:
    """Copy a completed generation's outputs; returns the rows recorded (none if not completed)."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        row = conn.execute(READ_OUTPUTS, (generation_id,)).fetchone()
    if row is None or row["status"] != "completed":
        return []
    urls = output_urls(row["outputs"])
    if len(urls) > max_outputs:
        raise UnsafeMedia(f"{len(urls)} outputs are more than the {max_outputs} copied at most")
    copy = secrets.token_hex(4)
    named: list[str] = []  # noted before each upload: one that fails may still have landed
    try:
        stored = [
            _store_one(generation_id, position, url, copy, named, storage, policy)
            for position, url in enumerate(urls)
        ]
        recorded, replaced = _record(database_url, generation_id, stored, storage)
    except BaseException:
        storage.delete(named)
        raise
    storage.delete(sorted(replaced - set(named)))
    return recorded


def _record(database_url: str, generation_id, stored: list[tuple], storage):
    """The rows of this copy, and the names of the objects the rows it replaced named."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.transaction():
        conn.execute(AS_SERVICE)
        # held until the rows are in: a delete of the generation waits, then queues it for
        # the cleanup job, which finds these objects
        if conn.execute(STILL_THERE, (generation_id,)).fetchone() is None:
            # deleted while we copied, and perhaps cleaned already: nobody else will
            storage.delete_generation(generation_id)
            return [], set()
        replaced = {row["storage_path"] for row in conn.execute(RECORDED, (generation_id,))}
        return [conn.execute(RECORD, item).fetchone() for item in stored], replaced


def _store_one(
    generation_id, position: int, url: str, copy: str, named: list[str], storage, policy
) -> tuple:
    fetched = fetch(url, policy)
    probed = probe(fetched.body)  # the bytes' own type, not the one the provider declared
    name = f"{generation_id}/{position}-{copy}.{probed.extension}"
    named.append(name)
    storage.put(name, fetched.body, probed.content_type)
    return (
        str(generation_id),
        position,
        name,
        probed.content_type,
        len(fetched.body),
        probed.width,
        probed.height,
        url,
    )
