"""/api/v1/teams and /api/v1/invitations: teams, members, roles, invitations, usage."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from api_support import assert_error, assert_names_field, running_api
from fixtures_app import MAIL_DIR, app_settings, unique_email

from backend import close_app, create_app
from backend.http.pagination import encode_cursor


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
    page = api.ok("GET", team_path(crew, "/members"), crew["viewer"])
    members = page["items"]
    assert [(m["user_id"], m["role"]) for m in members] == [
        (crew[role].id, role) for role in ("owner", "admin", "editor", "viewer")
    ]
    assert members[0]["email"] == crew["owner"].email
    assert page["next_cursor"] is None
    for suffix in ("", "/members", "/permissions", "/stats", "/invitations"):
        body = assert_error(api.call("GET", team_path(crew, suffix), stranger), 404, "not_found")
        assert "Night Crew" not in str(body)
    assert_error(api.call("GET", f"/api/v1/teams/{uuid.uuid4()}", stranger), 404)
    assert_error(api.call("GET", "/api/v1/teams/zzz/members", stranger), 404)


def test_teammates_see_names_not_money(api, crew):
    api.set_credits(crew["owner"], 12345)
    members = api.ok("GET", team_path(crew, "/members"), crew["viewer"])["items"]
    assert all(set(m) == {"user_id", "role", "email", "display_name", "joined_at"} for m in members)
    assert "12345" not in str(members)
    assert api.ok("GET", "/api/v1/auth/me", crew["owner"])["credits"] == 12345


def test_members_come_in_pages_highest_role_first(api, crew):
    seen, cursor = [], None
    while True:
        query = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = api.ok("GET", team_path(crew, "/members"), crew["editor"], query_string=query)
        assert len(page["items"]) == 1
        seen += [m["role"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["owner", "admin", "editor", "viewer"]


@pytest.mark.parametrize(
    "cursor",
    [
        "bm90IGpzb24",  # not JSON
        encode_cursor((9, datetime.now(UTC), uuid.UUID(int=0))),  # no role has rank 9
        encode_cursor((datetime.now(UTC), uuid.UUID(int=0))),  # another list's cursor
    ],
)
def test_a_forged_member_cursor_is_a_bad_cursor(api, crew, cursor):
    response = api.call(
        "GET", team_path(crew, "/members"), crew["viewer"], query_string={"cursor": cursor}
    )
    assert_error(response, 400, "bad_cursor")


@pytest.mark.parametrize(
    ("role", "permissions"),
    [
        ("viewer", ["read"]),
        ("editor", ["read", "write"]),
        ("admin", ["read", "write", "delete", "invite", "manage_members"]),
        (
            "owner",
            ["read", "write", "delete", "invite", "manage_members", "transfer_ownership"],
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


def invite(api, crew, inviter="admin", **body):
    body = {"email": unique_email("invitee"), **body}
    return api.ok("POST", team_path(crew, "/invite"), crew[inviter], 201, json=body)


def accept(api, user, token):
    return api.call("POST", "/api/v1/invitations/accept", user, json={"token": token})


def mail_to(address: str) -> email.message.EmailMessage:
    """The newest message the development mailer wrote for an address."""
    for path in sorted(Path(MAIL_DIR).glob("*.eml"), reverse=True):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["To"] == address:
            return message
    raise AssertionError(f"no mail to {address} in {MAIL_DIR}")


def test_invite_mails_the_token_and_the_invitee_accepts_it_once(api, crew):
    newcomer = api.user("newcomer")
    invitation = invite(api, crew, email=newcomer.email.upper(), role="editor")
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
    message = mail_to(newcomer.email)
    assert "Night Crew" in message["Subject"]
    assert invitation["token"] in message.get_content()

    assert_error(accept(api, crew["viewer"], invitation["token"]), 403, "forbidden")
    membership = api.ok(
        "POST", "/api/v1/invitations/accept", newcomer, json={"token": invitation["token"]}
    )
    assert (membership["team_id"], membership["user_id"], membership["role"]) == (
        crew["team"]["id"],
        newcomer.id,
        "editor",
    )
    assert_error(accept(api, newcomer, invitation["token"]), 410, "gone")


def test_the_token_never_travels_in_a_url(api, crew):
    newcomer = api.user("pathless")
    token = invite(api, crew, email=newcomer.email)["token"]
    assert_error(api.call("POST", f"/api/v1/invitations/{token}/accept", newcomer), 404)
    assert api.sql("select 1 from public.team_members where user_id = %s", (newcomer.id,)) == []


def test_accept_refuses_unknown_and_expired_tokens(api, crew):
    newcomer = api.user("late")
    assert_error(accept(api, newcomer, "not-a-token"), 404)
    invitation = invite(api, crew, inviter="owner", email=newcomer.email)
    api.sql(
        "update public.invitations set expires_at = now() - interval '1 minute' where id = %s",
        (invitation["invitation_id"],),
    )
    assert_error(accept(api, newcomer, invitation["token"]), 410, "gone")


@pytest.mark.parametrize(
    ("body", "field"), [({}, "token"), ({"token": ""}, "token"), ({"token": "t" * 257}, "token")]
)
def test_accept_refuses_bad_fields(api, stranger, body, field):
    response = api.call("POST", "/api/v1/invitations/accept", stranger, json=body)
    assert_names_field(assert_error(response, 422), field)


def test_accept_needs_a_confirmed_email(api, crew):
    newcomer = api.user("unconfirmed")
    token = invite(api, crew, email=newcomer.email)["token"]
    api.sql("update auth.users set email_confirmed_at = null where id = %s", (newcomer.id,))
    body = assert_error(accept(api, newcomer, token), 403, "forbidden")
    assert "confirm your email" in body["message"]
    api.sql("update auth.users set email_confirmed_at = now() where id = %s", (newcomer.id,))
    assert api.ok("POST", "/api/v1/invitations/accept", newcomer, json={"token": token})


def test_a_new_sign_up_confirms_by_the_emailed_code_and_then_accepts(api, crew, tmp_path):
    """The whole path with confirmation on: sign up, no session, code by mail, verify, join."""
    app = create_app(app_settings(api.db_url, AUTH_AUTOCONFIRM=False, MAIL_DIR=str(tmp_path)))
    try:
        client = app.test_client()
        address = unique_email("confirming")
        credentials = {"email": address, "password": "correct horse battery staple"}
        signed_up = client.post("/api/v1/auth/signup", json=credentials)
        assert signed_up.status_code == 201
        assert signed_up.get_json()["access_token"] is None
        token = invite(api, crew, email=address)["token"]
        assert_error(
            client.post("/api/v1/auth/login", json=credentials), 403, "email_not_confirmed"
        )

        (mail,) = tmp_path.glob("*.eml")
        code = next(w for w in mail.read_text().split() if w.isdigit() and len(w) == 6)
        verified = client.post(
            "/auth/v1/verify", json={"type": "signup", "email": address, "token": code}
        )
        assert verified.status_code == 200
        bearer = {"Authorization": f"Bearer {verified.get_json()['access_token']}"}
        joined = client.post("/api/v1/invitations/accept", json={"token": token}, headers=bearer)
        assert joined.status_code == 200, joined.get_json()
        assert joined.get_json()["team_id"] == crew["team"]["id"]
    finally:
        close_app(app)


def test_a_team_name_with_line_breaks_is_mailed_on_one_subject_line(api, stranger):
    team = api.team(stranger, name="Night\r\nBcc: eve@example.com")
    invitee = unique_email("invitee")
    api.ok("POST", f"/api/v1/teams/{team['id']}/invite", stranger, 201, json={"email": invitee})
    message = mail_to(invitee)
    assert message["Subject"] == "Join Night Bcc: eve@example.com on Velro"
    assert message["Bcc"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a" * 243 + "@example.com"}, "email"),  # 255 characters
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


def test_only_the_owner_invites_admins(api, crew):
    body = {"email": unique_email("would-be-admin"), "role": "admin"}
    before = api.fingerprint()
    response = api.call("POST", team_path(crew, "/invite"), crew["admin"], json=body)
    assert "only the owner" in assert_error(response, 403, "forbidden")["message"]
    assert api.fingerprint() == before
    assert api.ok("POST", team_path(crew, "/invite"), crew["owner"], 201, json=body)


def test_admins_list_pending_invitations_newest_first_in_pages(api, crew, stranger):
    first, second, third = (invite(api, crew) for _ in range(3))
    joiner = api.user("joiner")
    accepted = invite(api, crew, email=joiner.email)
    api.ok("POST", "/api/v1/invitations/accept", joiner, json={"token": accepted["token"]})
    expired = invite(api, crew)
    api.sql(
        "update public.invitations set expires_at = now() - interval '1 second' where id = %s",
        (expired["invitation_id"],),
    )
    path = team_path(crew, "/invitations")
    page = api.ok("GET", path, crew["admin"], query_string={"limit": 2})
    rest = api.ok("GET", path, crew["owner"], query_string={"cursor": page["next_cursor"]})
    listed = [i["id"] for i in page["items"] + rest["items"]]
    assert listed == [third["invitation_id"], second["invitation_id"], first["invitation_id"]]
    assert rest["next_cursor"] is None
    item = page["items"][0]
    assert set(item) == {"id", "team_id", "email", "role", "invited_by", "expires_at", "created_at"}
    assert (item["email"], item["invited_by"]) == (third["email"], crew["admin"].id)
    for caller, status in ((crew["editor"], 403), (crew["viewer"], 403), (stranger, 404)):
        assert_error(api.call("GET", path, caller), status)
    assert_error(api.call("GET", path, crew["admin"], query_string={"cursor": "x"}), 400)


def test_admins_revoke_invitations(api, crew, stranger):
    invitee = api.user("revoked")
    invitation = invite(api, crew, inviter="owner", email=invitee.email)
    path = team_path(crew, f"/invitations/{invitation['invitation_id']}")
    for caller, status in ((crew["editor"], 403), (stranger, 404)):
        before = api.fingerprint()
        assert_error(api.call("DELETE", path, caller), status)
        assert api.fingerprint() == before
    other_team = api.team(stranger)
    elsewhere = f"/api/v1/teams/{other_team['id']}/invitations/{invitation['invitation_id']}"
    assert_error(api.call("DELETE", elsewhere, stranger), 404)

    api.ok("DELETE", path, crew["admin"], 204)
    assert_error(api.call("DELETE", path, crew["admin"]), 404)
    body = assert_error(accept(api, invitee, invitation["token"]), 410, "gone")
    assert "revoked" in body["message"]
    listed = api.ok("GET", team_path(crew, "/invitations"), crew["admin"])["items"]
    assert invitation["invitation_id"] not in [i["id"] for i in listed]
    audit = api.sql(
        "select actor_id::text from private.audit_events"
        " where event = 'team.invitation_revoked' and subject_id = %s",
        (invitation["invitation_id"],),
    )
    assert audit == [{"actor_id": crew["admin"].id}]


def test_revoking_an_accepted_invitation_is_a_conflict(api, crew):
    newcomer = api.user("joined")
    invitation = invite(api, crew, email=newcomer.email)
    api.ok("POST", "/api/v1/invitations/accept", newcomer, json={"token": invitation["token"]})
    path = team_path(crew, f"/invitations/{invitation['invitation_id']}")
    assert_error(api.call("DELETE", path, crew["owner"]), 409, "conflict")


@pytest.mark.parametrize("loss", ["removed", "demoted", "suspended", "left"])
def test_an_inviter_who_loses_admin_takes_their_invitations_along(api, crew, loss):
    kept = invite(api, crew, inviter="owner")
    invitee = api.user("orphan")
    lost = invite(api, crew, email=invitee.email)
    admin = crew["admin"]
    member = team_path(crew, f"/members/{admin.id}")
    if loss == "removed":
        api.ok("DELETE", member, crew["owner"], 204)
    elif loss == "demoted":
        api.ok("PATCH", member, crew["owner"], json={"role": "editor"})
    elif loss == "suspended":
        api.suspend(admin)
    else:
        api.ok("DELETE", member, admin, 204)
    pending = api.ok("GET", team_path(crew, "/invitations"), crew["owner"])["items"]
    assert [i["id"] for i in pending] == [kept["invitation_id"]]
    assert_error(accept(api, invitee, lost["token"]), 410, "gone")


def test_a_team_holds_a_bounded_number_of_pending_invitations(api, crew):
    """An admin cannot pile up invitations until removing them outlasts a statement: a team
    holds max_pending_invitations live ones; a revoked or expired one frees its place."""
    team = crew["team"]["id"]
    pending = api.sql(
        "select count(*) as n from public.invitations where team_id = %s and accepted_at is null"
        " and revoked_at is null and expires_at > now()",
        (team,),
    )[0]["n"]
    api.sql(
        "update private.settings set value = to_jsonb(%s::integer)"
        " where key = 'max_pending_invitations' returning key",
        (pending + 2,),
    )
    try:
        first, _second = invite(api, crew), invite(api, crew)
        before = api.fingerprint()
        body = {"email": unique_email("one-too-many")}
        refused = api.call("POST", team_path(crew, "/invite"), crew["admin"], json=body)
        assert "pending invitations, the most it may hold" in assert_error(refused, 409)["message"]
        assert api.fingerprint() == before
        api.ok(
            "DELETE", team_path(crew, f"/invitations/{first['invitation_id']}"), crew["admin"], 204
        )
        expiring = invite(api, crew)
        api.sql(
            "update public.invitations set expires_at = now() - interval '1 second'"
            " where id = %s returning id",
            (expiring["invitation_id"],),
        )
        invite(api, crew)
    finally:
        api.sql(
            "update private.settings set value = '500'"
            " where key = 'max_pending_invitations' returning key"
        )


def test_deleting_an_account_cancels_and_refunds_teammates_work_in_its_projects(api):
    """A teammate's charged generation in flight in the owner's project does not keep the
    owner's account from being deleted: it is cancelled and refunded first."""
    owner, editor = api.user("leaving"), api.user("staying")
    team = api.team(owner)
    api.join(team, owner, editor, "editor")
    project = api.project(owner, visibility="team")
    api.link(project, team, owner, "editor")
    start = api.ok("GET", "/api/v1/credits/balance", editor)["balance"]
    generation = api.generation(editor, project_id=project["id"])
    assert generation["status"] == "pending" and generation["cost"] > 0
    queued = api.generation(editor, project_id=project["id"])
    api.sql(  # as the worker records FAL's answer
        "update public.generations set status = 'queued', fal_request_id = 'req-queued'"
        " where id = %s returning id",
        (queued["id"],),
    )
    api.sql("delete from auth.users where id = %s returning id", (owner.id,))
    assert api.ok("GET", "/api/v1/credits/balance", editor)["balance"] == start
    assert api.sql("select 1 from public.generations where id = %s", (generation["id"],)) == []
    # the request FAL holds is cancelled there too, by a job committed with the deletion
    jobs = api.sql(
        "select args ->> 'request_id' as request_id from procrastinate.procrastinate_jobs"
        " where task_name = 'velro.cancel_fal_request'"
    )
    assert jobs == [{"request_id": "req-queued"}]


# roles, ownership and removal --------------------------------------------------------------


def test_admins_change_roles_below_admin_and_only_the_owner_makes_admins(api, crew):
    viewer = team_path(crew, f"/members/{crew['viewer'].id}")
    promoted = api.ok("PATCH", viewer, crew["admin"], json={"role": "editor"})
    assert (promoted["user_id"], promoted["role"]) == (crew["viewer"].id, "editor")
    before = api.fingerprint()
    refused = api.call("PATCH", viewer, crew["admin"], json={"role": "admin"})
    assert "only the owner can make someone admin" in assert_error(refused, 403)["message"]
    admin = team_path(crew, f"/members/{crew['admin'].id}")
    assert_error(api.call("PATCH", admin, crew["admin"], json={"role": "editor"}), 403)
    assert_error(api.call("PATCH", viewer, crew["editor"], json={"role": "viewer"}), 403)
    owner = team_path(crew, f"/members/{crew['owner'].id}")
    assert_error(api.call("PATCH", owner, crew["admin"], json={"role": "viewer"}), 409)
    unknown = team_path(crew, f"/members/{uuid.uuid4()}")
    assert_error(api.call("PATCH", unknown, crew["admin"], json={"role": "viewer"}), 404)
    assert api.fingerprint() == before

    assert api.ok("PATCH", viewer, crew["owner"], json={"role": "admin"})["role"] == "admin"
    assert api.ok("PATCH", admin, crew["owner"], json={"role": "viewer"})["role"] == "viewer"


@pytest.mark.parametrize(
    ("body", "field"), [({}, "role"), ({"role": "boss"}, "role"), ({"role": "owner"}, "role")]
)
def test_change_role_refuses_bad_fields(api, crew, body, field):
    path = team_path(crew, f"/members/{crew['viewer'].id}")
    assert_names_field(assert_error(api.call("PATCH", path, crew["owner"], json=body), 422), field)


def test_the_owner_transfers_ownership_to_a_member(api, crew, stranger):
    path = team_path(crew, "/transfer")
    for caller, status in ((crew["admin"], 403), (crew["viewer"], 403), (stranger, 404)):
        before = api.fingerprint()
        assert_error(api.call("POST", path, caller, json={"user_id": crew["editor"].id}), status)
        assert api.fingerprint() == before
    for target, status in ((stranger.id, 404), (crew["owner"].id, 409)):
        assert_error(api.call("POST", path, crew["owner"], json={"user_id": target}), status)
    api.suspend(crew["viewer"])
    suspended = api.call("POST", path, crew["owner"], json={"user_id": crew["viewer"].id})
    assert "suspended" in assert_error(suspended, 409)["message"]

    team = api.ok("POST", path, crew["owner"], json={"user_id": crew["editor"].id})
    assert (team["owner_id"], team["role"]) == (crew["editor"].id, "admin")
    roles = {
        m["user_id"]: m["role"]
        for m in api.ok("GET", team_path(crew, "/members"), crew["editor"])["items"]
    }
    assert (roles[crew["editor"].id], roles[crew["owner"].id]) == ("owner", "admin")
    assert list(roles.values()).count("owner") == 1
    audit = api.sql(
        "select actor_id::text, details from private.audit_events"
        " where event = 'team.ownership_transferred' and team_id = %s",
        (crew["team"]["id"],),
    )
    details = {"from": crew["owner"].id, "to": crew["editor"].id, "new_owner_was": "editor"}
    assert audit == [{"actor_id": crew["owner"].id, "details": details}]
    # the former owner is an admin now: no more making admins or transferring
    admin = team_path(crew, f"/members/{crew['admin'].id}")
    assert_error(api.call("PATCH", admin, crew["owner"], json={"role": "editor"}), 403)
    assert_error(api.call("POST", path, crew["owner"], json={"user_id": crew["admin"].id}), 403)


@pytest.mark.parametrize(("body", "field"), [({}, "user_id"), ({"user_id": "nobody"}, "user_id")])
def test_transfer_refuses_bad_fields(api, crew, body, field):
    response = api.call("POST", team_path(crew, "/transfer"), crew["owner"], json=body)
    assert_names_field(assert_error(response, 422), field)


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
