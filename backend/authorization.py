"""Cached answers to "may this caller do this?": L1 -> L2 -> Postgres, which decides.

Postgres makes every decision (``public.authorize_generation`` and the RLS policies); this
module only remembers answers, tagged with everything they depend on, so that the
invalidation listener can forget them the moment one of those things changes:

- a grant depends on the user, the generation and the generation's project;
- a denial depends on the user and the generation, and on projects the caller cannot
  name, so every project notice drops all denials (``backend.invalidation``).
"""

from __future__ import annotations

import time
from uuid import UUID

from backend import db
from backend.auth.guard import current_user
from backend.cache import cache

# One statement: Postgres decides, and names the project when the caller may read it.
DECISION = (
    "select public.authorize_generation(%(id)s) as decision,"
    " (select project_id from public.generations where id = %(id)s) as project_id"
)


def authorize_generation(generation_id: UUID) -> dict:
    """The documented authorization answer, with response_time_ms and cache_hit."""
    started = time.perf_counter()
    user = current_user()
    key = f"authz:generation:{user.user_id}:{generation_id}"
    # on a cache hit no transaction ran: require_user then checks the session, also cached
    decision, layer = cache().get_or_load(key, lambda: _decide(user.user_id, generation_id))
    return {
        **decision,
        "response_time_ms": round((time.perf_counter() - started) * 1000, 3),
        "cache_hit": layer != "db",
    }


def _decide(user_id: UUID, generation_id: UUID) -> tuple[dict, list[str]]:
    (row,) = db.user_query(DECISION, {"id": generation_id})
    tags = [f"user:{user_id}", f"generation:{generation_id}"]
    if not row["decision"]["access_granted"]:
        tags.append("denials")
    elif row["project_id"] is not None:
        tags.append(f"project:{row['project_id']}")
    return row["decision"], tags
