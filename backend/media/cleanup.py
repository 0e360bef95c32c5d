"""The media-cleanup job's work: a deleted generation's stored objects go too.

A delete of generations (one, a project's, an account's) queues their ids in
``private.media_of_deleted_generations`` in its own transaction (a trigger); this empties
the queue. A generation's id is never used again; a copy still uploading when its
generation goes finds it gone when it records the rows, and deletes what it stored
(``backend.media.copy``).
"""

from __future__ import annotations

import psycopg

DELETED = """
select generation_id from private.media_of_deleted_generations
order by deleted_at
limit %s
for update skip locked
"""
FORGET = "delete from private.media_of_deleted_generations where generation_id = any(%s)"


def delete_media_of_deleted_generations(database_url: str, storage, limit: int = 100) -> int:
    """Delete the stored objects of generations deleted since the last run; how many.

    Each queued generation is locked while its objects go (two workers never both take it)
    and forgotten in the same transaction; if storage fails, the rest waits for next time.
    """
    with psycopg.connect(database_url) as conn, conn.transaction():
        generation_ids = [row[0] for row in conn.execute(DELETED, (limit,)).fetchall()]
        for generation_id in generation_ids:
            storage.delete_generation(generation_id)
        conn.execute(FORGET, (generation_ids,))
    return len(generation_ids)
