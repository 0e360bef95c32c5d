"""App fixtures: the Flask app on the run's migrated database, clients, users, live servers.

- ``app`` (session): ``create_app`` on ``db_url`` (local auth, HS256). Read-only config.
- ``make_app(**settings)``: another app with some settings changed; closed after the test.
- ``client``: ``app.test_client()``.
- ``users``: ``users.create(email=None, password=PASSWORD) -> TestUser`` signs a new user
  up through POST /api/v1/auth/signup; ``TestUser.headers`` is the bearer header.
- ``user``: one fresh signed-up user.
- ``query(db_url, sql)`` and ``counts(db_url)``: look at the database behind the API.
- ``live_server(app_or_settings)``: serves an app over real HTTP on 127.0.0.1 and returns
  its base URL; pass a callable ``base_url -> app`` to build the app once the port is known
  (the token issuer is ``<PUBLIC_URL>/auth/v1``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import pytest
import requests
from flask import Flask
from psycopg.rows import dict_row
from werkzeug.serving import make_server

from backend import close_app, create_app

PASSWORD = "correct horse battery staple"
# the development mail catch-all of every app in this run (invitation emails land here)
MAIL_DIR = os.path.join(tempfile.gettempdir(), f"velro-test-mail-{os.getpid()}")


def within_one_clock_minute(seconds_needed: float = 5) -> None:
    """Wait for the next minute when fewer than ``seconds_needed`` are left of this one.

    The in-memory rate limiter's windows start on the clock, a new one every minute for a
    per-minute limit: a request counted just before a minute ends weighs almost nothing
    just after it, and the limit forgets it. A test that counts on a limit holding across
    its requests makes them within one minute.
    """
    left = 60 - time.time() % 60
    if left < seconds_needed:
        time.sleep(left + 0.05)


def app_settings(db_url: str, **overrides) -> dict:
    return {
        "APP_ENV": "test",
        "DATABASE_URL": db_url,
        "DB_POOL_MIN_SIZE": 1,
        "DB_POOL_MAX_SIZE": 4,
        # the suites that test these turn them on; elsewhere they would only add noise:
        # limits would throttle the suite, the async cache would race its revocations
        "RATE_LIMIT_ENABLED": False,
        "CACHE_ENABLED": False,
        "ANALYTICS_REFRESH_SECONDS": 0,
        # sign-ups are confirmed at once, as the demo seed's users are; the confirmation
        # suites turn this off and confirm through POST /auth/v1/verify
        "AUTH_AUTOCONFIRM": True,
        "MAIL_DIR": MAIL_DIR,
        "BCRYPT_COST": 4,  # the minimum: the suite hashes hundreds of passwords
        **overrides,
    }


@pytest.fixture(scope="session", autouse=True)
def mail_dir():
    """The run's mail catch-all, deleted with the run."""
    yield MAIL_DIR
    shutil.rmtree(MAIL_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def app(db_url) -> Flask:
    application = create_app(app_settings(db_url))
    yield application
    close_app(application)


@pytest.fixture
def make_app(db_url):
    made: list[Flask] = []

    def build(**overrides) -> Flask:
        application = create_app(app_settings(db_url, **overrides))
        made.append(application)
        return application

    yield build
    for application in made:
        close_app(application)


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass
class TestUser:
    __test__ = False  # not a test class, whatever pytest thinks of the name

    id: str
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.access_token}"}


def query(db_url: str, sql: str, params=()) -> list[dict]:
    """Rows of a query run as the database owner (to look behind the API)."""
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def counts(db_url) -> dict:
    """How many rows the auth routes could have written."""
    return query(
        db_url,
        "select (select count(*) from auth.users) users, (select count(*) from auth.sessions)"
        " sessions, (select count(*) from auth.refresh_tokens) tokens,"
        " (select count(*) from public.profiles) profiles,"
        " (select count(*) from private.audit_events) audits",
    )[0]


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


class Users:
    def __init__(self, client):
        self._client = client

    def create(self, email: str | None = None, password: str = PASSWORD, **extra) -> TestUser:
        email = email or unique_email()
        response = self._client.post(
            "/api/v1/auth/signup", json={"email": email, "password": password, **extra}
        )
        assert response.status_code == 201, response.get_json()
        body = response.get_json()
        return TestUser(
            body["user"]["id"], email, password, body["access_token"], body["refresh_token"]
        )


@pytest.fixture
def users(client) -> Users:
    return Users(client)


@pytest.fixture
def user(users) -> TestUser:
    return users.create()


@pytest.fixture
def live_server():
    servers = []

    def serve(app_or_builder: Flask | Callable[[str], Flask]) -> str:
        holder: dict = {}

        def dispatch(environ, start_response):
            return holder["app"](environ, start_response)

        server = make_server("127.0.0.1", 0, dispatch, threaded=True)
        base_url = f"http://127.0.0.1:{server.server_port}"
        is_app = isinstance(app_or_builder, Flask)
        holder["app"] = app_or_builder if is_app else app_or_builder(base_url)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return base_url

    yield serve
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def probe_session() -> requests.Session:
    """A session for a test's own calls to a server, on a new connection each time.

    gunicorn closes a keep-alive connection idle for 2 s; a call sent on it at that moment
    is reset rather than answered. A test's own calls sit idle while traffic runs, so they
    ask the server to close each connection after its answer, and never reuse one.
    """
    session = requests.Session()
    session.headers["Connection"] = "close"
    return session
