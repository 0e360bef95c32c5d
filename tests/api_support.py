"""Helpers for the REST API suites: an app on a database of the module's own, and callers.

Each test module builds one ``Api`` (module scope) with::

    @pytest.fixture(scope="module")
    def api(database_factory, migrated_template):
        with running_api(database_factory(migrated_template)) as running:
            yield running

Users sign up through the real POST /api/v1/auth/signup. ``api.call(method, path, user)``
sends a request as that user (a ``TestUser``, a raw token string, or None for no token).
State the API cannot set (a suspended account, extra credits) is set with SQL as the
database owner, the way an operator would.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass

import jwt
import psycopg
from fixtures_app import TestUser, Users, app_settings, unique_email
from flask import Flask
from psycopg.rows import dict_row

from backend import close_app, create_app
from backend.auth.gotrue import SIGNER

# What a generation costs with this model (see the models migration).
MODEL = "fal-ai/flux-pro/v1.1-ultra"
MODEL_COST = 50


@dataclass
class Api:
    app: Flask
    db_url: str

    def __post_init__(self):
        self.client = self.app.test_client()
        self.users = Users(self.client)

    def user(self, prefix: str = "user") -> TestUser:
        return self.users.create(email=unique_email(prefix))

    def call(self, method: str, path: str, user=None, **kwargs):
        headers = dict(kwargs.pop("headers", {}) or {})
        token = user.access_token if isinstance(user, TestUser) else user
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def ok(self, method: str, path: str, user=None, status: int = 200, **kwargs):
        """Call and insist on a status; return the JSON body."""
        response = self.call(method, path, user, **kwargs)
        assert response.status_code == status, (method, path, response.get_data(as_text=True))
        if status == 204:
            assert response.get_data() == b"", "a 204 has no body"
            return None
        return response.get_json()

    # SQL as the database owner -----------------------------------------------------------

    def sql(self, statement: str, params=()) -> list[dict]:
        with psycopg.connect(self.db_url, row_factory=dict_row) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def suspend(self, user: TestUser) -> None:
        self.sql("update public.profiles set status = 'suspended' where id = %s", (user.id,))

    def grant_credits(self, user: TestUser, amount: int) -> None:
        self.sql("select public.grant_credits(%s, %s)", (user.id, amount))

    def set_credits(self, user: TestUser, amount: int) -> None:
        self.sql("update public.profiles set credits = %s where id = %s", (amount, user.id))

    def refresh_analytics(self) -> None:
        self.sql("select public.refresh_analytics()")

    def expired_token(self, user: TestUser) -> str:
        """The user's token re-signed by the app's own key with an expiry an hour ago."""
        claims = jwt.decode(user.access_token, options={"verify_signature": False})
        now = int(time.time())
        claims.update(iat=now - 7200, exp=now - 3600)
        return self.app.extensions[SIGNER].sign(claims)

    def fingerprint(self) -> str:
        """A digest of every row the API can write: equal before and after = nothing written."""
        rows = self.sql(
            "select md5(string_agg(t, '|' order by t)) as digest from ("
            " select 'p' || p::text as t from public.projects as p"
            " union all select 'pt' || pt::text from public.project_teams as pt"
            " union all select 'g' || g::text from public.generations as g"
            " union all select 'gs' || gs::text from public.generation_shares as gs"
            " union all select 't' || t::text from public.teams as t"
            " union all select 'tm' || tm::text from public.team_members as tm"
            " union all select 'i' || i::text from public.invitations as i"
            " union all select 'c' || c::text from public.credit_ledger as c"
            " union all select 'pr' || pr::text from public.profiles as pr) as everything"
        )
        return hashlib.sha256((rows[0]["digest"] or "").encode()).hexdigest()

    # building blocks through the API -----------------------------------------------------

    def project(self, owner: TestUser, **fields) -> dict:
        body = {"name": f"project {unique_email('p')}", **fields}
        return self.ok("POST", "/api/v1/projects", owner, 201, json=body)

    def team(self, owner: TestUser, name: str | None = None) -> dict:
        body = {"name": name or f"team {unique_email('t')[:40]}"}
        return self.ok("POST", "/api/v1/teams", owner, 201, json=body)

    def join(self, team: dict, admin: TestUser, member: TestUser, role: str = "viewer") -> None:
        """Invite ``member`` at ``role`` (below owner) and accept as them."""
        invitation = self.ok(
            "POST",
            f"/api/v1/teams/{team['id']}/invite",
            admin,
            201,
            json={"email": member.email, "role": role},
        )
        self.ok("POST", "/api/v1/invitations/accept", member, json={"token": invitation["token"]})

    def link(self, project: dict, team: dict, admin: TestUser, access_level: str = "viewer"):
        """Give ``team`` access to ``project`` at ``access_level``, as the project's admin."""
        path = f"/api/v1/projects/{project['id']}/teams/{team['id']}"
        self.ok("PUT", path, admin, json={"access_level": access_level})

    def generation(self, user: TestUser, key: str | None = None, **fields) -> dict:
        body = {"model_id": MODEL, "prompt": "a lighthouse at dusk", **fields}
        headers = {"Idempotency-Key": key or unique_email("key")}
        return self.ok("POST", "/api/v1/generations", user, 201, json=body, headers=headers)


@contextmanager
def running_api(db_url: str, **settings):
    app = create_app(app_settings(db_url, **settings))
    try:
        yield Api(app, db_url)
    finally:
        close_app(app)


def assert_error(response, status: int, error: str | None = None) -> dict:
    """The common error shape with this status (and machine code, when given)."""
    body = response.get_json()
    assert response.status_code == status, body
    assert set(body) >= {"error", "message", "request_id"}, body
    assert body["request_id"] == response.headers["X-Request-ID"]
    if error is not None:
        assert body["error"] == error, body
    return body


def assert_names_field(body: dict, field: str) -> None:
    """A validation error that names ``field`` (query/header fields carry a location prefix)."""
    names = [key.rsplit(".", 1)[-1] for key in body.get("details", {})]
    assert field in names, body
    assert field in body["message"], body
