"""The `velro` operator commands, run with click's CliRunner against a fresh migrated database.

Each test gets its own database (``fresh_db_url``); the commands find it through
$DATABASE_URL, as an operator's shell would give it to them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import bcrypt
import psycopg
import pytest
from click.testing import CliRunner
from fixtures_app import app_settings, query

from backend import close_app, create_app
from backend.cli import main

PASSWORD = "correct horse battery staple"


@pytest.fixture
def velro(fresh_db_url):
    """``velro("user", "create", ..., input=...)`` runs the command on this test's database."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, env={"DATABASE_URL": fresh_db_url})

    return run


@pytest.fixture
def ada(velro, fresh_db_url) -> dict:
    """A user made by `velro user create`; her profile row."""
    result = velro("user", "create", "ada@example.com", "--password-stdin", input=PASSWORD)
    assert result.exit_code == 0, result.output
    return profile(fresh_db_url, "ada@example.com")


def profile(db_url: str, email: str) -> dict:
    (row,) = query(db_url, "select * from public.profiles where email = %s", (email,))
    return row


def snapshot(db_url: str) -> dict:
    """Everything a refused command could have written."""
    return query(
        db_url,
        "select (select count(*) from auth.users) users,"
        " (select json_agg(p order by p.id) from public.profiles p) profiles,"
        " (select count(*) from public.credit_ledger) ledger,"
        " (select count(*) from private.audit_events) audits",
    )[0]


def audit_events(db_url: str, subject_id) -> list[str]:
    rows = query(
        db_url,
        "select event from private.audit_events where subject_id = %s order by id",
        (str(subject_id),),
    )
    return [row["event"] for row in rows]


def refused(result, exit_code: int, message: str) -> None:
    assert result.exit_code == exit_code, result.output
    assert message in result.stderr, result.stderr


# velro user create ---------------------------------------------------------------------


def test_user_create_from_stdin_writes_the_user_as_signup_does(velro, fresh_db_url, monkeypatch):
    monkeypatch.setenv("BCRYPT_COST", "10")  # the app's setting, which the command follows
    result = velro(
        "user",
        "create",
        " Ada@Example.COM ",
        "--password-stdin",
        "--display-name",
        "Ada L",
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    (user,) = query(fresh_db_url, "select * from auth.users")
    assert user["email"] == "ada@example.com"
    assert f"Created user ada@example.com ({user['id']})" in result.stdout
    assert user["encrypted_password"].startswith("$2b$10$")
    assert bcrypt.checkpw(PASSWORD.encode(), user["encrypted_password"].encode())
    assert user["email_confirmed_at"] is not None
    row = profile(fresh_db_url, "ada@example.com")
    assert (row["display_name"], row["status"], row["credits"]) == ("Ada L", "active", 100)
    assert audit_events(fresh_db_url, user["id"]) == ["user.created"]


def test_user_create_with_password_option_defaults_the_display_name(velro, fresh_db_url):
    result = velro("user", "create", "grace@example.com", "--password", PASSWORD)
    assert result.exit_code == 0, result.output
    assert profile(fresh_db_url, "grace@example.com")["display_name"] == "grace"


def test_user_create_asks_for_the_password_twice(velro, fresh_db_url):
    result = velro("user", "create", "alan@example.com", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    (user,) = query(fresh_db_url, "select encrypted_password from auth.users")
    assert bcrypt.checkpw(PASSWORD.encode(), user["encrypted_password"].encode())


BAD_USERS = [
    (["not-an-email", "--password", PASSWORD], "Unable to validate email address"),
    (["bob@example.com", "--password", "short"], "Password should be at least 8 characters"),
    (["bob@example.com", "--password", "x" * 73], "Password cannot be longer than 72 bytes"),
    (["bob@example.com", "--password", PASSWORD, "--display-name", " "], "1 to 100 characters"),
    (["bob@example.com", "--password", PASSWORD, "--display-name", "x" * 101], "1 to 100"),
    (["bob@example.com", "--password", PASSWORD, "--password-stdin"], "not both"),
]


@pytest.mark.parametrize(("args", "message"), BAD_USERS)
def test_bad_user_create_says_what_to_fix_and_writes_nothing(velro, fresh_db_url, args, message):
    before = snapshot(fresh_db_url)
    refused(velro("user", "create", *args, input=PASSWORD), 2, message)
    assert snapshot(fresh_db_url) == before


def test_short_password_from_stdin_is_refused(velro, fresh_db_url):
    before = snapshot(fresh_db_url)
    result = velro("user", "create", "bob@example.com", "--password-stdin", input="short\n")
    refused(result, 2, "at least 8 characters")
    assert snapshot(fresh_db_url) == before


def test_mismatched_confirmation_is_asked_again(velro, fresh_db_url):
    result = velro("user", "create", "bob@example.com", input=f"{PASSWORD}\nother\n")
    assert result.exit_code != 0
    assert "do not match" in result.output
    assert snapshot(fresh_db_url)["users"] == 0


def test_duplicate_user_is_refused_whatever_the_case(velro, fresh_db_url, ada):
    before = snapshot(fresh_db_url)
    result = velro("user", "create", "ADA@example.com", "--password", PASSWORD)
    refused(result, 1, "a user with email ada@example.com already exists")
    assert snapshot(fresh_db_url) == before


# velro credits grant -------------------------------------------------------------------


def test_credits_grant_adds_a_ledger_line_and_an_audit_line(velro, fresh_db_url, ada):
    result = velro("credits", "grant", "ADA@example.com", "250", "--note", "welcome back")
    assert result.exit_code == 0, result.output
    assert "Added 250 credits (grant) to ada@example.com: balance 350." in result.stdout
    assert profile(fresh_db_url, "ada@example.com")["credits"] == 350
    lines = query(
        fresh_db_url,
        "select kind, amount, balance_after, note from public.credit_ledger"
        " where user_id = %s order by created_at, id",
        (ada["id"],),
    )
    assert lines[-1] == {
        "kind": "grant",
        "amount": 250,
        "balance_after": 350,
        "note": "welcome back",
    }
    (line_audit,) = query(
        fresh_db_url,
        "select details from private.audit_events where event = 'credits.grant'"
        " and details ->> 'amount' = '250'",
    )
    assert line_audit["details"]["balance_after"] == 350


def test_credits_grant_records_a_purchase(velro, fresh_db_url, ada):
    result = velro("credits", "grant", "ada@example.com", "1000", "--kind", "purchase")
    assert result.exit_code == 0, result.output
    (line,) = query(
        fresh_db_url, "select amount, note from public.credit_ledger where kind = 'purchase'"
    )
    assert line == {"amount": 1000, "note": None}
    assert "credits.purchase" in audit_events(fresh_db_url, line_id(fresh_db_url, "purchase"))


def line_id(db_url: str, kind: str) -> str:
    (row,) = query(db_url, "select id from public.credit_ledger where kind = %s", (kind,))
    return str(row["id"])


BAD_GRANTS = [
    (["nobody@example.com", "10"], 1, "no user with email nobody@example.com"),
    (["ada@example.com", "0"], 2, "0 is not in the range 1<=x"),
    (["ada@example.com", "-5"], 2, "-5 is not in the range 1<=x"),
    (["ada@example.com", "ten"], 2, "'ten' is not a valid integer"),
    (["ada@example.com", "1.5"], 2, "'1.5' is not a valid integer"),
    (["ada@example.com", "2147483648"], 2, "not in the range"),
    (
        ["ada@example.com", "10", "--kind", "refund"],
        2,
        "'refund' is not one of 'grant', 'purchase'",
    ),
    (["ada@example.com", "10", "--kind", "charge"], 2, "'charge' is not one of"),
    (["ada@example.com"], 2, "Missing argument 'AMOUNT'"),
]


@pytest.mark.parametrize(("args", "exit_code", "message"), BAD_GRANTS)
def test_bad_grant_says_what_to_fix_and_writes_nothing(
    velro, fresh_db_url, ada, args, exit_code, message
):
    before = snapshot(fresh_db_url)
    refused(velro("credits", "grant", *args), exit_code, message)
    assert snapshot(fresh_db_url) == before


def test_a_grant_the_database_refuses_is_reported_and_rolled_back(velro, fresh_db_url, ada):
    # the balance ceiling (max_balance, 1,000,000,000 with the signup grant's 100) is the
    # database's rule, not the command's
    assert velro("credits", "grant", "ada@example.com", str(10**9 - 100)).exit_code == 0
    before = snapshot(fresh_db_url)
    refused(
        velro("credits", "grant", "ada@example.com", "1"),
        1,
        "a balance may hold at most 1000000000 credits",
    )
    assert snapshot(fresh_db_url) == before


# velro user suspend / activate ---------------------------------------------------------


def authorize_as(db_url: str, user_id, generation_id) -> dict:
    """public.authorize_generation as the user, in a PostgREST-style transaction."""
    claims = json.dumps({"sub": str(user_id), "role": "authenticated"})
    with psycopg.connect(db_url) as conn:
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        return conn.execute("select public.authorize_generation(%s)", (generation_id,)).fetchone()[
            0
        ]


@pytest.fixture
def adas_generation(fresh_db_url, ada) -> uuid.UUID:
    generation_id = uuid.uuid4()
    with psycopg.connect(fresh_db_url) as conn:
        conn.execute(
            "insert into public.generations (id, owner_id, model_id, prompt, cost,"
            " idempotency_key) values (%s, %s, 'fal-ai/veo3', 'a cat', 500, 'cli-test')",
            (generation_id, ada["id"]),
        )
    return generation_id


def test_suspend_denies_at_once_and_activate_restores(velro, fresh_db_url, ada, adas_generation):
    assert authorize_as(fresh_db_url, ada["id"], adas_generation)["access_granted"] is True

    result = velro("user", "suspend", "Ada@example.com")
    assert result.exit_code == 0, result.output
    assert "ada@example.com is now suspended." in result.stdout
    assert profile(fresh_db_url, "ada@example.com")["status"] == "suspended"
    denied = authorize_as(fresh_db_url, ada["id"], adas_generation)
    assert denied["access_granted"] is False and denied["permissions"] == []

    result = velro("user", "activate", "ada@example.com")
    assert result.exit_code == 0, result.output
    assert "ada@example.com is now active." in result.stdout
    granted = authorize_as(fresh_db_url, ada["id"], adas_generation)
    assert granted["access_granted"] is True and granted["effective_role"] == "owner"

    assert audit_events(fresh_db_url, ada["id"]) == [
        "user.created",
        "user.suspended",
        "user.activated",
    ]


def test_suspend_tells_the_caches(velro, fresh_db_url, ada):
    with psycopg.connect(fresh_db_url, autocommit=True) as listener:
        listener.execute("listen velro_invalidate")
        assert velro("user", "suspend", "ada@example.com").exit_code == 0
        notices = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=1)]
    assert {"scope": "user", "id": str(ada["id"])} in notices


@pytest.mark.parametrize("command", ["suspend", "activate"])
def test_setting_the_status_a_user_already_has_changes_nothing(velro, fresh_db_url, ada, command):
    if command == "activate":
        assert velro("user", "suspend", "ada@example.com").exit_code == 0
    status = "active" if command == "activate" else "suspended"
    assert velro("user", command, "ada@example.com").exit_code == 0
    before = snapshot(fresh_db_url)
    result = velro("user", command, "ada@example.com")
    assert result.exit_code == 0, result.output
    assert f"ada@example.com is already {status}; nothing changed." in result.stdout
    assert snapshot(fresh_db_url) == before


@pytest.mark.parametrize("command", ["suspend", "activate"])
def test_status_of_an_unknown_email_is_refused(velro, fresh_db_url, ada, command):
    before = snapshot(fresh_db_url)
    refused(velro("user", command, "nobody@example.com"), 1, "no user with email nobody@")
    assert snapshot(fresh_db_url) == before


# velro analytics refresh ---------------------------------------------------------------


def test_analytics_refresh_brings_the_views_up_to_date(velro, fresh_db_url, ada):
    credited = "select credited from analytics.user_credits where user_id = %s"
    assert query(fresh_db_url, credited, (ada["id"],)) == []
    result = velro("analytics", "refresh")
    assert result.exit_code == 0, result.output
    assert "Analytics views refreshed." in result.stdout
    assert query(fresh_db_url, credited, (ada["id"],)) == [{"credited": 100}]


# velro db check-access -----------------------------------------------------------------


def test_check_access_is_quiet_when_the_state_is_exact(velro, fresh_db_url, ada, adas_generation):
    result = velro("db", "check-access")
    assert result.exit_code == 0, result.output
    assert "no drift" in result.stdout


def test_check_access_reports_drift_and_exits_1(velro, fresh_db_url, ada, adas_generation):
    # only a write that bypasses the trigger can make the copy disagree with its project
    with psycopg.connect(fresh_db_url) as conn:
        conn.execute("set local session_replication_role = replica")
        conn.execute(
            "update public.generations set project_is_public = true where id = %s",
            (adas_generation,),
        )
    result = velro("db", "check-access")
    refused(result, 1, "1 row(s) of access state differ from their definition")
    assert f"generation {adas_generation} (project None) holds True, should hold False" in (
        result.stderr
    )


# velro db audit ------------------------------------------------------------------------


def test_db_audit_exits_0_when_every_invariant_holds(velro, fresh_db_url, ada, adas_generation):
    result = velro("db", "audit")
    assert result.exit_code == 0, result.output
    assert "every invariant holds" in result.stdout


def test_db_audit_lists_each_violation_and_exits_1(velro, fresh_db_url, ada, adas_generation):
    # a balance written around move_credits: the ledger no longer sums to it
    with psycopg.connect(fresh_db_url) as conn:
        conn.execute("update public.profiles set credits = credits + 7 where id = %s", (ada["id"],))
    result = velro("db", "audit")
    refused(result, 1, "1 invariant violation(s)")
    assert f"ledger sums to the balance: profile {ada['id']}" in result.stderr


# the console script and the database it talks to ---------------------------------------


def test_db_url_prints_database_url(velro, fresh_db_url):
    result = velro("db", "url")
    assert result.exit_code == 0
    assert result.stdout.strip() == fresh_db_url


def test_an_unreachable_database_is_a_clear_error():
    result = CliRunner().invoke(
        main,
        ["credits", "grant", "ada@example.com", "10"],
        env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"},
    )
    refused(result, 1, "connection")


def test_velro_is_an_installed_console_script():
    # installed next to the interpreter running the tests, by pip install -e '.[dev]'
    velro_script = Path(sys.executable).parent / "velro"
    assert velro_script.exists(), f"no console script at {velro_script}: pip install -e ."
    result = subprocess.run(
        [velro_script, "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    for group in ("analytics", "credits", "db", "user"):
        assert group in result.stdout


def test_a_created_user_signs_in_through_the_api(velro, fresh_db_url, ada):
    application = create_app(app_settings(fresh_db_url))
    try:
        response = application.test_client().post(
            "/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        )
    finally:
        close_app(application)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["user"]["id"] == str(ada["id"])


def test_the_command_does_not_load_the_web_app():
    """`velro` is for operators: importing it loads no route, no web plumbing, no app."""
    web = ("backend.app", "backend.api", "backend.http", "backend.auth.routes", "flask_smorest")
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, backend.cli; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "backend.cli" in loaded
    assert [name for name in loaded if name.startswith(web)] == []
