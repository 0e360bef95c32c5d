"""The analytics views (L3): refreshed under an advisory lock, by a thread, served to members.

tests/test_api_teams.py and tests/test_api_projects.py cover the stats routes' shape, their
``days`` window and a stranger's 404; this file covers when the numbers appear and who
keeps seeing them.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from api_support import MODEL_COST, assert_error, running_api
from fixtures_app import app_settings

from backend import REFRESHER, close_app, create_app
from backend.analytics import REFRESH_LOCK_KEY, AnalyticsRefresher, refresh_once


@pytest.fixture(scope="module")
def api(database_factory, migrated_template):
    with running_api(database_factory(migrated_template)) as running:
        yield running


@pytest.fixture
def linked(api):
    """A team (owner and a viewer) whose project the owner has linked to it."""
    owner, member = api.user("owner"), api.user("member")
    api.grant_credits(owner, 1000)
    team = api.team(owner)
    api.join(team, owner, member, "viewer")
    project = api.project(owner)
    api.ok("PUT", f"/api/v1/projects/{project['id']}/teams/{team['id']}", owner, json={})
    return {"owner": owner, "member": member, "team": team, "project": project}


def usage(api, linked, who="member") -> dict:
    """What the member sees on the team's and the project's stats: [(generations, credits)]."""
    user = linked[who]
    paths = {
        "team": f"/api/v1/teams/{linked['team']['id']}/stats",
        "project": f"/api/v1/projects/{linked['project']['id']}/stats",
    }
    return {
        name: [(d["generations"], d["credits_spent"]) for d in api.ok("GET", path, user)["usage"]]
        for name, path in paths.items()
    }


def generate(api, linked) -> None:
    api.generation(linked["owner"], project_id=linked["project"]["id"])


def refresh(api) -> bool:
    with psycopg.connect(api.db_url, autocommit=True) as conn:
        return refresh_once(conn)


NOTHING = {"team": [], "project": []}
ONE = {"team": [(1, MODEL_COST)], "project": [(1, MODEL_COST)]}


def test_a_generation_shows_only_after_a_refresh(api, linked):
    generate(api, linked)
    assert usage(api, linked) == NOTHING
    assert refresh(api) is True
    assert usage(api, linked) == ONE


def test_a_concurrent_holder_of_the_lock_makes_the_refresh_skip(api, linked):
    generate(api, linked)
    with psycopg.connect(api.db_url, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", (REFRESH_LOCK_KEY,))
        assert refresh(api) is False
        assert usage(api, linked) == NOTHING
        holder.execute("select pg_advisory_unlock(%s)", (REFRESH_LOCK_KEY,))
    assert refresh(api) is True
    assert usage(api, linked) == ONE


def test_the_refresher_thread_refreshes_on_its_own(api, linked):
    app = create_app(app_settings(api.db_url, ANALYTICS_REFRESH_SECONDS=0.1))
    refresher = app.extensions[REFRESHER]
    try:
        generate(api, linked)
        deadline = time.monotonic() + 10
        while usage(api, linked) != ONE:
            assert time.monotonic() < deadline, "the refresher never refreshed"
            time.sleep(0.05)
        assert refresher.refreshes >= 1
    finally:
        close_app(app)
    assert not refresher.running


def wait_until(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_one_instance_leads_and_another_takes_over_when_it_stops(api):
    first = AnalyticsRefresher(api.db_url, 0.05)
    second = AnalyticsRefresher(api.db_url, 0.05)
    first.start()
    wait_until(lambda: first.refreshes >= 1)
    second.start()
    try:
        time.sleep(0.5)
        assert first.leading and not second.leading
        assert second.refreshes == 0, "only the leader refreshes"
        first.stop()  # its connection closes: Postgres releases the leadership
        wait_until(lambda: second.refreshes >= 1)
        assert second.leading
    finally:
        first.stop()
        second.stop()


def test_no_refresher_thread_when_the_interval_is_zero(api):
    app = create_app(app_settings(api.db_url, ANALYTICS_REFRESH_SECONDS=0))
    try:
        assert REFRESHER not in app.extensions
    finally:
        close_app(app)


def test_a_failing_round_does_not_end_the_refresher(caplog):
    refresher = AnalyticsRefresher("postgresql://postgres@127.0.0.1:1/none", 0.02)
    refresher.start()
    try:
        deadline = time.monotonic() + 10
        while caplog.text.count("analytics refresh failed") < 3:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.02)
        assert refresher.running
    finally:
        refresher.stop()
    assert not refresher.running


def test_stats_are_for_members_and_stop_when_membership_ends(api, linked):
    generate(api, linked)
    refresh(api)
    assert usage(api, linked) == ONE
    team, project, member = linked["team"], linked["project"], linked["member"]
    assert_error(api.call("GET", f"/api/v1/teams/{team['id']}/stats"), 401)
    api.ok("DELETE", f"/api/v1/teams/{team['id']}/members/{member.id}", linked["owner"], 204)
    assert_error(api.call("GET", f"/api/v1/teams/{team['id']}/stats", member), 404, "not_found")
    assert_error(api.call("GET", f"/api/v1/projects/{project['id']}/stats", member), 404)
    assert usage(api, linked, "owner") == ONE
