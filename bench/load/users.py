"""The scenarios: one locust user class each, its tasks named for the YAML's weights.

Each simulated user builds what its tasks need through the API on its first task (accounts,
projects, teams, generations), then runs its weighted tasks. Every request states the
answer the rules give (bench/load/api.py): a planned status, a 4xx the scenario expects,
and for authorization the exact decision.

- ``signup_login``: sign up, sign in, a wrong password (401 expected), who-am-I, refresh,
  sign out (the ended session's token: 401 expected).
- ``authorization``: the authorize endpoint on the user's own generation, one shared with
  their team, and a stranger's (denied); reading the stranger's is a 404.
- ``generation``: submissions on the simulated provider (paid from the sign-up grant),
  idempotent replays, a refused parameter (422 expected), status, list, balance.
- ``teams``: a team with an editor and a viewer and a project linked at editor level;
  member reads, the editor's writes, the viewer's refused writes and invitations (403).
- ``journey``: sign up, a project, a generation followed until it completes, a team, an
  invitation accepted by a teammate, the generation shared with the team, and the teammate
  reading it, its media and its authorization.
"""

from __future__ import annotations

import random
import time
import uuid

from locust import FastHttpUser, between

from bench.load.api import PASSWORD, Skip, call, must, new_email, sign_up

MODEL = "fal-ai/imagen4/preview/ultra"  # the cheapest image model: 45 credits
IMAGE = {"aspect_ratio": "16:9"}
FINAL = ("completed", "failed", "cancelled")
FOLLOW_SECONDS = 60.0  # a generation not finished by then counts as a timeout
FOLLOW_EVERY = 0.5
pick = random.Random().choice  # noqa: S311 - which of a user's objects to touch, no secret


class FlowFailed(Exception):
    """A multi-request flow (submitted -> completed) did not end as the rules say."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class Scenario(FastHttpUser):
    abstract = True
    wait_time = between(0, 0)

    first_round: tuple[str, ...] = ()  # after the setup, each task once in this order

    def on_start(self) -> None:
        self.ready = False
        self.went_round = False

    def prepare(self) -> None:
        """Build the user's world once, then call every task once, so that each endpoint
        is exercised early in a run, however its weight and the run's length fall."""
        if self.ready:
            return
        self.setup()
        self.ready = True
        if not self.went_round:
            self.went_round = True
            for name in self.first_round:
                getattr(self, name)()
            self.prepare()  # a task of the round may have undone the setup (a sign-out)

    def setup(self) -> None:
        pass

    def flow(self, name: str, started: float, error: FlowFailed | None) -> None:
        """Record a flow of several requests as one timed entry."""
        self.environment.events.request.fire(
            request_type="FLOW",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            response=None,
            context={},
            exception=error,
        )


def create_generation(user, token: str, project_id: str | None, name: str, key=None) -> dict:
    body = {"model_id": MODEL, "prompt": f"a lighthouse {uuid.uuid4().hex[:6]}"}
    body["parameters"] = IMAGE
    if project_id:
        body["project_id"] = project_id
    headers = {"Idempotency-Key": key} if key else None
    return must(
        user, "POST", "/generations", name=name, token=token, body=body, ok=(201,), headers=headers
    )


def create_project(user, token: str) -> dict:
    return must(
        user,
        "POST",
        "/projects",
        name="POST /projects",
        token=token,
        body={"name": f"load {uuid.uuid4().hex[:8]}"},
        ok=(201,),
    )


def create_team(user, token: str) -> dict:
    return must(
        user,
        "POST",
        "/teams",
        name="POST /teams",
        token=token,
        body={"name": f"load team {uuid.uuid4().hex[:8]}"},
        ok=(201,),
    )


def join(user, team_id: str, inviter: dict, member: dict, role: str) -> None:
    """The inviter invites the member's email at a role; the member accepts."""
    invitation = must(
        user,
        "POST",
        f"/teams/{team_id}/invite",
        name="POST /teams/{id}/invite",
        token=inviter["token"],
        body={"email": member["email"], "role": role},
        ok=(201,),
    )
    must(
        user,
        "POST",
        "/invitations/accept",
        name="POST /invitations/accept",
        token=member["token"],
        body={"token": invitation["token"]},
        check=lambda answer: answer.get("role") == role,
    )


def decided(granted: bool, method: str | None = None, role: str | None = None):
    """The check of an authorize answer: the exact decision the rules give."""

    def check(answer: dict) -> bool:
        if answer.get("access_granted") is not granted:
            return False
        return not granted or (
            answer.get("access_method") == method and answer.get("effective_role") == role
        )

    return check


class SignupLogin(Scenario):
    def on_start(self) -> None:
        super().on_start()
        self.email = None
        self.session = None

    def setup(self) -> None:
        self.signup()

    def signup(self) -> None:
        email = new_email("signup")
        self.session = must(
            self,
            "POST",
            "/auth/signup",
            name="POST /auth/signup",
            body={"email": email, "password": PASSWORD},
            ok=(201,),
            check=lambda answer: bool(answer.get("access_token")),
        )
        self.email = email

    def login(self) -> None:
        self.prepare()
        self.session = must(
            self,
            "POST",
            "/auth/login",
            name="POST /auth/login",
            body={"email": self.email, "password": PASSWORD},
            check=lambda answer: answer.get("user", {}).get("email") == self.email,
        )

    def wrong_password(self) -> None:
        self.prepare()
        call(
            self,
            "POST",
            "/auth/login",
            name="POST /auth/login (wrong password)",
            body={"email": self.email, "password": "not-the-password"},
            ok=(),
            expected=(401,),
        )

    def me(self) -> None:
        self.prepare()
        call(
            self,
            "GET",
            "/auth/me",
            name="GET /auth/me",
            token=self.session["access_token"],
            check=lambda answer: answer.get("email") == self.email,
        )

    def refresh(self) -> None:
        self.prepare()
        self.session = must(
            self,
            "POST",
            "/auth/refresh",
            name="POST /auth/refresh",
            body={"refresh_token": self.session["refresh_token"]},
            check=lambda answer: bool(answer.get("access_token")),
        )

    def logout(self) -> None:
        self.prepare()
        token = self.session["access_token"]
        must(self, "POST", "/auth/logout", name="POST /auth/logout", token=token, ok=(204,))
        call(
            self,
            "GET",
            "/auth/me",
            name="GET /auth/me (after logout)",
            token=token,
            ok=(),
            expected=(401,),
        )
        self.ready = False  # the next task signs up again


class Authorization(Scenario):
    def setup(self) -> None:
        me, partner, stranger = (sign_up(self, label) for label in ("me", "partner", "stranger"))
        project = create_project(self, me["token"])
        self.me = me
        self.own_id = create_generation(self, me["token"], project["id"], "POST /generations")["id"]
        team = create_team(self, partner["token"])
        join(self, team["id"], partner, me, "viewer")
        self.shared_id = create_generation(self, partner["token"], None, "POST /generations")["id"]
        must(
            self,
            "PUT",
            f"/generations/{self.shared_id}/share",
            name="PUT /generations/{id}/share",
            token=partner["token"],
            body={"team_id": team["id"], "role": "viewer"},
        )
        self.denied_id = create_generation(self, stranger["token"], None, "POST /generations")["id"]

    def authorize(self, generation: str, label: str, check) -> None:
        call(
            self,
            "POST",
            f"/generations/{generation}/authorize",
            name=f"POST /generations/{{id}}/authorize ({label})",
            token=self.me["token"],
            check=check,
        )

    def own(self) -> None:
        self.prepare()
        self.authorize(self.own_id, "own", decided(True, "direct_ownership", "owner"))

    def shared(self) -> None:
        self.prepare()
        self.authorize(self.shared_id, "shared", decided(True, "generation_share", "viewer"))

    def denied(self) -> None:
        self.prepare()
        self.authorize(self.denied_id, "denied", decided(False))

    def read_shared(self) -> None:
        self.prepare()
        call(
            self,
            "GET",
            f"/generations/{self.shared_id}",
            name="GET /generations/{id} (shared)",
            token=self.me["token"],
            check=lambda answer: answer.get("id") == self.shared_id,
        )

    def read_denied(self) -> None:
        self.prepare()
        call(
            self,
            "GET",
            f"/generations/{self.denied_id}",
            name="GET /generations/{id} (denied)",
            token=self.me["token"],
            ok=(),
            expected=(404,),
        )


class Generation(Scenario):
    def setup(self) -> None:
        self.me = sign_up(self, "maker")
        self.project = create_project(self, self.me["token"])["id"]
        self.made: list[tuple[str, str, dict]] = []  # (id, Idempotency-Key, request body)
        self.make()

    def make(self) -> None:
        key = uuid.uuid4().hex
        body = {"model_id": MODEL, "prompt": f"a harbour {key[:6]}", "parameters": IMAGE}
        body["project_id"] = self.project
        made = must(
            self,
            "POST",
            "/generations",
            name="POST /generations",
            token=self.me["token"],
            body=body,
            headers={"Idempotency-Key": key},
            ok=(201,),
        )
        self.made = [*self.made[-19:], (made["id"], key, body)]

    def submit(self) -> None:
        self.prepare()
        self.make()

    def replay(self) -> None:
        """The same request with the same key: the first generation again, no new charge."""
        self.prepare()
        generation, key, body = pick(self.made)
        call(
            self,
            "POST",
            "/generations",
            name="POST /generations (idempotent replay)",
            token=self.me["token"],
            body=body,
            headers={"Idempotency-Key": key},
            check=lambda answer: answer.get("id") == generation,
        )

    def bad_parameter(self) -> None:
        self.prepare()
        call(
            self,
            "POST",
            "/generations",
            name="POST /generations (parameter outside the schema)",
            token=self.me["token"],
            body={"model_id": MODEL, "prompt": "x", "parameters": {"aspect_ratio": "7:5"}},
            ok=(),
            expected=(400, 422),
        )

    def status(self) -> None:
        self.prepare()
        generation, *_ = pick(self.made)
        call(
            self,
            "GET",
            f"/generations/{generation}",
            name="GET /generations/{id}",
            token=self.me["token"],
            check=lambda answer: answer.get("id") == generation,
        )

    def list(self) -> None:
        self.prepare()
        call(
            self,
            "GET",
            "/generations?limit=20",
            name="GET /generations",
            token=self.me["token"],
            check=lambda answer: bool(answer.get("items")),
        )

    def balance(self) -> None:
        self.prepare()
        call(
            self,
            "GET",
            "/credits/balance",
            name="GET /credits/balance",
            token=self.me["token"],
            check=lambda answer: answer.get("balance", -1) >= 0,
        )


class Teams(Scenario):
    def setup(self) -> None:
        self.owner, self.editor, self.viewer = (
            sign_up(self, label) for label in ("owner", "editor", "viewer")
        )
        self.team = create_team(self, self.owner["token"])["id"]
        join(self, self.team, self.owner, self.editor, "editor")
        join(self, self.team, self.owner, self.viewer, "viewer")
        self.project = create_project(self, self.owner["token"])["id"]
        must(
            self,
            "PUT",
            f"/projects/{self.project}/teams/{self.team}",
            name="PUT /projects/{id}/teams/{team_id}",
            token=self.owner["token"],
            body={"access_level": "editor"},
        )
        self.generation = create_generation(
            self, self.owner["token"], self.project, "POST /generations"
        )["id"]

    def members(self) -> None:
        self.prepare()
        who = pick((self.owner, self.editor, self.viewer))
        call(
            self,
            "GET",
            f"/teams/{self.team}/members",
            name="GET /teams/{id}/members",
            token=who["token"],
            check=lambda answer: len(answer.get("items", ())) == 3,
        )

    def permissions(self) -> None:
        self.prepare()
        call(
            self,
            "GET",
            f"/teams/{self.team}/permissions",
            name="GET /teams/{id}/permissions (viewer)",
            token=self.viewer["token"],
            check=lambda answer: answer.get("role") == "viewer",
        )

    def editor_write(self) -> None:
        self.prepare()
        made = create_generation(
            self, self.editor["token"], self.project, "POST /generations (editor, team project)"
        )
        call(
            self,
            "PATCH",
            f"/generations/{made['id']}",
            name="PATCH /generations/{id} (editor)",
            token=self.editor["token"],
            body={"title": "retitled by the editor"},
        )

    def viewer_read(self) -> None:
        self.prepare()
        call(
            self,
            "GET",
            f"/generations/{self.generation}",
            name="GET /generations/{id} (viewer)",
            token=self.viewer["token"],
            check=lambda answer: answer.get("id") == self.generation,
        )
        call(
            self,
            "GET",
            f"/generations?project_id={self.project}&limit=20",
            name="GET /generations?project_id (viewer)",
            token=self.viewer["token"],
            check=lambda answer: bool(answer.get("items")),
        )

    def viewer_write_refused(self) -> None:
        self.prepare()
        call(
            self,
            "PATCH",
            f"/generations/{self.generation}",
            name="PATCH /generations/{id} (viewer: refused)",
            token=self.viewer["token"],
            body={"title": "a viewer may not"},
            ok=(),
            expected=(403,),
        )
        body = {"model_id": MODEL, "prompt": "x", "parameters": IMAGE, "project_id": self.project}
        call(
            self,
            "POST",
            "/generations",
            name="POST /generations (viewer, team project: refused)",
            token=self.viewer["token"],
            body=body,
            ok=(),
            expected=(403,),
        )

    def viewer_invite_refused(self) -> None:
        self.prepare()
        call(
            self,
            "POST",
            f"/teams/{self.team}/invite",
            name="POST /teams/{id}/invite (viewer: refused)",
            token=self.viewer["token"],
            body={"email": new_email("nobody"), "role": "viewer"},
            ok=(),
            expected=(403,),
        )

    def invite_and_revoke(self) -> None:
        self.prepare()
        invitation = must(
            self,
            "POST",
            f"/teams/{self.team}/invite",
            name="POST /teams/{id}/invite",
            token=self.owner["token"],
            body={"email": new_email("invitee"), "role": "viewer"},
            ok=(201,),
        )
        call(
            self,
            "DELETE",
            f"/teams/{self.team}/invitations/{invitation['invitation_id']}",
            name="DELETE /teams/{id}/invitations/{invitation_id}",
            token=self.owner["token"],
            ok=(204,),
        )


class Journey(Scenario):
    def journey(self) -> None:
        creator = sign_up(self, "creator")
        teammate = sign_up(self, "teammate")
        project = create_project(self, creator["token"])["id"]
        generation = create_generation(self, creator["token"], project, "POST /generations")["id"]
        self.follow(creator["token"], generation)
        team = create_team(self, creator["token"])["id"]
        join(self, team, creator, teammate, "viewer")
        must(
            self,
            "PUT",
            f"/generations/{generation}/share",
            name="PUT /generations/{id}/share",
            token=creator["token"],
            body={"team_id": team, "role": "viewer"},
        )
        token = teammate["token"]
        call(
            self,
            "GET",
            f"/generations/{generation}",
            name="GET /generations/{id} (teammate)",
            token=token,
            check=lambda answer: answer.get("status") == "completed",
        )
        call(
            self,
            "GET",
            f"/generations/{generation}/media",
            name="GET /generations/{id}/media (teammate)",
            token=token,
        )
        call(
            self,
            "POST",
            f"/generations/{generation}/authorize",
            name="POST /generations/{id}/authorize (teammate)",
            token=token,
            check=decided(True, "generation_share", "viewer"),
        )

    def follow(self, token: str, generation: str) -> None:
        """Read the generation until it ends; the whole wait is one timed flow."""
        started = time.perf_counter()
        while True:
            answer = must(
                self,
                "GET",
                f"/generations/{generation}",
                name="GET /generations/{id} (following)",
                token=token,
            )
            if answer.get("status") in FINAL:
                break
            if time.perf_counter() - started > FOLLOW_SECONDS:
                answer = {"status": f"still {answer.get('status')} after {FOLLOW_SECONDS:g} s"}
                break
            time.sleep(FOLLOW_EVERY)
        error = None
        if answer.get("status") != "completed":
            kind = "timeout" if "still" in str(answer.get("status")) else "wrong_answer"
            error = FlowFailed(f"the generation ended {answer.get('status')}", kind)
        self.flow("FLOW submitted -> completed", started, error)
        if error:
            raise Skip()


# by name, as bench/load/names.py lists them with their tasks
SCENARIOS: dict[str, type[Scenario]] = {
    "signup_login": SignupLogin,
    "authorization": Authorization,
    "generation": Generation,
    "teams": Teams,
    "journey": Journey,
}
