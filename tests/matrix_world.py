"""The cross-tenant matrix's world, its actors, and the rule table read from SQL.

The world: an owner with a team ("Cobalt Guild") of an admin, an editor and a viewer; a
team-visible project ("Project Nightingale") linked to the team at admin level with a
finished generation in it; a loose finished generation shared with the team at admin level;
a viewer the member-management routes aim at. Beside it, another tenant: a user who owns a
team, a project and a generation of their own ("Quartz Works"). Around it: a stranger, a
team admin who was suspended, one who was deleted, one who signed out, and tokens that must
be refused (expired, signed by an unknown key, ``alg: none``, a forged ``role:
service_role`` signed and unsigned, none).

``World(api, warm=...)`` reaches the same final state either directly or, with ``warm``,
from a state where the actors who end outside could read the world (the demoted members
were admins, the other tenant's team was linked and shared with, the stranger was a member
and the project public, the suspended, deleted and signed-out users were active admins):
the caller warms the cache in between, then ``world.revoke()`` makes the changes.

Expected outcomes come from the database's own rule table: the ranks of
``public.team_role`` and ``private.permissions_for(role)``.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from api_support import Api
from fixtures_app import TestUser

# where each run of the matrix writes how many cases it tried
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
UNKNOWN_KEY = "an-attacker-secret-of-at-least-32-bytes!"
TEAM_ROLES = ("admin", "editor", "viewer")
# actors whose token is refused before anything is read: 401 on every guarded route
REFUSED_TOKENS = (
    "anon",
    "expired",
    "unknown_key",
    "alg_none",
    "forged_service_role",
    "unsigned_service_role",
    "signed_out",
    "deleted",
)
ACTORS = ("owner", *TEAM_ROLES, "other_member", "stranger", "suspended", *REFUSED_TOKENS)
# who must find no trace of the world
OUTSIDERS = ("other_member", "stranger", "suspended", *REFUSED_TOKENS)


@dataclass(frozen=True)
class Rules:
    """The role table as SQL defines it."""

    ranks: tuple[str, ...]  # lowest first, the enum's order
    permissions: dict[str, frozenset[str]]

    @classmethod
    def load(cls, api: Api) -> Rules:
        rows = api.sql(
            "select r::text as role, private.permissions_for(r) as permissions"
            " from unnest(enum_range(null::public.team_role)) with ordinality as e(r, n)"
            " order by n"
        )
        return cls(
            tuple(row["role"] for row in rows),
            {row["role"]: frozenset(row["permissions"]) for row in rows},
        )

    def allows(self, role: str | None, requires: str) -> bool:
        """Whether a role grants a permission, or reaches a least role."""
        if role is None:
            return False
        if requires in self.ranks:
            return self.ranks.index(role) >= self.ranks.index(requires)
        known = set().union(*self.permissions.values())
        if requires not in known:
            raise AssertionError(f"{requires!r} is neither a permission {known} nor a role")
        return requires in self.permissions[role]


def unsigned(claims: dict) -> str:
    """A token with ``alg: none`` and no signature."""

    def part(value: dict) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def claims_of(user: TestUser) -> dict:
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    claims["exp"] = int(time.time()) + 3600
    return claims


class World:
    def __init__(self, api: Api, warm: bool):
        self.api = api
        self.warm = warm
        self.rules = Rules.load(api)
        self.owner = api.user("owner")
        api.grant_credits(self.owner, 100_000)
        self.team = api.team(self.owner, name="Cobalt Guild")
        self.users: dict[str, TestUser] = {"owner": self.owner}
        # everyone who must end up outside starts inside when the cache is to be warmed
        start_roles = {"admin": "admin", "editor": "editor", "viewer": "viewer"}
        if warm:
            start_roles.update(editor="admin", viewer="admin", stranger="admin")
        start_roles.update(suspended="admin", signed_out="admin", deleted="admin")
        for actor, role in start_roles.items():
            self.users[actor] = api.user(actor.replace("_", "-"))
            api.join(self.team, self.owner, self.users[actor], role)
        # the member the member-management routes aim at: never an actor, so no actor can
        # change its own standing by leaving (a member may always leave)
        self.target = api.user("target")
        api.join(self.team, self.owner, self.target, "viewer")
        self.other = api.user("other-member")
        self.users["other_member"] = self.other
        self.other_team = api.team(self.other, name="Quartz Works")
        self.other_project = api.project(self.other, name="Quartz ledger")
        self.other_generation = api.generation(
            self.other, project_id=self.other_project["id"], prompt="a quartz vein at noon"
        )
        if "stranger" not in self.users:
            self.users["stranger"] = api.user("stranger")
        visibility = "public" if warm else "team"
        self.project = self.linked_project(name="Project Nightingale", visibility=visibility)
        self.generation = self.finished(
            api.generation(
                self.owner, project_id=self.project["id"], prompt="the nightingale's secret song"
            )
        )
        self.shared = self.shared_generation()
        if warm:
            self.join_other_team_owner()
            self.link(self.project["id"], self.other_team["id"])
            self.share(self.shared["id"], self.other_team["id"])
        self.spare_sessions = {
            name: [self.login(user) for _ in range(2)] for name, user in self.users.items()
        }
        self.invitation = self.invite()
        if not warm:
            self.revoke()

    # building blocks -----------------------------------------------------------------------

    def login(self, user: TestUser) -> str:
        body = self.api.ok(
            "POST", "/api/v1/auth/login", json={"email": user.email, "password": user.password}
        )
        return body["access_token"]

    def link(self, project_id: str, team_id: str) -> None:
        self.api.ok(
            "PUT",
            f"/api/v1/projects/{project_id}/teams/{team_id}",
            self.owner,
            json={"access_level": "admin"},
        )

    def share(self, generation_id: str, team_id: str) -> None:
        self.api.ok(
            "PUT",
            f"/api/v1/generations/{generation_id}/share",
            self.owner,
            json={"team_id": team_id, "role": "admin"},
        )

    def join_other_team_owner(self) -> None:
        """The owner joins the other tenant's team at editor, so she may link and share there."""
        self.api.join(self.other_team, self.other, self.owner, "editor")

    def linked_project(self, **fields) -> dict:
        project = self.api.project(self.owner, **fields)
        self.link(project["id"], self.team["id"])
        return project

    def finished(self, generation: dict) -> dict:
        """Completed as FAL's webhook would: a charged generation in flight is never deleted."""
        self.api.sql(
            "select public.record_generation_progress(%s, 'completed')", (generation["id"],)
        )
        return generation

    def shared_generation(self) -> dict:
        generation = self.finished(self.api.generation(self.owner))
        self.share(generation["id"], self.team["id"])
        return generation

    def invite(self, team: dict | None = None) -> dict:
        return self.api.ok(
            "POST",
            f"/api/v1/teams/{(team or self.team)['id']}/invite",
            self.owner,
            201,
            json={"email": f"invitee-{time.monotonic_ns()}@example.com"},
        )

    # the changes that end the warm state -----------------------------------------------------

    def revoke(self) -> None:
        """Bring the world to its final state; for a warm world, each change revokes a grant."""
        api, team = self.api, self.team["id"]
        if self.warm:
            for actor, role in (("editor", "editor"), ("viewer", "viewer")):
                api.ok(
                    "PATCH",
                    f"/api/v1/teams/{team}/members/{self.users[actor].id}",
                    self.owner,
                    json={"role": role},
                )
            api.ok(
                "DELETE",
                f"/api/v1/teams/{team}/members/{self.users['stranger'].id}",
                self.owner,
                204,
            )
            api.ok(
                "PATCH",
                f"/api/v1/projects/{self.project['id']}",
                self.owner,
                json={"visibility": "team"},
            )
            api.ok(
                "DELETE",
                f"/api/v1/projects/{self.project['id']}/teams/{self.other_team['id']}",
                self.owner,
                204,
            )
            api.ok(
                "DELETE",
                f"/api/v1/generations/{self.shared['id']}/share/{self.other_team['id']}",
                self.owner,
                204,
            )
            api.ok(
                "DELETE",
                f"/api/v1/teams/{self.other_team['id']}/members/{self.owner.id}",
                self.other,
                204,
            )
        api.ok("POST", "/api/v1/auth/logout", self.users["signed_out"], 204)
        api.sql("delete from auth.users where id = %s", (self.users["deleted"].id,))
        # last: the barrier the warm run waits for (its notice comes after all the others)
        api.suspend(self.users["suspended"])

    # actors ----------------------------------------------------------------------------------

    def token(self, actor: str) -> str | None:
        if actor in self.users:
            return self.users[actor].access_token
        owner = claims_of(self.owner)
        if actor == "anon":
            return None
        if actor == "expired":
            return self.api.expired_token(self.owner)
        if actor == "unknown_key":
            return jwt.encode(owner, UNKNOWN_KEY, algorithm="HS256")
        if actor == "alg_none":
            return unsigned(owner)
        service = {**owner, "role": "service_role", "app_metadata": {"role": "admin"}}
        if actor == "forged_service_role":
            return jwt.encode(service, UNKNOWN_KEY, algorithm="HS256")
        if actor == "unsigned_service_role":
            return unsigned(service)
        raise KeyError(actor)

    def role(self, actor: str, resource: str) -> str | None:
        """The actor's role on the world's project, generations or team (the links are at
        admin level, so a member's role through them is their team role)."""
        if resource not in ("project", "generation", "team"):
            raise KeyError(resource)
        if actor == "owner":
            return "owner"
        return actor if actor in TEAM_ROLES else None

    # what nobody outside may see ---------------------------------------------------------------

    def secrets(self) -> list[str]:
        people = [self.owner, *(self.users[role] for role in TEAM_ROLES)]
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

    def other_secrets(self) -> list[str]:
        return [
            self.other.id,
            self.other.email,
            self.other_team["id"],
            self.other_team["name"],
            self.other_project["id"],
            self.other_project["name"],
            self.other_generation["id"],
            self.other_generation["prompt"],
        ]
