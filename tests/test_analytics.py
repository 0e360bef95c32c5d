"""The analytics views (L3): refreshed under an advisory lock by the worker's periodic job,
served to members.

tests/test_api_teams.py and tests/test_api_projects.py cover the stats routes' shape, their
``days`` window and a stranger's 404; this file covers when the numbers appear and who
keeps seeing them.
"""

from __future__ import annotations

import threading

import psycopg
import pytest
from api_support import MODEL_COST, assert_error, running_api
from fixtures_app import app_settings

from backend import close_app, create_app
from backend.jobs import tasks
from backend.jobs.analytics import REFRESH_LOCK_KEY, refresh_once


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


def test_the_worker_job_refreshes(api, linked, monkeypatch):
    monkeypatch.setenv("APP_ENV", "test")  # the job validates its settings as the app does
    monkeypatch.setenv("DATABASE_URL", api.db_url)
    generate(api, linked)
    tasks.refresh_analytics(timestamp=0)
    assert usage(api, linked) == ONE


def test_the_worker_job_does_nothing_when_turned_off(api, linked, monkeypatch):
    monkeypatch.setenv("APP_ENV", "test")  # the job validates its settings as the app does
    monkeypatch.setenv("DATABASE_URL", api.db_url)
    monkeypatch.setenv("ANALYTICS_REFRESH_SECONDS", "0")
    generate(api, linked)
    tasks.refresh_analytics(timestamp=0)
    assert usage(api, linked) == NOTHING


def test_the_refresh_is_periodic_on_the_worker_one_at_a_time():
    periodic = tasks.app.periodic_registry.periodic_tasks[("velro.refresh_analytics", "")]
    assert periodic.task.queueing_lock == "velro.refresh_analytics"


def test_web_workers_start_no_refresher_thread(api):
    before = {thread.name for thread in threading.enumerate()}
    app = create_app(app_settings(api.db_url, ANALYTICS_REFRESH_SECONDS=0.1))
    try:
        started = {thread.name for thread in threading.enumerate()} - before
        assert not any("analytics" in name for name in started), started
    finally:
        close_app(app)


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
