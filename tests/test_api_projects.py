"""/api/v1/projects: create, list, read, change, delete, team links and usage."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from api_support import assert_error, assert_names_field, running_api


@pytest.fixture(scope="module")
def api(database_factory, migrated_template):
    with running_api(database_factory(migrated_template)) as running:
        yield running


@pytest.fixture(scope="module")
def owner(api):
    return api.user("owner")


@pytest.fixture(scope="module")
def stranger(api):
    return api.user("stranger")


# create ------------------------------------------------------------------------------------


def test_create_makes_a_private_project_owned_by_the_caller(api, owner):
    project = api.project(owner, name="  Holiday  ", description="pictures")
    assert project["owner_id"] == owner.id
    assert project["visibility"] == "private"
    assert project["description"] == "pictures"

    detail = api.ok("GET", f"/api/v1/projects/{project['id']}", owner)
    assert detail["name"] == project["name"]
    assert detail["teams"] == []
    assert detail["access"] == {
        "access_granted": True,
        "access_method": "project_owner",
        "effective_role": "owner",
        "permissions": ["read", "write", "share", "delete"],
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": 12}, "name"),
        ({"name": "ok", "description": "d" * 2001}, "description"),
        ({"name": "ok", "visibility": "secret"}, "visibility"),
        ({"name": "ok", "owner_id": str(uuid.uuid4())}, "owner_id"),
    ],
)
def test_create_refuses_bad_fields_naming_them_and_writes_nothing(api, owner, body, field):
    before = api.fingerprint()
    response = api.call("POST", "/api/v1/projects", owner, json=body)
    error = assert_error(response, 422, "validation_failed")
    assert_names_field(error, field)
    assert api.fingerprint() == before


def test_create_refuses_a_body_that_is_not_json(api, owner):
    response = api.call(
        "POST", "/api/v1/projects", owner, data="{name", content_type="application/json"
    )
    assert_error(response, 400)


def test_suspended_user_cannot_create(api):
    user = api.user("suspended")
    api.suspend(user)
    before = api.fingerprint()
    assert_error(api.call("POST", "/api/v1/projects", user, json={"name": "x"}), 403, "forbidden")
    assert api.fingerprint() == before


# list --------------------------------------------------------------------------------------


def test_list_pages_newest_first_with_an_opaque_cursor(database_factory, migrated_template):
    """On a database of its own: the list holds every public project too, and other tests
    of this module make some."""
    with running_api(database_factory(migrated_template)) as api:
        user = api.user("lister")
        made = [api.project(user, name=f"p{i}")["id"] for i in range(5)]
        seen, cursor, pages = [], None, 0
        while True:
            query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = api.ok("GET", "/api/v1/projects", user, query_string=query)
            assert len(page["items"]) <= 2
            seen += [p["id"] for p in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == list(reversed(made))
    assert pages == 3


def test_list_shows_only_what_the_caller_can_read(api, owner, stranger):
    private = api.project(owner)
    public = api.project(owner, visibility="public")
    listed = {
        p["id"]
        for p in api.ok("GET", "/api/v1/projects", stranger, query_string={"limit": 100})["items"]
    }
    assert public["id"] in listed
    assert private["id"] not in listed


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ({"limit": 0}, 422, "limit"),
        ({"limit": 101}, 422, "limit"),
        ({"limit": "many"}, 422, "limit"),
        ({"cursor": "not-a-cursor"}, 400, None),
        ({"cursor": "W1sidCIsIjIwMjAtMDEtMDEiXV0"}, 400, None),  # a timestamp without a zone
        ({"cursor": "WzFd"}, 400, None),  # a key of the wrong size
    ],
)
def test_list_refuses_bad_paging(api, owner, query, status, field):
    body = assert_error(api.call("GET", "/api/v1/projects", owner, query_string=query), status)
    if field:
        assert_names_field(body, field)
    else:
        assert body["error"] == "bad_cursor"


# read --------------------------------------------------------------------------------------


def test_unknown_and_unreadable_projects_look_the_same(api, owner, stranger):
    private = api.project(owner)
    unreadable = assert_error(api.call("GET", f"/api/v1/projects/{private['id']}", stranger), 404)
    unknown = assert_error(api.call("GET", f"/api/v1/projects/{uuid.uuid4()}", stranger), 404)
    assert (unreadable["error"], unreadable["message"]) == (unknown["error"], unknown["message"])
    assert private["id"] not in str(unreadable)


@pytest.mark.parametrize("path", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
def test_a_malformed_id_in_the_path_is_404(api, owner, path):
    assert_error(api.call("GET", f"/api/v1/projects/{path}", owner), 404, "not_found")
    assert_error(api.call("PATCH", f"/api/v1/projects/{path}", owner, json={"name": "x"}), 404)
    assert_error(api.call("DELETE", f"/api/v1/projects/{path}", owner), 404)


def test_a_public_project_is_readable_by_anyone_signed_in_but_not_changeable(api, owner, stranger):
    project = api.project(owner, visibility="public")
    detail = api.ok("GET", f"/api/v1/projects/{project['id']}", stranger)
    assert detail["access"]["access_method"] == "public"
    assert detail["access"]["permissions"] == ["read"]
    before = api.fingerprint()
    path = f"/api/v1/projects/{project['id']}"
    assert_error(api.call("PATCH", path, stranger, json={"name": "mine"}), 403, "forbidden")
    assert_error(api.call("DELETE", path, stranger), 403, "forbidden")
    assert api.fingerprint() == before


# change and delete -------------------------------------------------------------------------


def test_patch_changes_only_the_given_fields(api, owner):
    project = api.project(owner, description="keep me")
    changed = api.ok(
        "PATCH",
        f"/api/v1/projects/{project['id']}",
        owner,
        json={"name": "renamed", "visibility": "public"},
    )
    assert (changed["name"], changed["visibility"], changed["description"]) == (
        "renamed",
        "public",
        "keep me",
    )
    cleared = api.ok(
        "PATCH", f"/api/v1/projects/{project['id']}", owner, json={"description": None}
    )
    assert cleared["description"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"name": " "}, "name"),
        ({"visibility": "everyone"}, "visibility"),
        ({"owner_id": str(uuid.uuid4())}, "owner_id"),
    ],
)
def test_patch_refuses_bad_fields(api, owner, body, field):
    project = api.project(owner)
    before = api.fingerprint()
    error = assert_error(
        api.call("PATCH", f"/api/v1/projects/{project['id']}", owner, json=body),
        422,
        "validation_failed",
    )
    assert_names_field(error, field)
    assert api.fingerprint() == before


def test_delete_removes_the_project_and_its_generations(api, owner):
    project = api.project(owner)
    generation = api.generation(owner, project_id=project["id"])
    api.ok("POST", f"/api/v1/generations/{generation['id']}/cancel", owner)  # not in flight
    api.ok("DELETE", f"/api/v1/projects/{project['id']}", owner, 204)
    assert_error(api.call("GET", f"/api/v1/projects/{project['id']}", owner), 404)
    assert_error(api.call("GET", f"/api/v1/generations/{generation['id']}", owner), 404)
    assert_error(api.call("DELETE", f"/api/v1/projects/{project['id']}", owner), 404)


# team links --------------------------------------------------------------------------------


@pytest.fixture
def linked(api):
    """An owner, a team with a viewer and an editor, and a private project of the owner."""
    owner, viewer, editor = api.user("lo"), api.user("lv"), api.user("le")
    team = api.team(owner)
    api.join(team, owner, viewer, "viewer")
    api.join(team, owner, editor, "editor")
    return {
        "owner": owner,
        "viewer": viewer,
        "editor": editor,
        "team": team,
        "project": api.project(owner),
    }


def test_linking_shares_the_project_at_the_lower_of_team_role_and_level(api, linked):
    project, team = linked["project"], linked["team"]
    path = f"/api/v1/projects/{project['id']}/teams/{team['id']}"
    assert_error(api.call("GET", f"/api/v1/projects/{project['id']}", linked["editor"]), 404)

    link = api.ok("PUT", path, linked["owner"], json={"access_level": "viewer"})
    assert (link["project_id"], link["team_id"], link["access_level"]) == (
        project["id"],
        team["id"],
        "viewer",
    )
    detail = api.ok("GET", f"/api/v1/projects/{project['id']}", linked["editor"])
    assert detail["visibility"] == "team"
    assert detail["access"]["effective_role"] == "viewer"
    assert [t["team_id"] for t in detail["teams"]] == [team["id"]]

    api.ok("PUT", path, linked["owner"], json={"access_level": "admin"})
    detail = api.ok("GET", f"/api/v1/projects/{project['id']}", linked["editor"])
    assert detail["access"]["effective_role"] == "editor"
    assert detail["access"]["access_method"] == "project_team"


def test_link_level_defaults_to_viewer(api, linked):
    path = f"/api/v1/projects/{linked['project']['id']}/teams/{linked['team']['id']}"
    assert api.ok("PUT", path, linked["owner"], json={})["access_level"] == "viewer"


@pytest.mark.parametrize("level", ["owner", "boss", None, 3])
def test_link_refuses_a_bad_level(api, linked, level):
    path = f"/api/v1/projects/{linked['project']['id']}/teams/{linked['team']['id']}"
    before = api.fingerprint()
    error = assert_error(api.call("PUT", path, linked["owner"], json={"access_level": level}), 422)
    assert_names_field(error, "access_level")
    assert api.fingerprint() == before


def test_link_needs_the_project_owner_and_team_membership(api, linked, stranger):
    project, team = linked["project"], linked["team"]
    path = f"/api/v1/projects/{project['id']}/teams/{team['id']}"
    api.ok("PUT", path, linked["owner"], json={"access_level": "editor"})
    # the editor can read the project but does not own it
    assert_error(api.call("PUT", path, linked["editor"], json={"access_level": "admin"}), 403)
    # the owner cannot link to a team they are not in; the team looks unknown
    foreign_team = api.team(stranger)
    foreign = f"/api/v1/projects/{project['id']}/teams/{foreign_team['id']}"
    body = assert_error(api.call("PUT", foreign, linked["owner"], json={}), 404)
    assert foreign_team["name"] not in str(body)
    # a stranger cannot even see the project
    assert_error(api.call("PUT", path, stranger, json={}), 404)


def test_unlinking_ends_access_at_once(api, linked):
    project, team = linked["project"], linked["team"]
    path = f"/api/v1/projects/{project['id']}/teams/{team['id']}"
    api.ok("PUT", path, linked["owner"], json={"access_level": "editor"})
    assert_error(api.call("DELETE", path, linked["editor"]), 403)
    api.ok("DELETE", path, linked["owner"], 204)
    assert_error(api.call("GET", f"/api/v1/projects/{project['id']}", linked["editor"]), 404)
    assert_error(api.call("DELETE", path, linked["owner"]), 404)


# who may change a project's shape ---------------------------------------------------------


def test_a_team_holds_a_bounded_number_of_project_links(api, linked):
    """An editor cannot pile up links to empty projects of their own until every member's
    policies outlast a statement: a team holds max_project_links_per_team links."""
    owner, team = linked["owner"], linked["team"]
    first, second = linked["project"], api.project(owner)
    api.sql(
        "update private.settings set value = '1'"
        " where key = 'max_project_links_per_team' returning key"
    )
    try:
        api.link(first, team, owner)
        before = api.fingerprint()
        path = f"/api/v1/projects/{second['id']}/teams/{team['id']}"
        refused = api.call("PUT", path, owner, json={"access_level": "viewer"})
        message = assert_error(refused, 409, "conflict")["message"]
        assert "linked projects, the most it may hold: unlink some" in message
        assert api.fingerprint() == before
        # changing a linked project's level is not a new link
        api.link(first, team, owner, "editor")
        api.ok("DELETE", f"/api/v1/projects/{first['id']}/teams/{team['id']}", owner, 204)
        api.ok("PUT", path, owner, json={"access_level": "viewer"})
    finally:
        api.sql(
            "update private.settings set value = '1000'"
            " where key = 'max_project_links_per_team' returning key"
        )


@pytest.fixture
def admin_linked(api, linked):
    """The linked world, with a team admin and the project linked to the team at admin."""
    admin = api.user("la")
    api.join(linked["team"], linked["owner"], admin, "admin")
    path = f"/api/v1/projects/{linked['project']['id']}/teams/{linked['team']['id']}"
    api.ok("PUT", path, linked["owner"], json={"access_level": "admin"})
    return {**linked, "admin": admin, "link": path}


def test_a_link_admin_manages_content_but_not_the_projects_shape(api, admin_linked):
    project, admin = admin_linked["project"], admin_linked["admin"]
    path = f"/api/v1/projects/{project['id']}"
    assert api.ok("GET", path, admin)["access"]["effective_role"] == "admin"
    own_team = api.team(admin)
    before = api.fingerprint()
    for change in ({"visibility": "public"}, {"name": "taken over"}):
        assert_error(api.call("PATCH", path, admin, json=change), 403, "forbidden")
    assert_error(api.call("DELETE", path, admin), 403, "forbidden")
    assert_error(api.call("PUT", f"{path}/teams/{own_team['id']}", admin, json={}), 403)
    assert api.fingerprint() == before
    # content is hers to manage: she creates and deletes generations in the project
    api.grant_credits(admin, 100)
    generation = api.generation(admin, project_id=project["id"])
    api.sql("select public.record_generation_progress(%s, 'completed')", (generation["id"],))
    api.ok("DELETE", f"/api/v1/generations/{generation['id']}", admin, 204)
    # the owner keeps the shape
    api.ok("PATCH", path, admin_linked["owner"], json={"visibility": "public"})


def test_linking_into_a_team_needs_editor_there(api, linked):
    owner, project = linked["owner"], linked["project"]
    other_owner = api.user("oo")
    team = api.team(other_owner)
    api.join(team, other_owner, owner, "viewer")
    path = f"/api/v1/projects/{project['id']}/teams/{team['id']}"
    assert_error(api.call("PUT", path, owner, json={}), 403, "forbidden")
    api.ok(
        "PATCH",
        f"/api/v1/teams/{team['id']}/members/{owner.id}",
        other_owner,
        json={"role": "editor"},
    )
    api.ok("PUT", path, owner, json={})


def test_the_teams_admin_takes_out_a_project_put_into_her_team(api, admin_linked):
    project, admin, editor = admin_linked["project"], admin_linked["admin"], admin_linked["editor"]
    api.ok("PUT", admin_linked["link"], admin_linked["owner"], json={"access_level": "viewer"})
    assert_error(api.call("DELETE", admin_linked["link"], editor), 403)
    api.ok("DELETE", admin_linked["link"], admin, 204)
    assert_error(api.call("GET", f"/api/v1/projects/{project['id']}", editor), 404)


def test_a_project_made_private_hides_its_link_and_usage_from_the_team(api, admin_linked):
    owner, team, project = admin_linked["owner"], admin_linked["team"], admin_linked["project"]
    api.grant_credits(owner, 100)
    api.generation(owner, project_id=project["id"])
    api.refresh_analytics()
    stats = f"/api/v1/teams/{team['id']}/stats"
    viewer = admin_linked["viewer"]
    assert [d["generations"] for d in api.ok("GET", stats, viewer)["usage"]] == [1]

    api.ok("PATCH", f"/api/v1/projects/{project['id']}", owner, json={"visibility": "private"})
    assert api.ok("GET", stats, viewer)["usage"] == []
    links = "select team_id from public.project_teams where project_id = %s"
    assert api.sql(links, (project["id"],))  # the link is kept for when it is shared again
    detail = api.ok("GET", f"/api/v1/projects/{project['id']}", owner)
    assert [t["team_id"] for t in detail["teams"]] == [team["id"]]

    api.ok("PATCH", f"/api/v1/projects/{project['id']}", owner, json={"visibility": "team"})
    assert [d["generations"] for d in api.ok("GET", stats, viewer)["usage"]] == [1]


# usage -------------------------------------------------------------------------------------


def test_stats_show_daily_usage_after_a_refresh(api, owner):
    project = api.project(owner)
    api.grant_credits(owner, 100)
    api.generation(owner, project_id=project["id"])
    api.refresh_analytics()
    stats = api.ok(
        "GET", f"/api/v1/projects/{project['id']}/stats", owner, query_string={"days": 7}
    )
    assert stats["days"] == 7
    assert [(d["generations"], d["credits_spent"]) for d in stats["usage"]] == [(1, 50)]


@pytest.mark.parametrize("days", [0, 367, "week"])
def test_stats_refuse_a_bad_window(api, owner, days):
    project = api.project(owner)
    error = assert_error(
        api.call(
            "GET", f"/api/v1/projects/{project['id']}/stats", owner, query_string={"days": days}
        ),
        422,
    )
    assert_names_field(error, "days")


def test_stats_of_an_unreadable_project_are_404(api, owner, stranger):
    project = api.project(owner)
    assert_error(api.call("GET", f"/api/v1/projects/{project['id']}/stats", stranger), 404)


# writes racing a delete --------------------------------------------------------------------


def in_thread(api, method: str, path: str, user, **kwargs) -> tuple[threading.Thread, dict]:
    answer: dict = {}

    def call():
        answer["response"] = api.call(method, path, user, **kwargs)

    thread = threading.Thread(target=call)
    thread.start()
    return thread, answer


def wait_until_waiting_on_locks(api, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        waiting = api.sql(
            "select count(*) as n from pg_stat_activity"
            " where datname = current_database() and wait_event_type = 'Lock'"
        )[0]["n"]
        if waiting >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} statements ever waited on a lock")


@pytest.mark.parametrize("write", ["link", "share"])
def test_a_link_or_share_racing_the_projects_delete_is_a_404(api, owner, write):
    """The delete commits while the write waits: the write answers as for a project that
    is not there (404), not with the foreign key it would have broken (400)."""
    team = api.team(owner)
    project = api.project(owner)
    if write == "link":
        path, body = f"/api/v1/projects/{project['id']}/teams/{team['id']}", {}
        held = ("select 1 from public.projects where id = %s for update", project["id"])
    else:
        api.grant_credits(owner, 100)
        generation = api.generation(owner, project_id=project["id"])
        finished = "update public.generations set status = 'failed' where id = %s returning id"
        api.sql(finished, (generation["id"],))
        path, body = f"/api/v1/generations/{generation['id']}/share", {"team_id": team["id"]}
        held = ("select 1 from public.generations where id = %s for update", generation["id"])
    holder = psycopg.connect(api.db_url)
    try:  # the row held, so the delete and then the write queue behind it
        holder.execute(held[0], (held[1],))
        deleting, deleted = in_thread(api, "DELETE", f"/api/v1/projects/{project['id']}", owner)
        wait_until_waiting_on_locks(api, 1)
        writing, written = in_thread(api, "PUT", path, owner, json=body)
        wait_until_waiting_on_locks(api, 2)
    finally:
        holder.rollback()
        holder.close()
    deleting.join()
    writing.join()
    assert deleted["response"].status_code == 204
    assert_error(written["response"], 404)
