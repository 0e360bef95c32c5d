"""/api/v1/auth with the local provider, against the real database."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import pytest
from fixtures_app import PASSWORD, counts, query, unique_email

from backend.auth.providers import local


def assert_error(response, status, error):
    body = response.get_json()
    assert response.status_code == status, body
    assert body["error"] == error
    assert body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


# sign-up -----------------------------------------------------------------------------------


def test_signup_creates_user_profile_session_and_grant(client, db_url):
    email = unique_email("Mixed.Case").replace("mixed.case", "Mixed.Case")
    response = client.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201
    body = response.get_json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert body["user"]["email"] == email.lower()

    (row,) = query(db_url, "select * from auth.users where id = %s", (body["user"]["id"],))
    assert row["email"] == email.lower()
    # bcrypt at the suite's BCRYPT_COST, 4; the default is GoTrue's 10 (test_config)
    assert row["encrypted_password"].startswith("$2b$04$")
    assert bcrypt.checkpw(PASSWORD.encode(), row["encrypted_password"].encode())
    assert row["email_confirmed_at"] is not None
    assert row["raw_app_meta_data"] == {"provider": "email", "providers": ["email"]}
    (profile,) = query(db_url, "select * from public.profiles where id = %s", (row["id"],))
    assert profile["credits"] == 100 and profile["status"] == "active"
    assert query(db_url, "select 1 from auth.sessions where user_id = %s", (row["id"],))


def test_signup_keeps_display_name(client, db_url):
    email = unique_email()
    response = client.post(
        "/api/v1/auth/signup", json={"email": email, "password": PASSWORD, "display_name": "Ada"}
    )
    assert response.status_code == 201
    (profile,) = query(
        db_url, "select display_name from public.profiles where email = %s", (email,)
    )
    assert profile["display_name"] == "Ada"


def test_duplicate_signup_is_a_conflict_and_writes_nothing(client, user, db_url):
    before = counts(db_url)
    response = client.post(
        "/api/v1/auth/signup", json={"email": user.email.upper(), "password": PASSWORD}
    )
    assert_error(response, 409, "user_already_exists")
    assert counts(db_url) == before


BAD_SIGNUPS = [
    ({}, ["email", "password"]),
    ({"email": "ada@example.com"}, ["password"]),
    ({"password": PASSWORD}, ["email"]),
    ({"email": "not-an-email", "password": PASSWORD}, ["email"]),
    ({"email": "ada@example.com", "password": "short"}, ["password"]),
    ({"email": "ada@example.com", "password": "x" * 73}, ["password"]),
    ({"email": 42, "password": PASSWORD}, ["email"]),
    ({"email": "ada@example.com", "password": ["a", "list"]}, ["password"]),
    ({"email": "ada@example.com", "password": PASSWORD, "display_name": ""}, ["display_name"]),
    ({"email": "ada@example.com", "password": PASSWORD, "role": "admin"}, ["role"]),
]


@pytest.mark.parametrize(("body", "fields"), BAD_SIGNUPS)
def test_bad_signup_names_the_field_and_writes_nothing(client, db_url, body, fields):
    before = counts(db_url)
    response = client.post("/api/v1/auth/signup", json=body)
    error = assert_error(response, 422, "validation_failed")
    assert sorted(error["details"]) == sorted(fields)
    for field in fields:
        assert field in error["message"]
    assert counts(db_url) == before


@pytest.mark.parametrize(
    "route", ["/api/v1/auth/signup", "/api/v1/auth/login", "/api/v1/auth/refresh"]
)
def test_body_that_is_not_json_is_refused(client, db_url, route):
    before = counts(db_url)
    # malformed; nested past json's recursion limit; an integer past Python's digit limit
    for body in ("{not json", "[" * 5000, '{"email": ' + "1" * 5000 + "}"):
        response = client.post(route, data=body, content_type="application/json")
        assert_error(response, 400, "invalid_json")
    response = client.post(route, json=["a", "list"])
    assert_error(response, 422, "validation_failed")
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = client.post(route, data='{"email": "a@example.com"}', content_type=content_type)
        body = assert_error(response, 422, "validation_failed")
        assert f"sent as {content_type}: send it as JSON" in body["message"]
    assert counts(db_url) == before


# sign-in -----------------------------------------------------------------------------------


def test_signup_with_confirmation_has_no_tokens_until_the_email_is_confirmed(
    make_app, tmp_path, db_url
):
    app = make_app(AUTH_AUTOCONFIRM=False, MAIL_DIR=str(tmp_path))
    client = app.test_client()
    email = unique_email("pending")
    credentials = {"email": email, "password": PASSWORD}
    response = client.post("/api/v1/auth/signup", json=credentials)
    assert response.status_code == 201
    body = response.get_json()
    assert [body[k] for k in ("access_token", "refresh_token", "token_type")] == [None] * 3
    assert body["user"]["email"] == email and body["user"]["confirmation_sent_at"]
    assert body["user"]["email_confirmed_at"] is None
    (mail,) = tmp_path.glob("*.eml")
    assert email in mail.read_text()
    assert_error(client.post("/api/v1/auth/login", json=credentials), 403, "email_not_confirmed")
    (profile,) = query(db_url, "select credits from public.profiles where email = %s", (email,))
    assert profile["credits"] == 100


def test_with_confirmations_a_taken_address_is_answered_as_a_new_one(make_app, tmp_path, db_url):
    """Sign-up does not tell who has an account: a confirmed account's address gets the
    answer a new address gets, and nothing is written or mailed for it; an unconfirmed one
    gets a new code, as a repeated sign-up would."""
    client = make_app(AUTH_AUTOCONFIRM=False, MAIL_DIR=str(tmp_path)).test_client()

    def signup(email):
        response = client.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201
        return response.get_json()

    def shape(body):  # everything but what differs between any two new sign-ups
        user = {
            k: v for k, v in body["user"].items() if k not in ("id", "email") and "_at" not in k
        }
        stamps = sorted(k for k, v in body["user"].items() if "_at" in k and v is not None)
        return {**body, "user": user}, stamps

    fresh = signup(unique_email("fresh"))
    pending = unique_email("pending")
    first = signup(pending)
    taken = unique_email("taken")
    signup(taken)
    query(
        db_url,
        "update auth.users set email_confirmed_at = now() where email = %s returning id",
        (taken,),
    )
    mails = len(list(tmp_path.glob("*.eml")))
    before = counts(db_url)

    answer = signup(taken.upper())
    assert shape(answer) == shape(fresh)
    assert answer["user"]["email"] == taken
    (real,) = query(db_url, "select id from auth.users where email = %s", (taken,))
    assert answer["user"]["id"] != str(real["id"])
    assert counts(db_url) == before
    assert len(list(tmp_path.glob("*.eml"))) == mails, "nothing is mailed to the account"

    again = signup(pending)
    assert shape(again) == shape(fresh)
    assert again["user"]["id"] == first["user"]["id"]
    assert len(list(tmp_path.glob("*.eml"))) == mails + 1, "the unconfirmed address gets a code"


@pytest.mark.parametrize("length", [254, 255])
def test_emails_are_at_most_254_characters(client, length):
    email = "a" * (length - len("@example.com")) + "@example.com"
    response = client.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
    if length == 254:
        assert response.status_code == 201
    else:
        assert_error(response, 422, "validation_failed")


def test_login_issues_a_new_session_and_is_audited(client, user, db_url):
    response = client.post(
        "/api/v1/auth/login", json={"email": user.email.upper(), "password": user.password}
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["user"]["id"] == user.id
    assert body["access_token"] != user.access_token
    sessions = query(db_url, "select id from auth.sessions where user_id = %s", (user.id,))
    assert len(sessions) == 2
    events = query(
        db_url,
        "select event from private.audit_events where actor_id = %s order by id",
        (user.id,),
    )
    assert [e["event"] for e in events][-1] == "auth.login"


def test_wrong_password_is_refused_and_audited(client, user, db_url):
    response = client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": "wrong password!"}
    )
    assert_error(response, 401, "invalid_credentials")
    (event,) = query(
        db_url,
        "select * from private.audit_events where event = 'auth.login_failed' and actor_id = %s",
        (user.id,),
    )
    assert event["details"]["email"] == user.email


def test_unknown_email_is_refused_like_a_wrong_password(client, db_url):
    email = unique_email("ghost")
    response = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    body = assert_error(response, 401, "invalid_credentials")
    assert body["message"] == "Invalid login credentials"
    assert query(
        db_url,
        "select 1 from private.audit_events where event = 'auth.login_failed'"
        " and details ->> 'email' = %s and actor_id is null",
        (email,),
    )


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["email", "password"]),
        ({"email": "x@example.com"}, ["password"]),
        ({"email": "nope", "password": PASSWORD}, ["email"]),
        ({"email": "x@example.com", "password": 12345678}, ["password"]),
    ],
)
def test_bad_login_input(client, db_url, body, fields):
    before = counts(db_url)
    response = client.post("/api/v1/auth/login", json=body)
    error = assert_error(response, 422, "validation_failed")
    assert sorted(error["details"]) == sorted(fields)
    assert counts(db_url) == before


# refresh -----------------------------------------------------------------------------------


def test_refresh_rotates_the_token(client, user, db_url):
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert response.status_code == 200
    body = response.get_json()
    assert body["refresh_token"] != user.refresh_token
    tokens = query(
        db_url,
        "select token, revoked, parent from auth.refresh_tokens where user_id = %s order by id",
        (user.id,),
    )
    assert [t["revoked"] for t in tokens] == [True, False]
    assert tokens[1]["parent"] == tokens[0]["token"]
    assert user.refresh_token not in {t["token"] for t in tokens}  # stored hashed
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200


def test_replayed_refresh_token_revokes_the_whole_session(client, user, db_url):
    first = client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    new = first.get_json()
    replay = client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert_error(replay, 401, "refresh_token_already_used")
    assert not query(db_url, "select 1 from auth.sessions where user_id = %s", (user.id,))
    # every token of that session is dead: the new refresh token and both access tokens
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert_error(again, 401, "refresh_token_not_found")
    for token in (user.access_token, new["access_token"]):
        me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert_error(me, 401, "invalid_token")
    assert query(
        db_url,
        "select 1 from private.audit_events where event = 'auth.refresh_token_reused'"
        " and actor_id = %s",
        (user.id,),
    )


def test_two_refreshes_racing_with_one_token_are_a_reuse(client, users, db_url):
    """Sent at once on two connections: one rotates, the other waits for the token's lock,
    finds it used and ends the session, as any reuse does; never both succeed."""
    for _ in range(5):
        user = users.create()
        barrier = threading.Barrier(2)

        def refresh(user=user, barrier=barrier):
            barrier.wait()
            body = {"refresh_token": user.refresh_token}
            return client.application.test_client().post("/api/v1/auth/refresh", json=body)

        with ThreadPoolExecutor(2) as pool:
            answers = [future.result() for future in [pool.submit(refresh) for _ in range(2)]]
        assert sorted(answer.status_code for answer in answers) == [200, 401]
        [loser] = [answer for answer in answers if answer.status_code == 401]
        assert loser.get_json()["error"] == "refresh_token_already_used"
        assert not query(db_url, "select 1 from auth.sessions where user_id = %s", (user.id,))


@pytest.mark.parametrize("ending", ["logout", "reuse"])
def test_a_refresh_and_the_end_of_its_session_at_once_both_answer(
    client, users, db_url, monkeypatch, ending
):
    """The refresh has locked what it rotates when a logout (or a reuse of an older token of
    the session) deletes the session: one waits for the other, neither fails on a deadlock,
    and the session ends, the refreshed tokens with it."""
    user = users.create()
    older = user.refresh_token
    first = client.post("/api/v1/auth/refresh", json={"refresh_token": older}).get_json()
    rotating, ended = threading.Event(), threading.Event()
    original = local._rotate

    def paused_rotate(cur, row):
        rotating.set()
        assert ended.wait(10)
        return original(cur, row)

    monkeypatch.setattr(local, "_rotate", paused_rotate)

    def refresh():
        body = {"refresh_token": first["refresh_token"]}
        return client.application.test_client().post("/api/v1/auth/refresh", json=body)

    def end_the_session():
        assert rotating.wait(10)
        caller = client.application.test_client()
        ending_thread = threading.Thread(
            target=lambda: answers.update(
                ended=caller.post("/api/v1/auth/logout", headers=bearer(first))
                if ending == "logout"
                else caller.post("/api/v1/auth/refresh", json={"refresh_token": older})
            )
        )
        ending_thread.start()
        wait_for_a_lock_wait(db_url)
        ended.set()
        ending_thread.join(10)

    answers: dict = {}
    with ThreadPoolExecutor(2) as pool:
        refreshed = pool.submit(refresh)
        pool.submit(end_the_session).result()
        answers["refreshed"] = refreshed.result()
    assert answers["refreshed"].status_code == 200
    expected = 204 if ending == "logout" else 401
    assert answers["ended"].status_code == expected, answers["ended"].get_json()
    assert not query(db_url, "select 1 from auth.sessions where user_id = %s", (user.id,))
    renewed = answers["refreshed"].get_json()
    assert client.get("/api/v1/auth/me", headers=bearer(renewed)).status_code == 401


def bearer(session: dict) -> dict:
    return {"Authorization": f"Bearer {session['access_token']}"}


def wait_for_a_lock_wait(db_url: str) -> None:
    """Until some backend of this database waits for a row lock: the interleaving is set."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        waiting = query(
            db_url,
            "select 1 from pg_stat_activity where datname = current_database()"
            " and wait_event_type = 'Lock'",
        )
        if waiting:
            return
        time.sleep(0.01)
    pytest.fail("the session's end never waited for the refresh's lock")


@pytest.mark.parametrize("body", [{}, {"refresh_token": ""}, {"refresh_token": 5}])
def test_bad_refresh_input(client, db_url, body):
    before = counts(db_url)
    response = client.post("/api/v1/auth/refresh", json=body)
    error = assert_error(response, 422, "validation_failed")
    assert list(error["details"]) == ["refresh_token"]
    assert counts(db_url) == before


def test_unknown_refresh_token(client):
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"})
    assert_error(response, 401, "refresh_token_not_found")


# sign-out and me ---------------------------------------------------------------------------


def test_logout_ends_the_session_at_once(client, user, db_url):
    response = client.post("/api/v1/auth/logout", headers=user.headers)
    assert response.status_code == 204
    me = client.get("/api/v1/auth/me", headers=user.headers)
    body = assert_error(me, 401, "invalid_token")
    assert me.headers["WWW-Authenticate"].startswith("Bearer")
    assert "session" in body["message"]
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert_error(refresh, 401, "refresh_token_not_found")
    again = client.post("/api/v1/auth/logout", headers=user.headers)
    assert_error(again, 401, "invalid_token")


@pytest.mark.parametrize(
    ("scope", "survivors"), [("local", {"other"}), ("others", {"this"}), ("global", set())]
)
def test_logout_scopes(client, user, scope, survivors):
    login = client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
    sessions = {
        "this": user.headers,
        "other": {"Authorization": f"Bearer {login.get_json()['access_token']}"},
    }
    response = client.post(f"/api/v1/auth/logout?scope={scope}", headers=sessions["this"])
    assert response.status_code == 204
    alive = {
        name
        for name, headers in sessions.items()
        if client.get("/api/v1/auth/me", headers=headers).status_code == 200
    }
    assert alive == survivors


def test_logout_with_a_bad_scope_changes_nothing(client, user):
    response = client.post("/api/v1/auth/logout?scope=everyone", headers=user.headers)
    error = assert_error(response, 422, "validation_failed")
    assert list(error["details"]) == ["query.scope"]
    assert client.get("/api/v1/auth/me", headers=user.headers).status_code == 200


def test_me_reads_the_profile_through_rls(client, user):
    response = client.get("/api/v1/auth/me", headers=user.headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == user.id and body["email"] == user.email
    assert body["credits"] == 100 and body["plan"] == "free" and body["status"] == "active"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer not.a.jwt"},
    ],
)
def test_me_without_a_valid_token(client, headers):
    response = client.get("/api/v1/auth/me", headers=headers)
    assert_error(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_no_token_is_401_before_any_validation(client):
    response = client.post("/api/v1/auth/logout?scope=everyone")
    assert_error(response, 401, "invalid_token")
