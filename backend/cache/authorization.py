"""Cached answers to "may this caller do this?": L1 -> L2 -> Postgres, which decides.

Postgres makes every decision (``public.authorize_generation`` and the RLS policies) and,
in the same statement, names what the answer depends on
(``private.generation_answer_tags``: the caller, the generation and its project, also for
a denial). This module only remembers answers under those tags, so that the invalidation
listener can forget them the moment one of those rows changes.
"""

from __future__ import annotations

import json
import time
from uuid import UUID

from backend import db
from backend.cache import cache
from backend.cache.denials import cached_denials

# one statement: the session check, the caller's role and claims, the decision, its tags
DECISION = "select decision, tags from private.authorize_generation_for(%s, %s)"


def authorize_generation(claims: dict, generation_id: UUID) -> dict:
    """The documented authorization answer for the caller whose verified token claims these
    are, with response_time_ms and cache_hit."""
    started = time.perf_counter()
    key = f"authz:generation:{claims['sub']}:{generation_id}"
    # on a cache hit no transaction ran: require_user then checks the session, also cached
    decision, layer = cache().get_or_load(key, lambda: _decide(claims, generation_id))
    if layer != "db" and not decision["access_granted"]:
        # the database recorded this denial when it decided; a cached one is counted here
        cached_denials().add(claims["sub"], generation_id)
    return {
        **decision,
        "response_time_ms": round((time.perf_counter() - started) * 1000, 3),
        "cache_hit": layer != "db",
    }


def _decide(claims: dict, generation_id: UUID) -> tuple[dict, list[str]]:
    (row,) = db.caller_function_query(DECISION, (json.dumps(claims), generation_id))
    return row["decision"], row["tags"]
