"""Defaults that fail closed: the production start, operator-only details, sessions that end
with their account."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from api_support import MODEL, assert_error, running_api
from fixtures_app import app_settings

from backend import close_app, create_app
from backend.cli.migrations import REPO_ROOT
from harness.servers import free_port, procfile_command

METRICS_TOKEN = "m" * 40
PRODUCTION = {
    "APP_ENV": "production",
    "JWT_SECRET": "p" * 40,
    "FAL_KEY": "fal-test-key",
    "PUBLIC_URL": "https://api.velro.example",
    "SMTP_HOST": "smtp.velro.example",
    "SMTP_SENDER": "Velro <no-reply@velro.example>",
}


def test_the_procfile_web_process_refuses_to_start_without_secrets(db_url):
    """Only a database is given, as on a platform where nobody set the secrets yet."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "DATABASE_URL": db_url,
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
    }
    started = subprocess.run(
        ["bash", "-c", f"exec {procfile_command('web')}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = started.stdout + started.stderr
    assert started.returncode != 0, output
    assert "JWT_SECRET is the public default" in output
    assert "FAL_KEY is not set" in output


# operator-only details ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(database_factory, migrated_template):
    with running_api(database_factory(migrated_template)) as running:
        yield running


@pytest.fixture
def production_client(api):
    app = create_app(app_settings(api.db_url, **PRODUCTION, METRICS_TOKEN=METRICS_TOKEN))
    yield app.test_client()
    close_app(app)


def sign_in(client, user) -> str:
    response = client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": user.password}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def test_in_production_cache_details_need_an_operator(api, production_client):
    user, admin = api.user("plain"), api.user("operator")
    api.sql(
        'update auth.users set raw_app_meta_data = \'{"role": "admin"}\' where id = %s',
        (admin.id,),
    )
    path = "/api/v1/health/cache"

    def get(token=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return production_client.get(path, headers=headers)

    assert_error(get(), 401, "invalid_token")
    assert_error(get("m" * 39), 401, "invalid_token")
    assert_error(get(sign_in(production_client, user)), 403, "forbidden")
    assert get(METRICS_TOKEN).status_code == 200
    assert "l1" in get(sign_in(production_client, admin)).get_json()
    assert production_client.get("/api/v1/health/live").status_code == 200, "probes stay open"


def test_locally_without_a_metrics_token_details_are_open(api, make_app):
    assert api.client.get("/api/v1/health/cache").status_code == 200
    guarded = make_app(METRICS_TOKEN=METRICS_TOKEN).test_client()
    assert_error(guarded.get("/api/v1/health/cache"), 401)
    answer = guarded.get(
        "/api/v1/health/cache", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert answer.status_code == 200


# sessions end with their account -------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("banned_until = now() + interval '1 day'", "user_banned"),
        ("deleted_at = now()", "user_not_found"),
    ],
)
def test_a_refresh_checks_bans_and_deletion_as_sign_in_does(api, change, code):
    user = api.user("refresher")
    api.sql(f"update auth.users set {change} where id = %s", (user.id,))  # noqa: S608
    response = api.client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    error = assert_error(response, 401 if code == "user_not_found" else 400, code)
    assert "suspended" not in error["message"]
    gotrue = api.client.post(
        "/auth/v1/token?grant_type=refresh_token",
        json={"refresh_token": user.refresh_token},
        headers={"apikey": "x"},
    )
    assert gotrue.status_code == 400
    assert gotrue.get_json()["error_code"] == code
    api.sql(
        "update auth.users set banned_until = null, deleted_at = null where id = %s", (user.id,)
    )
    again = api.client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert again.status_code == 200, "the refused refresh did not use the token up"


def test_a_deleted_accounts_token_is_told_the_account_does_not_exist(api):
    user = api.user("leaver")
    api.sql("delete from public.profiles where id = %s", (user.id,))  # the account's data is gone
    error = assert_error(api.call("GET", "/api/v1/auth/me", user), 401, "account_not_found")
    assert re.search("does not exist", error["message"])
    created = api.call("POST", "/api/v1/generations", user, json={"model_id": MODEL, "prompt": "x"})
    error = assert_error(created, 401)
    assert "does not exist" in error["message"] and "suspended" not in error["message"]
