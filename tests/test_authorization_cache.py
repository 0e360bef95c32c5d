"""Cached authorization through the real app: L1 and L2 hits, every invalidating change
flipping the answer within a bound, the cached model catalog, /api/v1/health/cache, and the
two ways the cache must fail: Redis down (serve from L1 and the database) and the
invalidation channel cut (trust nothing until it is back).

Each change is made the way a client or an operator makes it (the API, or SQL as the
database owner for state the API cannot set); the answer is then polled until it flips,
for at most FLIP_BOUND_SECONDS. The delays from the change's response to the first flipped
answer are printed (``pytest -rP``), with how many stale answers came first: in one
process the listener thread (commit -> NOTIFY -> eviction) races the next request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import pytest
from api_support import MODEL, Api
from fixtures_app import TestUser, app_settings
from isolated_redis import claim_database
from psycopg import sql

from backend import close_app, create_app
from backend.cache import EXTENSION
from harness.servers import free_port

# how long a change may take to reach the cache before the test calls it lost: generous,
# since the machine may be loaded; how fast it really is, is measured by `make bench`
FLIP_BOUND_SECONDS = 10.0
POLL_SECONDS = 0.002
OWNER_PERMISSIONS = ["read", "write", "share", "delete"]
ADMIN_PERMISSIONS = ["read", "write", "delete"]  # admins do not share


# fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_db_url(redis_url):
    with claim_database(redis_url) as url:
        yield url


@pytest.fixture(scope="module")
def database(database_factory, migrated_template):
    return database_factory(migrated_template)


def finish(api, generation_id) -> None:
    """Complete a generation as the FAL webhook would, so that it may be deleted."""
    api.sql("select public.record_generation_progress(%s, 'completed')", (generation_id,))


def start_app(database: str, redis_url: str | None, **overrides):
    app = create_app(app_settings(database, CACHE_ENABLED=True, REDIS_URL=redis_url, **overrides))
    wait_until(lambda: app.extensions[EXTENSION].trusted, "the cache never became trusted")
    return app


@pytest.fixture(scope="module")
def api(database, redis_db_url):
    app = start_app(database, redis_db_url)
    try:
        yield Api(app, database)
    finally:
        close_app(app)


@pytest.fixture
def second_instance(database, redis_db_url):
    """Another app process's worth of state: its own L1 and listener, the same L2."""
    app = start_app(database, redis_db_url)
    try:
        yield Api(app, database)
    finally:
        close_app(app)


# helpers ----------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], failure: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(failure)
        time.sleep(0.01)


def authorize(api: Api, user: TestUser, generation_id: str):
    return api.call("POST", f"/api/v1/generations/{generation_id}/authorize", user)


def decision(api: Api, user: TestUser, generation_id: str) -> dict:
    response = authorize(api, user, generation_id)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def cached_decision(api: Api, user: TestUser, generation_id: str) -> dict:
    """The caller's decision once it is served from the cache.

    An answer whose load raced a notice about one of its tags is not stored, so right after
    the setup's own changes it may take a few asks to get cached.
    """
    first = decision(api, user, generation_id)
    deadline = time.monotonic() + FLIP_BOUND_SECONDS
    while time.monotonic() < deadline:
        answer = decision(api, user, generation_id)
        if answer["cache_hit"]:
            assert same_decision(answer, first), (first, answer)
            return answer
        time.sleep(0.02)
    pytest.fail(f"the answer {first} never came from the cache")


def same_decision(a: dict, b: dict) -> bool:
    def core(d: dict) -> dict:
        return {k: v for k, v in d.items() if k not in ("response_time_ms", "cache_hit")}

    return core(a) == core(b)


def flips(api: Api, user: TestUser, generation_id: str, accept, what: str) -> tuple[object, float]:
    """Poll authorize until ``accept(response)``; the response and the seconds it took."""
    started = time.perf_counter()
    stale = 0
    while True:
        response = authorize(api, user, generation_id)
        elapsed = time.perf_counter() - started
        if accept(response):
            print(f"{what}: flipped after {elapsed * 1000:.1f} ms ({stale} stale answers first)")
            return response, elapsed
        if elapsed > FLIP_BOUND_SECONDS:
            pytest.fail(f"{what}: still {response.get_json()} after {FLIP_BOUND_SECONDS}s")
        stale += 1
        time.sleep(POLL_SECONDS)


def denied(response) -> bool:
    return response.status_code == 200 and not response.get_json()["access_granted"]


def granted(response) -> bool:
    return response.status_code == 200 and response.get_json()["access_granted"]


def cache_stats(api: Api) -> dict:
    return api.ok("GET", "/api/v1/health/cache")


@dataclass
class TeamAccess:
    """A member who reaches an owner's generation through a team the project is linked to."""

    owner: TestUser
    member: TestUser
    team: dict
    project: dict
    generation: dict

    @property
    def generation_id(self) -> str:
        return self.generation["id"]


def team_access(api: Api, role: str = "editor", level: str = "editor") -> TeamAccess:
    owner, member = api.user("owner"), api.user("member")
    api.grant_credits(owner, 1000)
    team = api.team(owner)
    api.join(team, owner, member, role)
    project = api.project(owner, visibility="team")
    api.ok(
        "PUT",
        f"/api/v1/projects/{project['id']}/teams/{team['id']}",
        owner,
        json={"access_level": level},
    )
    generation = api.generation(owner, project_id=project["id"])
    return TeamAccess(owner, member, team, project, generation)


def private_generation(api: Api) -> tuple[TestUser, dict, dict]:
    """An owner, their private project, and a generation in it."""
    owner = api.user("owner")
    api.grant_credits(owner, 1000)
    project = api.project(owner, visibility="private")
    return owner, project, api.generation(owner, project_id=project["id"])


# L1 and L2 --------------------------------------------------------------------------------


def test_second_authorize_is_an_l1_hit(api):
    owner, _, generation = private_generation(api)
    before = cache_stats(api)

    first = decision(api, owner, generation["id"])
    second = decision(api, owner, generation["id"])

    assert first["cache_hit"] is False
    assert second["cache_hit"] is True
    assert second["access_method"] == "direct_ownership"
    assert second["permissions"] == OWNER_PERMISSIONS
    after = cache_stats(api)
    assert after["l1"]["hits"] > before["l1"]["hits"]
    assert after["l2"]["hits"] == before["l2"]["hits"], "the second answer came from L2, not L1"


def test_another_instance_reads_the_answer_from_l2(api, second_instance):
    owner, _, generation = private_generation(api)
    assert decision(api, owner, generation["id"])["cache_hit"] is False
    before = cache_stats(second_instance)

    answer = decision(second_instance, owner, generation["id"])

    assert answer["cache_hit"] is True
    assert answer["access_method"] == "direct_ownership"
    after = cache_stats(second_instance)
    assert after["l2"]["hits"] > before["l2"]["hits"]
    # and now it is in the second instance's own L1
    decision(second_instance, owner, generation["id"])
    assert cache_stats(second_instance)["l2"]["hits"] == after["l2"]["hits"]


@pytest.fixture
def original_and_copy(admin_url, database_factory, migrated_template, redis_db_url):
    """Two deployments sharing one Redis, the second on a copy of the first's database (a
    staging database restored from production): the same users, sessions and ids."""
    original = database_factory(migrated_template)
    app = start_app(original, redis_db_url)
    try:
        owner, _, generation = private_generation(Api(app, original))
    finally:
        close_app(app)
    name = psycopg.conninfo.conninfo_to_dict(original)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as conn:  # a template takes no connection
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,)
        )
    copy = database_factory(template=name)
    apps = [start_app(original, redis_db_url), start_app(copy, redis_db_url)]
    try:
        yield Api(apps[0], original), Api(apps[1], copy), owner, generation
    finally:
        for app in apps:
            close_app(app)


def test_a_copy_of_the_database_never_reads_the_originals_answers(original_and_copy):
    production, staging, owner, generation = original_and_copy
    assert cache_stats(production)["l2"]["namespace"] != cache_stats(staging)["l2"]["namespace"]
    # staging deletes the generation; only staging's listener hears of it
    finish(staging, generation["id"])
    staging.sql("delete from public.generations where id = %s", (generation["id"],))

    # production then caches its own answer, in L2 too, after staging's notice
    assert decision(production, owner, generation["id"])["access_granted"]
    assert cached_decision(production, owner, generation["id"])["access_granted"]

    # staging asks its own database: under one namespace it would read production's grant
    answer = decision(staging, owner, generation["id"])
    assert answer["access_granted"] is False
    assert answer["cache_hit"] is False


# revocations ------------------------------------------------------------------------------


def test_removing_a_member_revokes(api):
    access = team_access(api)
    assert cached_decision(api, access.member, access.generation_id)["access_granted"]

    api.ok(
        "DELETE", f"/api/v1/teams/{access.team['id']}/members/{access.member.id}", access.owner, 204
    )

    flips(api, access.member, access.generation_id, denied, "member removed")


def test_a_role_downgrade_lowers_role_and_permissions(api):
    access = team_access(api, role="admin", level="admin")
    before = cached_decision(api, access.member, access.generation_id)
    assert (before["effective_role"], before["permissions"]) == ("admin", ADMIN_PERMISSIONS)

    api.ok(
        "PATCH",
        f"/api/v1/teams/{access.team['id']}/members/{access.member.id}",
        access.owner,
        json={"role": "viewer"},
    )

    response, _ = flips(
        api,
        access.member,
        access.generation_id,
        lambda r: granted(r) and r.get_json()["effective_role"] == "viewer",
        "role admin -> viewer",
    )
    after = response.get_json()
    assert (after["access_method"], after["permissions"]) == ("project_team", ["read"])


def test_unlinking_the_project_revokes(api):
    access = team_access(api)
    assert cached_decision(api, access.member, access.generation_id)["access_granted"]

    api.ok(
        "DELETE",
        f"/api/v1/projects/{access.project['id']}/teams/{access.team['id']}",
        access.owner,
        204,
    )

    flips(api, access.member, access.generation_id, denied, "project unlinked")


def test_making_the_project_private_revokes(api):
    access = team_access(api)
    assert cached_decision(api, access.member, access.generation_id)["access_granted"]

    api.ok(
        "PATCH",
        f"/api/v1/projects/{access.project['id']}",
        access.owner,
        json={"visibility": "private"},
    )

    flips(api, access.member, access.generation_id, denied, "project made private")


def test_unsharing_the_generation_revokes(api):
    owner, _, generation = private_generation(api)
    member = api.user("member")
    team = api.team(owner)
    api.join(team, owner, member, "editor")
    api.ok(
        "PUT",
        f"/api/v1/generations/{generation['id']}/share",
        owner,
        json={"team_id": team["id"], "role": "viewer"},
    )
    assert cached_decision(api, member, generation["id"])["access_method"] == "generation_share"

    api.ok("DELETE", f"/api/v1/generations/{generation['id']}/share/{team['id']}", owner, 204)

    flips(api, member, generation["id"], denied, "generation unshared")


def test_suspending_the_user_revokes(api):
    access = team_access(api)
    assert cached_decision(api, access.member, access.generation_id)["access_granted"]

    api.suspend(access.member)  # operators do this in SQL; no API route sets it

    flips(api, access.member, access.generation_id, lambda r: not granted(r), "user suspended")


def test_deleting_the_generation_revokes(api):
    access = team_access(api)
    assert cached_decision(api, access.member, access.generation_id)["access_granted"]

    finish(api, access.generation_id)  # a charged generation in flight is never deleted
    api.ok("DELETE", f"/api/v1/generations/{access.generation_id}", access.owner, 204)

    flips(api, access.member, access.generation_id, denied, "generation deleted")


def test_logout_makes_the_cached_answer_a_401(api):
    owner, _, generation = private_generation(api)
    assert cached_decision(api, owner, generation["id"])["access_granted"]

    api.ok("POST", "/api/v1/auth/logout", owner, 204)

    response, _ = flips(api, owner, generation["id"], lambda r: r.status_code == 401, "logout")
    assert response.get_json()["error"] == "invalid_token"


# denials that become grants ------------------------------------------------------------------


def test_a_session_ended_early_by_moving_its_not_after_is_refused(api):
    """Supabase Auth or an operator can end a session by moving its not_after earlier
    instead of deleting it: the cached session answer is dropped as for a deletion."""
    owner, _, generation = private_generation(api)
    assert cached_decision(api, owner, generation["id"])["cache_hit"]  # the session's too
    api.sql(
        "update auth.sessions set not_after = now() - interval '1 second' where user_id = %s",
        (owner.id,),
    )
    response, _ = flips(api, owner, generation["id"], lambda r: r.status_code == 401, "not_after")
    assert response.get_json()["error"] == "invalid_token"


def test_a_denial_becomes_a_grant_when_the_project_is_linked_to_the_callers_team(api):
    owner, project, generation = private_generation(api)
    member = api.user("member")
    team = api.team(owner)
    api.join(team, owner, member, "editor")
    assert not cached_decision(api, member, generation["id"])["access_granted"]

    api.ok(
        "PUT",
        f"/api/v1/projects/{project['id']}/teams/{team['id']}",
        owner,
        json={"access_level": "viewer"},
    )

    response, _ = flips(api, member, generation["id"], granted, "project linked")
    assert response.get_json()["access_method"] == "project_team"


def test_a_denial_becomes_a_grant_when_the_project_is_made_public(api):
    owner, project, generation = private_generation(api)
    stranger = api.user("stranger")
    assert not cached_decision(api, stranger, generation["id"])["access_granted"]

    api.ok("PATCH", f"/api/v1/projects/{project['id']}", owner, json={"visibility": "public"})

    response, _ = flips(api, stranger, generation["id"], granted, "project made public")
    assert (response.get_json()["access_method"], response.get_json()["effective_role"]) == (
        "public",
        "viewer",
    )


def test_a_cached_denial_survives_changes_to_other_projects(api):
    """A denial depends on its own generation's project, not on every project."""
    _, _, generation = private_generation(api)
    stranger = api.user("stranger")
    assert not cached_decision(api, stranger, generation["id"])["access_granted"]
    other_owner, other_project, _ = private_generation(api)
    received = cache_stats(api)["invalidations_received"]

    api.ok(
        "PATCH",
        f"/api/v1/projects/{other_project['id']}",
        other_owner,
        json={"visibility": "public"},
    )

    wait_until(lambda: cache_stats(api)["invalidations_received"] > received, "no notice arrived")
    answer = decision(api, stranger, generation["id"])
    assert (answer["access_granted"], answer["cache_hit"]) == (False, True)


def test_deleting_a_project_with_10000_generations_does_not_stall_requests(api):
    """The delete sends a notice per generation. The listener is held after its first
    batch until requests were answered: nothing it does keeps request threads waiting."""
    owner, project, generation = private_generation(api)
    api.sql(
        "insert into public.generations (owner_id, project_id, model_id, prompt, cost, status,"
        " idempotency_key) select %s, %s, %s, 'storm', 1, 'completed', 'storm-' || i"
        " from generate_series(1, 10000) as i",
        (owner.id, project["id"], MODEL),
    )
    bystander, _, hot = private_generation(api)
    assert cached_decision(api, bystander, hot["id"])["cache_hit"]
    assert cached_decision(api, owner, generation["id"])["access_granted"]
    cache = api.app.extensions[EXTENSION]
    received = cache.stats()["invalidations_received"]
    paused, resume = threading.Event(), threading.Event()
    real_invalidate_many = cache.invalidate_many

    def held_after_first_batch(tags):
        real_invalidate_many(tags)
        if not paused.is_set():
            paused.set()
            resume.wait(10)

    cache.invalidate_many = held_after_first_batch
    finish(api, generation["id"])  # a charged generation in flight is never deleted
    try:
        api.ok("DELETE", f"/api/v1/projects/{project['id']}", owner, 204)
        assert paused.wait(10), "the notices never reached the cache"
        answers = [decision(api, bystander, hot["id"]) for _ in range(20)]
        resume.set()
        assert all(a["access_granted"] and a["cache_hit"] for a in answers)
        wait_until(
            lambda: cache.stats()["invalidations_received"] >= received + 10_001,
            "the storm was not worked through",
            timeout=30,
        )
    finally:
        resume.set()
        cache.invalidate_many = real_invalidate_many
    assert not decision(api, owner, generation["id"])["access_granted"]


# the model catalog --------------------------------------------------------------------------


def test_the_model_catalog_is_read_again_after_a_change(api):
    def costs() -> dict:
        return {m["id"]: m["credit_cost"] for m in api.ok("GET", "/api/v1/models")["items"]}

    model_id, cost = next(iter(costs().items()))
    hits = cache_stats(api)["l1"]["hits"]
    assert costs()[model_id] == cost
    assert cache_stats(api)["l1"]["hits"] > hits, "the second catalog read missed the cache"

    api.sql("update public.models set credit_cost = credit_cost + 1 where id = %s", (model_id,))
    try:
        started = time.perf_counter()
        wait_until(
            lambda: costs()[model_id] == cost + 1,
            "the catalog kept the old cost",
            timeout=FLIP_BOUND_SECONDS,
        )
        print(f"model catalog: re-read after {(time.perf_counter() - started) * 1000:.1f} ms")
    finally:
        api.sql("update public.models set credit_cost = %s where id = %s", (cost, model_id))


# /api/v1/health/cache -----------------------------------------------------------------------


def test_health_cache_reports_every_layer(api):
    owner, _, generation = private_generation(api)
    before = cache_stats(api)
    decision(api, owner, generation["id"])
    decision(api, owner, generation["id"])
    api.ok("PATCH", f"/api/v1/generations/{generation['id']}", owner, json={"title": "x"})
    finish(api, generation["id"])
    api.ok("DELETE", f"/api/v1/generations/{generation['id']}", owner, 204)
    wait_until(
        lambda: cache_stats(api)["invalidations_received"] > before["invalidations_received"],
        "no invalidation was counted",
    )

    stats = cache_stats(api)
    assert stats["trusted"] is True
    for layer in ("l1", "l2"):
        assert {"hits", "misses", "hit_rate", "size", "evictions"} <= set(stats[layer]), layer
        total = stats[layer]["hits"] + stats[layer]["misses"]
        assert stats[layer]["hit_rate"] == pytest.approx(stats[layer]["hits"] / total, abs=1e-4)
    assert stats["l1"]["hits"] > before["l1"]["hits"]
    assert stats["l1"]["misses"] > before["l1"]["misses"]
    assert stats["l2"]["misses"] > before["l2"]["misses"]
    assert stats["l1"]["size"] >= 1
    assert stats["l2"]["size"] >= 1
    assert stats["l1"]["evictions"] >= 0 and stats["l2"]["evictions"] >= 0
    assert stats["l2"]["enabled"] and stats["l2"]["available"]
    # the test Redis evicts nothing, so its tag versions can be relied on
    assert (stats["l2"]["maxmemory_policy"], stats["l2"]["trusted"]) == ("noeviction", True)
    assert stats["l1"]["tags_indexed"] >= 1
    assert 0 <= stats["seconds_since_listener_round_trip"] <= stats["listener_bound_seconds"]


# failure modes ------------------------------------------------------------------------------


def test_redis_down_serves_from_l1_and_the_database(database):
    app = start_app(database, f"redis://127.0.0.1:{free_port()}/0", RATE_LIMIT_ENABLED=True)
    try:
        down = Api(app, database)
        owner, _, generation = private_generation(down)

        answers = [decision(down, owner, generation["id"]) for _ in range(3)]

        assert [a["cache_hit"] for a in answers] == [False, True, True]
        assert all(a["access_granted"] for a in answers)
        stats = cache_stats(down)
        assert stats["l2"]["available"] is False
        assert stats["l2"]["errors"] >= 1
        assert stats["l2"]["hits"] == 0
    finally:
        close_app(app)


@pytest.fixture
def listener_database(database_factory, migrated_template):
    """A database of the test's own: it is closed to new connections for a while."""
    return database_factory(migrated_template)


def database_name(url: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(url)["dbname"]


def allow_connections(admin_url: str, database: str, allowed: bool) -> None:
    statement = sql.SQL("alter database {} allow_connections {}")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            statement.format(sql.Identifier(database_name(database)), sql.Literal(allowed))
        )


def cut_listener(admin_url: str, database: str) -> int:
    """Terminate the app's LISTEN connection; how many were cut."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return conn.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where application_name = 'velro-listener' and datname = %s",
            (database_name(database),),
        ).fetchone()[0]


def test_a_cut_listener_distrusts_the_cache_until_it_reconnects(
    admin_url, listener_database, redis_db_url
):
    app = start_app(listener_database, redis_db_url)
    try:
        api = Api(app, listener_database)
        owner, _, generation = private_generation(api)
        cached_decision(api, owner, generation["id"])

        # keep the listener from coming straight back, so the window can be watched
        allow_connections(admin_url, listener_database, False)
        try:
            assert cut_listener(admin_url, listener_database) == 1
            wait_until(lambda: not cache_stats(api)["trusted"], "the cache kept trusting")
            answers = [decision(api, owner, generation["id"]) for _ in range(3)]
            assert [a["cache_hit"] for a in answers] == [False, False, False]
            assert all(a["access_granted"] for a in answers)
            assert cache_stats(api)["bypassed"] >= 3
        finally:
            allow_connections(admin_url, listener_database, True)

        wait_until(lambda: cache_stats(api)["trusted"], "the listener did not come back", 10)
        assert cached_decision(api, owner, generation["id"])["access_granted"]
    finally:
        close_app(app)


# sign-outs where auth.sessions announces nothing ---------------------------------------------


@pytest.fixture(scope="module")
def quiet_sessions_database(database_factory, migrated_template):
    """A database whose auth.sessions has no invalidation triggers, as a hosted project that
    refuses triggers on Supabase Auth's tables."""
    url = database_factory(migrated_template)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop trigger sessions_invalidate on auth.sessions")
        conn.execute("drop trigger sessions_not_after_invalidate on auth.sessions")
    return url


@pytest.fixture
def two_instances_without_session_trigger(quiet_sessions_database, redis_db_url):
    # a session answer would live ten minutes: only the app's own announcement can end it
    first = start_app(quiet_sessions_database, redis_db_url, CACHE_SESSION_TTL=600)
    second = start_app(quiet_sessions_database, redis_db_url, CACHE_SESSION_TTL=600)
    try:
        yield Api(first, quiet_sessions_database), Api(second, quiet_sessions_database)
    finally:
        close_app(first)
        close_app(second)


def test_logout_through_one_instance_is_refused_by_another_without_the_trigger(
    two_instances_without_session_trigger,
):
    a, b = two_instances_without_session_trigger
    owner, _, generation = private_generation(a)
    assert cached_decision(b, owner, generation["id"])["access_granted"]
    assert cached_decision(b, owner, generation["id"])["cache_hit"]  # session answer cached too

    a.ok("POST", "/api/v1/auth/logout", owner, 204)

    response, _ = flips(b, owner, generation["id"], lambda r: r.status_code == 401, "logout on A")
    assert response.get_json()["error"] == "invalid_token"


def test_refresh_token_reuse_through_one_instance_is_refused_by_another_without_the_trigger(
    two_instances_without_session_trigger,
):
    a, b = two_instances_without_session_trigger
    owner, _, generation = private_generation(a)
    assert cached_decision(b, owner, generation["id"])["access_granted"]
    refresh = {"refresh_token": owner.refresh_token}
    a.ok("POST", "/api/v1/auth/refresh", json=refresh)

    replay = a.call("POST", "/api/v1/auth/refresh", json=refresh)  # a leaked token, replayed
    assert replay.status_code == 401, replay.get_json()

    flips(b, owner, generation["id"], lambda r: r.status_code == 401, "session revoked on A")


def test_a_session_ended_elsewhere_is_cached_seconds_only_without_the_trigger(
    quiet_sessions_database, redis_db_url
):
    ttl = 0.5
    app = start_app(quiet_sessions_database, redis_db_url, CACHE_SESSION_TTL=ttl)
    try:
        api = Api(app, quiet_sessions_database)
        owner, _, generation = private_generation(api)
        assert cached_decision(api, owner, generation["id"])["cache_hit"]

        # an operator (or Supabase Auth on its own) ends the session: nobody announces it
        api.sql("delete from auth.sessions where user_id = %s", (owner.id,))

        # well under the default TTL (5 s), so that this ttl, not another, is what ends it
        wait_until(
            lambda: authorize(api, owner, generation["id"]).status_code == 401,
            "the ended session stayed cached beyond CACHE_SESSION_TTL",
            timeout=ttl + 3,
        )
    finally:
        close_app(app)
