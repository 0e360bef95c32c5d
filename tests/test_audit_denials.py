"""Denials in the audit: counted per (user, resource, hour), from every path that refuses.

- ``authorize_generation`` records its own denials in SQL, so parallel callers on their own
  connections add up exactly (the upsert is one statement);
- the API's refused requests on a resource (403, 404) are recorded after the refusal;
- denials served from the cache (no SQL ran) are counted by the process and written in
  batches, so a cached denial is still counted once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import psycopg
import pytest
from api_support import Api, running_api
from fixtures_app import app_settings

from backend import close_app, create_app
from backend.cache import EXTENSION

NIL = "00000000-0000-0000-0000-000000000000"
PARALLEL = 8
CALLS_EACH = 25


@pytest.fixture(scope="module")
def api(database_factory, migrated_template):
    with running_api(database_factory(migrated_template)) as running:
        yield running


def denials(api: Api, user, resource_type: str | None = None) -> dict[str, int]:
    """The user's denial counts by resource id (summed over hours)."""
    rows = api.sql(
        "select resource_id::text as id, sum(denials)::int as n from private.audit_denials"
        " where user_id = %s and (%s::text is null or resource_type = %s)"
        " group by resource_id",
        (user.id, resource_type, resource_type),
    )
    return {row["id"]: row["n"] for row in rows}


def authorize_as(db_url: str, user, generation_id: str, times: int) -> None:
    """Call authorize_generation as PostgREST would (POST: a read-write transaction)."""
    claims = json.dumps({"sub": user.id, "role": "authenticated"})
    with psycopg.connect(db_url, autocommit=True) as conn:
        for _ in range(times):
            with conn.transaction():
                conn.execute("set local role authenticated")
                conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
                answer = conn.execute(
                    "select public.authorize_generation(%s)", (generation_id,)
                ).fetchone()[0]
                assert answer["access_granted"] is False


def test_parallel_denials_add_up_exactly(api):
    owner, stranger = api.user("owner"), api.user("stranger")
    api.grant_credits(owner, 100)
    generation = api.generation(owner)
    threads = [
        threading.Thread(
            target=authorize_as, args=(api.db_url, stranger, generation["id"], CALLS_EACH)
        )
        for _ in range(PARALLEL)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert denials(api, stranger) == {generation["id"]: PARALLEL * CALLS_EACH}
    hours = api.sql(
        "select count(*) as n from private.audit_denials where user_id = %s", (stranger.id,)
    )[0]["n"]
    assert hours <= 2, "one row per hour (two if the run crossed an hour)"


def test_a_grant_records_nothing(api):
    owner = api.user("granted")
    api.grant_credits(owner, 100)
    generation = api.generation(owner)
    answer = api.ok("POST", f"/api/v1/generations/{generation['id']}/authorize", owner)
    assert answer["access_granted"] is True
    assert denials(api, owner) == {}


def test_refused_requests_on_a_resource_are_recorded(api):
    owner, stranger = api.user("owner"), api.user("stranger")
    project = api.project(owner)
    for _ in range(3):
        api.call("GET", f"/api/v1/projects/{project['id']}", stranger)
    api.call("PATCH", f"/api/v1/projects/{project['id']}", stranger, json={"name": "mine"})
    for made_up in (uuid.uuid4(), uuid.uuid4()):
        assert api.call("GET", f"/api/v1/projects/{made_up}", stranger).status_code == 404
    assert denials(api, stranger, "project") == {project["id"]: 4, NIL: 2}
    reason = api.sql(
        "select last_reason from private.audit_denials where user_id = %s and resource_id = %s",
        (stranger.id, project["id"]),
    )[0]["last_reason"]
    assert reason == "404 PATCH /api/v1/projects/<uuid:project_id>"
    # the owner's own reads are not denials; nor is a request without a token (401)
    api.ok("GET", f"/api/v1/projects/{project['id']}", owner)
    assert api.call("GET", f"/api/v1/projects/{project['id']}").status_code == 401
    assert denials(api, owner) == {}


def test_a_forbidden_change_is_recorded(api):
    owner, viewer = api.user("owner"), api.user("viewer")
    team = api.team(owner)
    api.join(team, owner, viewer, "viewer")
    response = api.call(
        "POST", f"/api/v1/teams/{team['id']}/invite", viewer, json={"email": "x@example.com"}
    )
    assert response.status_code == 403
    assert denials(api, viewer, "team") == {team["id"]: 1}


def test_cached_denials_are_counted_once_each(api):
    owner, stranger = api.user("owner"), api.user("stranger")
    api.grant_credits(owner, 100)
    generation = api.generation(owner)
    app = create_app(app_settings(api.db_url, CACHE_ENABLED=True))
    try:
        deadline = time.monotonic() + 5
        while not app.extensions[EXTENSION].trusted:
            assert time.monotonic() < deadline, "the cache never became trusted"
            time.sleep(0.01)
        cached = Api(app, api.db_url)
        hits = []
        for _ in range(5):
            answer = cached.ok(
                "POST", f"/api/v1/generations/{generation['id']}/authorize", stranger
            )
            assert answer["access_granted"] is False
            hits.append(answer["cache_hit"])
        assert hits == [False, True, True, True, True]
    finally:
        close_app(app)  # writes what is left of the batch
    # the database recorded the first answer; the process counted the four it cached
    assert denials(api, stranger) == {generation["id"]: 5}
