"""Every REST route, tried as every kind of caller: nothing leaks, nothing is written.

The world: an owner with a team ("Cobalt Guild") of a viewer, an editor and an admin; a
team-visible project linked to the team at admin level, with a generation in it; a loose
generation shared with the team at admin level. Around it: a stranger, a team admin who
has been suspended, the owner's token once expired, the owner's claims signed with a
wrong key, a team admin's token after they signed out, and no token at all.

For each (route, caller) the status must be exactly the expected one. Callers outside the
team must find no trace of it in any body (no ids, names, emails or prompts), and a
refused request must leave every table as it was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jwt
import pytest
from api_support import MODEL, assert_error, running_api
from fixtures_app import unique_email

OUTSIDERS = ("stranger", "suspended", "expired", "forged", "signed_out", "anonymous")
PERSONAS = (
    "stranger",
    "viewer",
    "editor",
    "admin",
    "suspended",
    "expired",
    "forged",
    "signed_out",
    "anonymous",
)


@dataclass
class Case:
    method: str
    path: str  # placeholders: {P} {G} {GS} {T} {V} and fresh targets, see World.fresh
    expect: dict  # persona -> status; the token-less and bad-token personas default to 401
    body: dict | None = None
    headers: dict = field(default_factory=dict)

    def status_for(self, persona: str) -> int:
        return self.expect.get(persona, 401)


def statuses(stranger, viewer, editor, admin, suspended, public=False):
    expect = dict(stranger=stranger, viewer=viewer, editor=editor, admin=admin, suspended=suspended)
    if public:
        expect.update(expired=200, forged=200, signed_out=200, anonymous=200)
    return expect


EVERYONE_ACTIVE = statuses(200, 200, 200, 200, 200)
MEMBERS_READ = statuses(404, 200, 200, 200, 404)
# RPC-backed reads say "suspended" (403) where plain RLS reads find nothing (404)
MEMBERS_ONLY = statuses(404, 200, 200, 200, 403)

CASES = {
    "list projects": Case("GET", "/api/v1/projects", EVERYONE_ACTIVE),
    "create project": Case(
        "POST", "/api/v1/projects", statuses(201, 201, 201, 201, 403), body={"name": "mine"}
    ),
    "read project": Case("GET", "/api/v1/projects/{P}", MEMBERS_READ),
    "change project": Case(
        "PATCH",
        "/api/v1/projects/{P}",
        statuses(404, 403, 403, 403, 404),  # a project's shape is its owner's, not a link admin's
        body={"description": "changed"},
    ),
    "delete project": Case(
        "DELETE", "/api/v1/projects/{fresh_project}", statuses(404, 403, 403, 403, 404)
    ),
    "link project": Case(
        "PUT",
        "/api/v1/projects/{P}/teams/{T}",
        statuses(404, 403, 403, 403, 403),
        body={"access_level": "admin"},
    ),
    "unlink project": Case(
        "DELETE", "/api/v1/projects/{fresh_project}/teams/{T}", statuses(404, 403, 403, 204, 403)
    ),
    "project stats": Case("GET", "/api/v1/projects/{P}/stats", statuses(404, 200, 200, 200, 403)),
    "create generation": Case(
        "POST",
        "/api/v1/generations",
        statuses(404, 403, 201, 201, 403),
        body={"model_id": MODEL, "prompt": "x", "project_id": "{P}"},
        headers={"Idempotency-Key": "{new_key}"},
    ),
    "list generations": Case("GET", "/api/v1/generations", EVERYONE_ACTIVE),
    "read generation": Case("GET", "/api/v1/generations/{G}", MEMBERS_READ),
    "retitle generation": Case(
        "PATCH",
        "/api/v1/generations/{G}",
        statuses(404, 403, 200, 200, 404),
        body={"title": "renamed"},
    ),
    "delete generation": Case(
        "DELETE",
        "/api/v1/generations/{fresh_finished_generation}",
        statuses(404, 403, 403, 204, 404),
    ),
    "cancel generation": Case(
        "POST", "/api/v1/generations/{fresh_generation}/cancel", statuses(404, 403, 200, 200, 403)
    ),
    "authorize generation": Case("POST", "/api/v1/generations/{G}/authorize", EVERYONE_ACTIVE),
    "share generation": Case(
        "PUT",
        "/api/v1/generations/{GS}/share",
        statuses(404, 403, 403, 200, 403),
        body={"team_id": "{T}", "role": "admin"},
    ),
    "unshare generation": Case(
        "DELETE", "/api/v1/generations/{fresh_shared}/share/{T}", statuses(404, 403, 403, 204, 403)
    ),
    "list teams": Case("GET", "/api/v1/teams", EVERYONE_ACTIVE),
    "create team": Case(
        "POST", "/api/v1/teams", statuses(201, 201, 201, 201, 403), body={"name": "another"}
    ),
    "read team": Case("GET", "/api/v1/teams/{T}", MEMBERS_READ),
    "team members": Case("GET", "/api/v1/teams/{T}/members", MEMBERS_ONLY),
    "team permissions": Case("GET", "/api/v1/teams/{T}/permissions", MEMBERS_ONLY),
    "team stats": Case("GET", "/api/v1/teams/{T}/stats", MEMBERS_ONLY),
    "invite": Case(
        "POST",
        "/api/v1/teams/{T}/invite",
        statuses(404, 403, 403, 201, 403),
        body={"email": "{new_email}"},
    ),
    "accept someone else's invitation": Case(
        "POST",
        "/api/v1/invitations/accept",
        statuses(403, 403, 403, 403, 403),
        body={"token": "{fresh_token}"},
    ),
    "pending invitations": Case(
        "GET", "/api/v1/teams/{T}/invitations", statuses(404, 403, 403, 200, 403)
    ),
    "revoke invitation": Case(
        "DELETE",
        "/api/v1/teams/{T}/invitations/{fresh_invitation}",
        statuses(404, 403, 403, 204, 403),
    ),
    "transfer ownership": Case(
        "POST",
        "/api/v1/teams/{T}/transfer",
        statuses(404, 403, 403, 403, 403),
        body={"user_id": "{V}"},
    ),
    "change member role": Case(
        "PATCH",
        "/api/v1/teams/{T}/members/{V}",
        statuses(404, 403, 403, 200, 403),
        body={"role": "viewer"},
    ),
    "remove member": Case(
        "DELETE", "/api/v1/teams/{T}/members/{fresh_member}", statuses(404, 403, 403, 204, 403)
    ),
    "credit balance": Case("GET", "/api/v1/credits/balance", EVERYONE_ACTIVE),
    "credit transactions": Case("GET", "/api/v1/credits/transactions", EVERYONE_ACTIVE),
    "models": Case("GET", "/api/v1/models", statuses(200, 200, 200, 200, 200, public=True)),
}


class World:
    def __init__(self, api):
        self.api = api
        self.owner = api.user("owner")
        api.grant_credits(self.owner, 100_000)
        self.members = {role: api.user(role) for role in ("viewer", "editor", "admin")}
        self.suspended = api.user("suspended")
        self.stranger = api.user("stranger")
        self.team = api.team(self.owner, name="Cobalt Guild")
        for role, member in self.members.items():
            api.join(self.team, self.owner, member, role)
        api.join(self.team, self.owner, self.suspended, "admin")
        api.suspend(self.suspended)
        self.signed_out = api.user("signed-out")
        api.join(self.team, self.owner, self.signed_out, "admin")
        api.ok("POST", "/api/v1/auth/logout", self.signed_out, 204)
        self.project = self.linked_project(name="Project Nightingale")
        self.generation = api.generation(
            self.owner, project_id=self.project["id"], prompt="the nightingale's secret song"
        )
        self.shared = self.shared_generation()
        self.tokens = {
            "stranger": self.stranger.access_token,
            **{role: member.access_token for role, member in self.members.items()},
            "suspended": self.suspended.access_token,
            "expired": api.expired_token(self.owner),
            "forged": forged_token(self.owner.access_token),
            "signed_out": self.signed_out.access_token,
            "anonymous": None,
        }

    def linked_project(self, **fields) -> dict:
        project = self.api.project(self.owner, **fields)
        self.api.ok(
            "PUT",
            f"/api/v1/projects/{project['id']}/teams/{self.team['id']}",
            self.owner,
            json={"access_level": "admin"},
        )
        return project

    def shared_generation(self) -> dict:
        generation = self.api.generation(self.owner)
        self.api.ok(
            "PUT",
            f"/api/v1/generations/{generation['id']}/share",
            self.owner,
            json={"team_id": self.team["id"], "role": "admin"},
        )
        return generation

    def fresh(self, name: str) -> str:
        """A new target for a route that would destroy or use up the shared world."""
        if name == "fresh_project":
            return self.linked_project()["id"]
        if name == "fresh_generation":
            return self.api.generation(self.owner, project_id=self.project["id"])["id"]
        if name == "fresh_finished_generation":
            # a charged generation in flight is never deleted: finish it first, as FAL would
            generation_id = self.fresh("fresh_generation")
            self.api.sql(
                "select public.record_generation_progress(%s, 'completed')", (generation_id,)
            )
            return generation_id
        if name == "fresh_shared":
            return self.shared_generation()["id"]
        if name == "fresh_member":
            member = self.api.user("extra")
            self.api.join(self.team, self.owner, member, "viewer")
            return member.id
        if name in ("fresh_token", "fresh_invitation"):
            invitation = self.api.ok(
                "POST",
                f"/api/v1/teams/{self.team['id']}/invite",
                self.owner,
                201,
                json={"email": unique_email("invitee")},
            )
            return invitation["token" if name == "fresh_token" else "invitation_id"]
        if name == "new_email":
            return unique_email("invitee")
        if name == "new_key":
            return unique_email("key")
        raise KeyError(name)

    def values_for(self, case: Case) -> dict:
        values = {
            "P": self.project["id"],
            "G": self.generation["id"],
            "GS": self.shared["id"],
            "T": self.team["id"],
            "V": self.members["viewer"].id,
        }
        text = f"{case.path} {case.body} {case.headers}"
        for name in (
            "fresh_project",
            "fresh_generation",
            "fresh_finished_generation",
            "fresh_shared",
            "fresh_member",
            "fresh_token",
            "fresh_invitation",
            "new_email",
            "new_key",
        ):
            if "{" + name + "}" in text:
                values[name] = self.fresh(name)
        return values

    def secrets(self) -> list[str]:
        """What nobody outside the team may see."""
        people = [self.owner, *self.members.values()]
        return [
            self.project["id"],
            self.project["name"],
            self.generation["id"],
            self.generation["prompt"],
            self.shared["id"],
            self.team["id"],
            self.team["name"],
            *(p.id for p in people),
            *(p.email for p in people),
        ]


def forged_token(token: str) -> str:
    """The same claims, fresh, signed with a key the app does not trust."""
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["exp"] = int(time.time()) + 3600
    return jwt.encode(claims, "an-attacker-secret-of-at-least-32-bytes!", algorithm="HS256")


def fill(template, values: dict):
    if isinstance(template, str):
        return template.format(**values)
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    return template


@pytest.fixture(scope="module")
def api(database_factory, migrated_template):
    with running_api(database_factory(migrated_template)) as running:
        yield running


@pytest.fixture(scope="module")
def world(api):
    return World(api)


def test_the_world_is_what_the_cases_assume(api, world):
    roles = {
        m["user_id"]: m["role"]
        for m in api.ok("GET", f"/api/v1/teams/{world.team['id']}/members", world.owner)["items"]
    }
    assert roles[world.suspended.id] == "admin"
    assert roles[world.members["editor"].id] == "editor"
    assert (
        api.ok("GET", f"/api/v1/projects/{world.project['id']}", world.owner)["visibility"]
        == "team"
    )


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("case_name", list(CASES))
def test_route_as_persona(api, world, case_name, persona):
    case = CASES[case_name]
    values = world.values_for(case)
    expected = case.status_for(persona)
    before = api.fingerprint() if expected >= 400 else None

    response = api.call(
        case.method,
        fill(case.path, values),
        world.tokens[persona],
        json=fill(case.body, values),
        headers=fill(case.headers, values),
    )

    assert response.status_code == expected, response.get_data(as_text=True)
    if expected >= 400:
        assert_error(response, expected)
        assert api.fingerprint() == before, "a refused request changed the database"
    if expected == 401:
        assert response.get_json()["error"] == "invalid_token"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if persona in OUTSIDERS:
        body = response.get_data(as_text=True)
        leaked = [secret for secret in world.secrets() if secret in body]
        assert not leaked, f"{persona} saw {leaked} in {body}"
