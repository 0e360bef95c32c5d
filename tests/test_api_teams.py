"""/api/v1/teams and /api/v1/invitations: teams, members, roles, invitations, usage."""

from __future__ import annotations

import uuid

import pytest
from api_support import assert_error, assert_names_field, running_api
from fixtures_app import unique_email


@pytest.fixture(scope="module")
def api(database_factory, migrated_template):
    with running_api(database_factory(migrated_template)) as running:
        yield running


@pytest.fixture(scope="module")
def stranger(api):
    return api.user("stranger")


@pytest.fixture
def crew(api):
    """A team with an owner, an admin, an editor and a viewer."""
    people = {role: api.user(role) for role in ("owner", "admin", "editor", "viewer")}
    team = api.team(people["owner"], name="Night Crew")
    for role in ("admin", "editor", "viewer"):
        api.join(team, people["owner"], people[role], role)
    return {"team": team, **people}


def team_path(crew, suffix=""):
    return f"/api/v1/teams/{crew['team']['id']}{suffix}"


# create, list, read --------------------------------------------------------------------------


def test_create_makes_the_caller_owner(api):
    user = api.user()
    team = api.team(user, name="  Blue  ")
    assert (team["name"], team["owner_id"], team["role"]) == ("Blue", user.id, "owner")
    detail = api.ok("GET", f"/api/v1/teams/{team['id']}", user)
    assert (detail["member_count"], detail["role"]) == (1, "owner")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "  "}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"name": "ok", "owner_id": str(uuid.uuid4())}, "owner_id"),
    ],
)
def test_create_refuses_bad_fields(api, stranger, body, field):
    before = api.fingerprint()
    response = api.call("POST", "/api/v1/teams", stranger, json=body)
    assert_names_field(assert_error(response, 422), field)
    assert api.fingerprint() == before


def test_list_shows_my_teams_with_my_role_in_pages(api, crew, stranger):
    viewer = crew["viewer"]
    own = api.team(viewer)
    first = api.ok("GET", "/api/v1/teams", viewer, query_string={"limit": 1})
    second = api.ok("GET", "/api/v1/teams", viewer, query_string={"cursor": first["next_cursor"]})
    listed = [(t["id"], t["role"]) for t in first["items"] + second["items"]]
    assert listed == [(own["id"], "owner"), (crew["team"]["id"], "viewer")]
    assert second["next_cursor"] is None
    assert crew["team"]["id"] not in str(api.ok("GET", "/api/v1/teams", stranger))


def test_read_members_and_permissions_are_for_members_only(api, crew, stranger):
    detail = api.ok("GET", team_path(crew), crew["viewer"])
    assert (detail["name"], detail["member_count"], detail["role"]) == ("Night Crew", 4, "viewer")
    members = api.ok("GET", team_path(crew, "/members"), crew["viewer"])["items"]
    assert [(m["user_id"], m["role"]) for m in members] == [
        (crew[role].id, role) for role in ("owner", "admin", "editor", "viewer")
    ]
    assert members[0]["email"] == crew["owner"].email
    for suffix in ("", "/members", "/permissions", "/stats"):
        body = assert_error(api.call("GET", team_path(crew, suffix), stranger), 404, "not_found")
        assert "Night Crew" not in str(body)
    assert_error(api.call("GET", f"/api/v1/teams/{uuid.uuid4()}", stranger), 404)
    assert_error(api.call("GET", "/api/v1/teams/zzz/members", stranger), 404)


@pytest.mark.parametrize(
    ("role", "permissions"),
    [
        ("viewer", ["read"]),
        ("editor", ["read", "write"]),
        ("admin", ["read", "write", "share", "delete", "invite", "manage_members"]),
        (
            "owner",
            ["read", "write", "share", "delete", "invite", "manage_members", "transfer_ownership"],
        ),
    ],
)
def test_permissions_describe_the_callers_role(api, crew, role, permissions):
    answer = api.ok("GET", team_path(crew, "/permissions"), crew[role])
    assert answer == {"team_id": crew["team"]["id"], "role": role, "permissions": permissions}


def test_stats_after_a_refresh(api, crew):
    owner = crew["owner"]
    project = api.project(owner)
    api.ok("PUT", f"/api/v1/projects/{project['id']}/teams/{crew['team']['id']}", owner, json={})
    api.generation(owner, project_id=project["id"])
    api.refresh_analytics()
    stats = api.ok("GET", team_path(crew, "/stats"), crew["viewer"])
    assert stats["days"] == 30
    assert [(d["generations"], d["credits_spent"]) for d in stats["usage"]] == [(1, 50)]
    assert_names_field(
        assert_error(
            api.call("GET", team_path(crew, "/stats"), owner, query_string={"days": 0}), 422
        ),
        "days",
    )


# invitations -------------------------------------------------------------------------------


def test_invite_and_accept(api, crew):
    newcomer = api.user("newcomer")
    invitation = api.ok(
        "POST",
        team_path(crew, "/invite"),
        crew["admin"],
        201,
        json={"email": newcomer.email.upper(), "role": "editor"},
    )
    assert (invitation["team_id"], invitation["email"], invitation["role"]) == (
        crew["team"]["id"],
        newcomer.email,
        "editor",
    )
    assert len(invitation["token"]) >= 32
    stored = api.sql(
        "select token_hash from public.invitations where id = %s", (invitation["invitation_id"],)
    )
    assert invitation["token"] not in str(stored)

    accept = f"/api/v1/invitations/{invitation['token']}/accept"
    assert_error(api.call("POST", accept, crew["viewer"]), 403, "forbidden")
    membership = api.ok("POST", accept, newcomer)
    assert (membership["team_id"], membership["user_id"], membership["role"]) == (
        crew["team"]["id"],
        newcomer.id,
        "editor",
    )
    assert_error(api.call("POST", accept, newcomer), 410, "gone")


def test_accept_refuses_unknown_and_expired_tokens(api, crew):
    newcomer = api.user("late")
    assert_error(api.call("POST", "/api/v1/invitations/not-a-token/accept", newcomer), 404)
    invitation = api.ok(
        "POST", team_path(crew, "/invite"), crew["owner"], 201, json={"email": newcomer.email}
    )
    api.sql(
        "update public.invitations set expires_at = now() - interval '1 minute' where id = %s",
        (invitation["invitation_id"],),
    )
    response = api.call("POST", f"/api/v1/invitations/{invitation['token']}/accept", newcomer)
    assert_error(response, 410, "gone")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@example.com", "role": "owner"}, "role"),
        ({"email": "a@example.com", "role": "chief"}, "role"),
    ],
)
def test_invite_refuses_bad_fields(api, crew, body, field):
    before = api.fingerprint()
    response = api.call("POST", team_path(crew, "/invite"), crew["owner"], json=body)
    assert_names_field(assert_error(response, 422), field)
    assert api.fingerprint() == before


def test_invite_needs_admin_and_a_new_member(api, crew, stranger):
    body = {"email": unique_email("invitee")}
    assert_error(api.call("POST", team_path(crew, "/invite"), crew["editor"], json=body), 403)
    assert_error(api.call("POST", team_path(crew, "/invite"), stranger, json=body), 404)
    existing = {"email": crew["viewer"].email}
    assert_error(api.call("POST", team_path(crew, "/invite"), crew["admin"], json=existing), 409)


# roles and removal -------------------------------------------------------------------------


def test_admins_change_lower_roles_and_only_the_owner_hands_on_ownership(api, crew):
    viewer = team_path(crew, f"/members/{crew['viewer'].id}")
    promoted = api.ok("PATCH", viewer, crew["admin"], json={"role": "editor"})
    assert (promoted["user_id"], promoted["role"]) == (crew["viewer"].id, "editor")
    assert_error(api.call("PATCH", viewer, crew["admin"], json={"role": "owner"}), 403)
    assert_error(api.call("PATCH", viewer, crew["editor"], json={"role": "viewer"}), 403)
    peer = team_path(crew, f"/members/{crew['owner'].id}")
    assert_error(api.call("PATCH", peer, crew["admin"], json={"role": "viewer"}), 409)
    unknown = team_path(crew, f"/members/{uuid.uuid4()}")
    assert_error(api.call("PATCH", unknown, crew["admin"], json={"role": "viewer"}), 404)

    api.ok(
        "PATCH",
        team_path(crew, f"/members/{crew['admin'].id}"),
        crew["owner"],
        json={"role": "owner"},
    )
    assert api.ok("GET", team_path(crew), crew["viewer"])["owner_id"] == crew["admin"].id
    assert api.ok("GET", team_path(crew, "/permissions"), crew["owner"])["role"] == "admin"


@pytest.mark.parametrize(("body", "field"), [({}, "role"), ({"role": "boss"}, "role")])
def test_change_role_refuses_bad_fields(api, crew, body, field):
    path = team_path(crew, f"/members/{crew['viewer'].id}")
    assert_names_field(assert_error(api.call("PATCH", path, crew["owner"], json=body), 422), field)


def test_remove_and_leave(api, crew, stranger):
    def member(user):
        return team_path(crew, f"/members/{user.id}")

    assert_error(api.call("DELETE", member(crew["viewer"]), crew["editor"]), 403)
    assert_error(api.call("DELETE", member(crew["viewer"]), stranger), 404)
    assert_error(api.call("DELETE", member(crew["owner"]), crew["admin"]), 409)
    api.ok("DELETE", member(crew["viewer"]), crew["admin"], 204)
    assert_error(api.call("GET", team_path(crew), crew["viewer"]), 404)
    assert_error(api.call("DELETE", member(crew["viewer"]), crew["admin"]), 404)

    api.ok("DELETE", member(crew["editor"]), crew["editor"], 204)  # leaving
    assert_error(api.call("GET", team_path(crew), crew["editor"]), 404)
    assert_error(api.call("DELETE", member(crew["owner"]), crew["owner"]), 409)
    assert api.ok("GET", team_path(crew), crew["owner"])["member_count"] == 2
