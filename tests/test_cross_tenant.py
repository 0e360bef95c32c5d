"""The cross-tenant matrix over HTTP: every route of the app, tried as every actor.

Generated, not listed: the operations come from the app's route table (``url_map``, every
method of every rule), each with the access it declares (``x-velro-access``, see
``backend.http.access``) and its success status from the OpenAPI document; the actors and
the rule table come from ``matrix_world``. A route without a declaration, or one the
matrix has no request recipe for, fails the run. Each actor's expected answer is computed:

- ``public``, ``credentials``, ``fal``: whatever a caller without a token gets; the token
  adds nothing;
- a refused token (none, expired, unknown key, ``alg: none``, forged ``service_role``
  signed or not, signed out, deleted user): 401;
- ``operator``: 403 for every signed-in user;
- a suspended user: their own account may be read, nothing else: 404, or 403 saying so;
- ``account``: the caller's own; ``invitation``: 403 for anyone not invited;
- ``project``/``generation``/``team``: no role on it 404, a role that does not allow
  ``requires`` 403, else the success status.

A refused request must leave every table as it was; outsiders must find no trace of the
world in any body, and nobody a trace of the other tenant. A write expected to succeed
runs on a fresh target of the same shape, so the world stays what the expectations
assume. The matrix runs twice: cache off, and cache on (L1 and Redis) warmed by every read
route before the permission changes; both must answer alike. Counts go to
``test-artifacts/matrix-http-<mode>.json``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

import psycopg
import pytest
from api_support import MODEL, Api
from fixtures_app import app_settings, unique_email
from isolated_redis import claim_database
from matrix_world import ACTORS, ARTIFACTS, OUTSIDERS, REFUSED_TOKENS, World
from psycopg import sql

from backend import close_app, create_app
from backend.cache import EXTENSION as CACHE
from backend.http.access import access_of

METRICS_TOKEN = "matrix-operator-token-of-at-least-32-characters"
BARRIER_SECONDS = 10.0
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SUSPENDED = re.compile("suspended", re.IGNORECASE)
GOTRUE = "/auth/v1/"
ERROR_SHAPE = {"error", "message", "request_id"}
GOTRUE_SHAPE = {"code", "error_code", "msg"}


@dataclass
class Recipe:
    """How to call one operation: body, headers and query; which path parameters must be
    fresh when the call is expected to succeed (the world must stay as it is)."""

    body: dict | None = None
    headers: dict = field(default_factory=dict)
    query: str = ""
    fresh: dict = field(default_factory=dict)  # parameter -> kind of fresh target
    fresh_session: bool = False  # the call ends the caller's session: use a spare one


# How to call each operation. Only the *how*: who may is declared by the route itself.
RECIPES = {
    "GET /api/v1/auth/me": Recipe(),
    "POST /api/v1/auth/login": Recipe(),
    "POST /api/v1/auth/logout": Recipe(query="?scope=local", fresh_session=True),
    "POST /api/v1/auth/refresh": Recipe(),
    "POST /api/v1/auth/signup": Recipe(),
    "GET /auth/v1/.well-known/jwks.json": Recipe(),
    "POST /auth/v1/logout": Recipe(query="?scope=local", fresh_session=True),
    "POST /auth/v1/resend": Recipe(),
    "POST /auth/v1/signup": Recipe(),
    "POST /auth/v1/token": Recipe(query="?grant_type=password"),
    "GET /auth/v1/user": Recipe(),
    "POST /auth/v1/verify": Recipe(),
    "GET /api/v1/credits/balance": Recipe(),
    "GET /api/v1/credits/transactions": Recipe(),
    "GET /api/v1/docs": Recipe(),
    "GET /api/v1/docs/assets/{filename}": Recipe(),
    "GET /api/v1/docs/start.js": Recipe(),
    "GET /api/v1/generations": Recipe(),
    "POST /api/v1/generations": Recipe(
        body={"model_id": MODEL, "prompt": "x", "project_id": "{project_id}"},
        headers={"Idempotency-Key": "{new_key}"},
    ),
    "GET /api/v1/generations/{generation_id}": Recipe(),
    "PATCH /api/v1/generations/{generation_id}": Recipe(
        body={"title": "renamed"}, fresh={"generation_id": "generation"}
    ),
    "DELETE /api/v1/generations/{generation_id}": Recipe(fresh={"generation_id": "generation"}),
    "POST /api/v1/generations/{generation_id}/authorize": Recipe(),
    "POST /api/v1/generations/{generation_id}/cancel": Recipe(
        fresh={"generation_id": "pending_generation"}
    ),
    "GET /api/v1/generations/{generation_id}/events": Recipe(),
    "GET /api/v1/generations/{generation_id}/media": Recipe(),
    "PUT /api/v1/generations/{generation_id}/share": Recipe(
        body={"team_id": "{team_id}", "role": "admin"}, fresh={"generation_id": "generation"}
    ),
    "DELETE /api/v1/generations/{generation_id}/share/{team_id}": Recipe(
        fresh={"generation_id": "generation"}
    ),
    "GET /api/v1/generations/{generation_id}/webhook-deliveries": Recipe(),
    "GET /api/v1/health/cache": Recipe(),
    "GET /api/v1/health/live": Recipe(),
    "GET /api/v1/health/metrics": Recipe(),
    "GET /api/v1/health/ready": Recipe(),
    "GET /api/v1/health/status": Recipe(),
    "POST /api/v1/invitations/accept": Recipe(body={"token": "{invitation_token}"}),
    "GET /api/v1/media/{name}": Recipe(),
    "GET /api/v1/models": Recipe(),
    "GET /api/v1/openapi.json": Recipe(),
    "GET /api/v1/projects": Recipe(),
    "POST /api/v1/projects": Recipe(body={"name": "mine"}),
    "GET /api/v1/projects/{project_id}": Recipe(),
    "PATCH /api/v1/projects/{project_id}": Recipe(
        body={"description": "changed"}, fresh={"project_id": "project"}
    ),
    "DELETE /api/v1/projects/{project_id}": Recipe(fresh={"project_id": "project"}),
    "GET /api/v1/projects/{project_id}/stats": Recipe(),
    "PUT /api/v1/projects/{project_id}/teams/{team_id}": Recipe(
        body={"access_level": "admin"}, fresh={"project_id": "unlinked_project"}
    ),
    "DELETE /api/v1/projects/{project_id}/teams/{team_id}": Recipe(fresh={"project_id": "project"}),
    "GET /api/v1/teams": Recipe(),
    "POST /api/v1/teams": Recipe(body={"name": "another"}),
    "GET /api/v1/teams/{team_id}": Recipe(),
    "GET /api/v1/teams/{team_id}/invitations": Recipe(),
    "DELETE /api/v1/teams/{team_id}/invitations/{invitation_id}": Recipe(
        fresh={"invitation_id": "invitation"}
    ),
    "POST /api/v1/teams/{team_id}/invite": Recipe(body={"email": "{new_email}"}),
    "GET /api/v1/teams/{team_id}/members": Recipe(),
    "PATCH /api/v1/teams/{team_id}/members/{user_id}": Recipe(
        body={"role": "viewer"}, fresh={"user_id": "member"}
    ),
    "DELETE /api/v1/teams/{team_id}/members/{user_id}": Recipe(fresh={"user_id": "member"}),
    "GET /api/v1/teams/{team_id}/permissions": Recipe(),
    "GET /api/v1/teams/{team_id}/stats": Recipe(),
    "POST /api/v1/teams/{team_id}/transfer": Recipe(
        body={"user_id": "{user_id}"}, fresh={"team_id": "team"}
    ),
    "POST /api/v1/webhooks/fal": Recipe(body={}),
    "GET /api/v1/webhooks/secret": Recipe(),
    "POST /api/v1/webhooks/secret": Recipe(),
    "GET /metrics": Recipe(),
    "GET /simulated-fal/.well-known/jwks.json": Recipe(),
    "GET /simulated-fal/files/{request_id}/{name}": Recipe(),
}


@dataclass
class Operation:
    method: str
    path: str
    access: dict | None
    success: int

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


def operations(app) -> list[Operation]:
    """Every method of every rule in the route table, with its declared access."""
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    found = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted(set(rule.methods) & set(METHODS)):
            documented = document["paths"].get(path, {}).get(method.lower(), {})
            statuses = sorted(int(s) for s in documented.get("responses", {}) if s.startswith("2"))
            success = 201 if 201 in statuses else (statuses[0] if statuses else 200)
            found.append(Operation(method, path, access_of(app, rule.endpoint, method), success))
    return sorted(found, key=lambda op: op.key)


# what each actor should get ------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    statuses: frozenset[int]
    same_as_anon: bool = False

    @property
    def succeeds(self) -> bool:
        return bool(self.statuses) and min(self.statuses) < 400


def expected(world: World, op: Operation, actor: str) -> Expected:
    resource, requires = op.access["resource"], op.access["requires"]
    success = Expected(frozenset({op.success}))
    if resource in ("public", "credentials", "fal"):
        return Expected(frozenset(), same_as_anon=True)
    if actor in REFUSED_TOKENS:
        # GoTrue answers a bad JWT with 403 (bad_jwt, session_not_found), and so do its routes
        return Expected(frozenset({401, 403} if op.path.startswith(GOTRUE) else {401}))
    if resource == "operator" or resource == "invitation":
        return Expected(frozenset({403}))
    if actor == "suspended":
        if resource == "account" and requires == "read":
            return success
        if resource == "generation" and requires is None:
            return success  # the answer itself says no access
        if resource == "account":
            return Expected(frozenset({403}))
        return Expected(frozenset({403, 404}))
    if resource == "account" or requires is None:
        return success
    role = world.role(actor, resource)
    if role is None:
        return Expected(frozenset({404}))
    return success if world.rules.allows(role, requires) else Expected(frozenset({403}))


# calling ---------------------------------------------------------------------------------------


class Caller:
    """Fills an operation's recipe for an actor, calls it, and checks the answer."""

    def __init__(self, world: World):
        self.world = world
        self.api = world.api
        self.failures: list[str] = []
        self.cases = 0
        self.snapshot = Snapshot(world.api.db_url)

    def fresh(self, kind: str) -> str:
        world, api = self.world, self.api
        if kind == "project":
            return world.linked_project()["id"]
        if kind == "unlinked_project":
            return api.project(world.owner)["id"]
        if kind == "generation":
            generation = world.finished(api.generation(world.owner, project_id=world.project["id"]))
            world.share(generation["id"], world.team["id"])
            return generation["id"]
        if kind == "pending_generation":
            return api.generation(world.owner, project_id=world.project["id"])["id"]
        if kind == "member":
            member = api.user("extra")
            api.join(world.team, world.owner, member, "viewer")
            return member.id
        if kind == "invitation":
            return world.invite()["invitation_id"]
        if kind == "team":
            team = api.team(world.owner)
            api.join(team, world.owner, world.target, "viewer")
            return team["id"]
        raise KeyError(kind)

    def values(self, recipe: Recipe, succeeds: bool) -> dict:
        world = self.world
        values = {
            "project_id": world.project["id"],
            "generation_id": world.shared["id"],
            "team_id": world.team["id"],
            "user_id": world.target.id,
            "invitation_id": world.invitation["invitation_id"],
            "name": "missing.png",
            "filename": "missing.js",
            "request_id": "missing",
        }
        text = f"{recipe.body} {recipe.headers}"
        if "{invitation_token}" in text:
            values["invitation_token"] = world.invite()["token"]
        values["new_email"] = unique_email("invitee")
        values["new_key"] = unique_email("key")
        if succeeds:
            for name, kind in recipe.fresh.items():
                values[name] = self.fresh(kind)
        return values

    def token(self, actor: str, recipe: Recipe, succeeds: bool) -> str | None:
        if recipe.fresh_session and succeeds:
            return self.world.spare_sessions[actor].pop()
        return self.world.token(actor)

    def call(self, op: Operation, actor: str, values: dict, recipe: Recipe, token):
        path = fill(op.path, values) + recipe.query
        return self.api.call(
            op.method,
            path,
            token,
            json=fill(recipe.body, values),
            headers=fill(recipe.headers, values),
        )

    def run(self, op: Operation) -> None:
        recipe = RECIPES.get(op.key)
        if op.access is None:
            self.failures.append(f"{op.key}: declares no access (backend.http.access)")
            return
        if recipe is None:
            self.failures.append(f"{op.key}: no recipe in the matrix: add one to RECIPES")
            return
        anon = None
        # anon first: the routes that ignore tokens must answer everyone as they answer anon
        for actor in sorted(ACTORS, key=lambda name: name != "anon"):
            want = expected(self.world, op, actor)
            values = self.values(recipe, want.succeeds)
            # a refused write must change nothing (reads are checked for traces instead)
            writes = op.method != "GET"
            before = self.snapshot.digest() if writes and not want.succeeds else None
            response = self.call(
                op, actor, values, recipe, self.token(actor, recipe, want.succeeds)
            )
            self.cases += 1
            if actor == "anon":
                anon = response.status_code
            self.check(op, actor, want, response, before, anon)

    def check(self, op, actor, want: Expected, response, before, anon) -> None:
        status, body = response.status_code, response.get_data(as_text=True)
        where = f"{op.key} as {actor}"
        same = status == anon and status < 500
        ok = same if want.same_as_anon else status in want.statuses
        if not ok:
            wanted = f"anon's {anon}" if want.same_as_anon else sorted(want.statuses)
            self.failures.append(f"{where}: {status}, expected {wanted}: {body[:300]}")
            return
        if status >= 400:
            self.check_error_shape(where, op, response)
        resource = op.access["resource"]
        owned = resource in ("project", "generation", "team")
        if status == 403 and actor == "suspended" and owned and not SUSPENDED.search(body):
            self.failures.append(f"{where}: a 403 that does not say the account is suspended")
        if before is not None and status >= 400 and self.snapshot.digest() != before:
            self.failures.append(f"{where}: refused ({status}) but the database changed")
        if actor in OUTSIDERS:
            leaked = [s for s in self.world.secrets() if s in body]
            if leaked:
                self.failures.append(f"{where}: saw {leaked}")
        if actor != "other_member":
            leaked = [s for s in self.world.other_secrets() if s in body]
            if leaked:
                self.failures.append(f"{where}: saw the other tenant's {leaked}")
        if op.key.endswith("/authorize") and status == 200:
            self.check_decision(where, actor, response.get_json())

    def check_error_shape(self, where: str, op: Operation, response) -> None:
        body = response.get_json(silent=True) or {}
        shape = GOTRUE_SHAPE if op.path.startswith(GOTRUE) else ERROR_SHAPE
        if not shape <= set(body):
            self.failures.append(f"{where}: an error not in the shape {sorted(shape)}: {body}")
        elif shape is ERROR_SHAPE and body["request_id"] != response.headers.get("X-Request-ID"):
            self.failures.append(f"{where}: the error's request_id is not the X-Request-ID")
        bearer = shape is ERROR_SHAPE and op.access["resource"] not in ("fal", "public")
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code == 401 and bearer and not challenge.startswith("Bearer"):
            self.failures.append(f"{where}: a 401 without WWW-Authenticate: Bearer")

    def check_decision(self, where: str, actor: str, answer: dict) -> None:
        role = None if actor == "suspended" else self.world.role(actor, "generation")
        permissions = sorted(self.world.rules.permissions[role]) if role else []
        if answer["access_granted"] != (role is not None) or (
            role
            and (answer["effective_role"], sorted(answer["permissions"])) != (role, permissions)
        ):
            self.failures.append(f"{where}: decided {answer}, expected role {role}")


class Snapshot:
    """A digest of every row of every table in public, auth.users and auth.sessions (read
    from the catalog, so a new table is covered): equal before and after = nothing written."""

    def __init__(self, db_url: str):
        self.conn = psycopg.connect(db_url, autocommit=True)
        tables = self.conn.execute(
            "select schemaname, tablename from pg_tables where schemaname = 'public'"
            " or (schemaname = 'auth' and tablename in ('users', 'sessions')) order by 1, 2"
        ).fetchall()
        assert len(tables) > 10, tables
        digest = sql.SQL("(select md5(coalesce(string_agg(t::text, '|' order by t::text), ''))")
        parts = [
            digest + sql.SQL(" from {}.{} as t)").format(sql.Identifier(s), sql.Identifier(n))
            for s, n in tables
        ]
        self.statement = sql.SQL("select md5({})").format(sql.SQL(" || ").join(parts))

    def digest(self) -> str:
        return self.conn.execute(self.statement).fetchone()[0]

    def close(self) -> None:
        self.conn.close()


def fill(template, values: dict):
    if isinstance(template, str):
        return template.format(**values)
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    return template


def record(mode: str, caller: Caller, ops: list[Operation]) -> dict:
    counts = {
        "path": "http",
        "mode": mode,
        "operations": len(ops),
        "actors": len(ACTORS),
        "cases": caller.cases,
        "failures": len(caller.failures),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"matrix-http-{mode}.json").write_text(json.dumps(counts, indent=2) + "\n")
    print(f"cross-tenant matrix, HTTP, {mode}: {counts}")
    return counts


def run_matrix(world: World, mode: str) -> None:
    app = world.api.app
    ops = operations(app)
    caller = Caller(world)
    try:
        for op in ops:
            caller.run(op)
    finally:
        caller.snapshot.close()
    counts = record(mode, caller, ops)
    assert not caller.failures, "\n".join(caller.failures)
    assert counts["cases"] >= len(ops) * len(ACTORS) >= 60 * 15


# the two runs ------------------------------------------------------------------------------------


def matrix_settings(database: str, **overrides) -> dict:
    # operator routes are closed as in production (open in test without a metrics token)
    return app_settings(database, METRICS_TOKEN=METRICS_TOKEN, **overrides)


def test_matrix_with_the_cache_off(database_factory, migrated_template):
    database = database_factory(migrated_template)
    app = create_app(matrix_settings(database))
    try:
        run_matrix(World(Api(app, database), warm=False), "cache-off")
    finally:
        close_app(app)


def test_matrix_with_a_warm_cache(database_factory, migrated_template, redis_url):
    database = database_factory(migrated_template)
    with claim_database(redis_url) as redis_db:
        app = create_app(matrix_settings(database, CACHE_ENABLED=True, REDIS_URL=redis_db))
        try:
            api = Api(app, database)
            wait_until(lambda: app.extensions[CACHE].trusted, "the cache never became trusted")
            world = World(api, warm=True)
            warm(world)
            world.revoke()
            # the suspension's notice comes last: once its cached grant is gone, so are the rest
            decision = f"/api/v1/generations/{world.generation['id']}/authorize"
            suspended = world.users["suspended"]
            wait_until(
                lambda: not api.ok("POST", decision, suspended)["access_granted"],
                "the last revocation never reached the cache",
            )
            run_matrix(world, "cache-warm")
            stats = api.ok("GET", "/api/v1/health/cache", METRICS_TOKEN)
            assert stats["l1"]["hits"] > 0, stats
        finally:
            close_app(app)


def wait_until(condition, message: str) -> None:
    """A barrier, not a timed assertion: the bound only stops a lost notice hanging the run."""
    deadline = time.monotonic() + BARRIER_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.01)


def warm(world: World) -> None:
    """Every read route as every actor that will lose access: their grants are now cached."""
    app = world.api.app
    reads = [op for op in operations(app) if op.method == "GET" or op.key.endswith("/authorize")]
    caller = Caller(world)
    caller.snapshot.close()  # only its values are needed here
    values = caller.values(Recipe(), succeeds=False)
    granted = 0
    for actor in (
        "editor",
        "viewer",
        "other_member",
        "stranger",
        "suspended",
        "signed_out",
        "deleted",
    ):
        for op in reads:
            if op.access and op.access["resource"] in ("project", "generation", "team"):
                response = world.api.call(op.method, fill(op.path, values), world.token(actor))
                granted += response.status_code == 200
    # the warm state really granted: what the matrix then refuses was cached as allowed
    assert granted > 0
