"""/auth/v1: GoTrue's routes and JSON, and the official Supabase client against a live server."""

from __future__ import annotations

import jwt
import pytest
from fixtures_app import PASSWORD, counts, unique_email
from supabase_auth.errors import AuthApiError

from supabase import ClientOptions, create_client


def gotrue_error(response, status, error_code):
    body = response.get_json()
    assert response.status_code == status, body
    assert body["code"] == status and body["error_code"] == error_code and body["msg"]
    return body


def signup(client, email=None, password=PASSWORD):
    return client.post(
        "/auth/v1/signup",
        json={"email": email or unique_email(), "password": password, "data": {"plan": "x"}},
    )


# the routes' JSON, through the test client ---------------------------------------------------


def test_signup_answers_a_gotrue_session(client):
    email = unique_email()
    response = signup(client, email)
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert body["expires_at"] > 0 and body["refresh_token"]
    user = body["user"]
    assert user["email"] == email and user["aud"] == "authenticated"
    assert user["app_metadata"] == {"provider": "email", "providers": ["email"]}
    assert user["user_metadata"] == {"plan": "x"}
    assert user["email_confirmed_at"] and user["created_at"]
    assert (
        jwt.decode(body["access_token"], options={"verify_signature": False})["sub"] == user["id"]
    )


def test_duplicate_signup_is_422_user_already_exists(client, user):
    gotrue_error(signup(client, user.email), 422, "user_already_exists")


def test_weak_password_is_422_with_reasons(client, db_url):
    before = counts(db_url)
    body = gotrue_error(signup(client, password="short"), 422, "weak_password")
    assert body["weak_password"] == {"reasons": ["length"]}
    assert counts(db_url) == before


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"email": "not an email", "password": PASSWORD}, 400, "validation_failed"),
        ({"email": 5, "password": PASSWORD}, 400, "bad_json"),
        ({"password": PASSWORD}, 400, "validation_failed"),
        (["not", "an", "object"], 400, "bad_json"),
    ],
)
def test_bad_signup_input(client, db_url, payload, status, code):
    before = counts(db_url)
    gotrue_error(client.post("/auth/v1/signup", json=payload), status, code)
    assert counts(db_url) == before


def test_password_grant_and_failures(client, user):
    ok = client.post(
        "/auth/v1/token?grant_type=password", json={"email": user.email, "password": user.password}
    )
    assert ok.status_code == 200 and ok.get_json()["user"]["id"] == user.id
    wrong = client.post(
        "/auth/v1/token?grant_type=password", json={"email": user.email, "password": "nope-nope"}
    )
    body = gotrue_error(wrong, 400, "invalid_credentials")
    assert body["msg"] == "Invalid login credentials"
    gotrue_error(client.post("/auth/v1/token?grant_type=magic", json={}), 400, "validation_failed")


def test_refresh_token_grant_rotates_and_detects_reuse(client, user):
    url = "/auth/v1/token?grant_type=refresh_token"
    first = client.post(url, json={"refresh_token": user.refresh_token})
    assert first.status_code == 200
    gotrue_error(
        client.post(url, json={"refresh_token": user.refresh_token}),
        400,
        "refresh_token_already_used",
    )
    gotrue_error(
        client.post(url, json={"refresh_token": first.get_json()["refresh_token"]}),
        400,
        "refresh_token_not_found",
    )


def test_user_and_logout_need_a_valid_bearer(client, user):
    gotrue_error(client.get("/auth/v1/user"), 401, "no_authorization")
    gotrue_error(
        client.get("/auth/v1/user", headers={"Authorization": "Bearer x.y.z"}), 403, "bad_jwt"
    )
    assert client.get("/auth/v1/user", headers=user.headers).get_json()["id"] == user.id
    assert client.post("/auth/v1/logout?scope=local", headers=user.headers).status_code == 204
    gotrue_error(client.get("/auth/v1/user", headers=user.headers), 403, "session_not_found")
    gotrue_error(client.post("/auth/v1/logout", headers=user.headers), 403, "session_not_found")


def test_jwks_is_empty_with_hs256(client):
    assert client.get("/auth/v1/.well-known/jwks.json").get_json() == {"keys": []}


# the official client over real HTTP ----------------------------------------------------------


@pytest.fixture
def supabase_client(app, live_server):
    base_url = live_server(app)
    options = ClientOptions(auto_refresh_token=False, persist_session=False)
    client = create_client(base_url, "any-anon-key", options=options)
    yield client
    client.auth.close()


def test_the_official_client_signs_up_in_refreshes_and_out(supabase_client, client):
    auth = supabase_client.auth
    email, password = unique_email("sdk"), PASSWORD

    signed_up = auth.sign_up({"email": email, "password": password})
    assert signed_up.user.email == email and signed_up.session is not None

    signed_in = auth.sign_in_with_password({"email": email, "password": password})
    session = signed_in.session
    assert session.user.id == signed_up.user.id
    assert auth.get_user().user.email == email

    refreshed = auth.refresh_session()
    assert refreshed.session.refresh_token != session.refresh_token
    assert auth.get_user(refreshed.session.access_token).user.id == session.user.id

    auth.sign_out()
    old = refreshed.session.access_token
    with pytest.raises(AuthApiError) as refused:
        auth.get_user(old)
    assert refused.value.code == "session_not_found"
    response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {old}"})
    assert response.status_code == 401


def test_the_official_client_sees_a_failed_sign_in(supabase_client, user):
    with pytest.raises(AuthApiError) as failure:
        supabase_client.auth.sign_in_with_password({"email": user.email, "password": "wrong!!!!"})
    assert failure.value.status == 400
    assert failure.value.code == "invalid_credentials"
    assert failure.value.message == "Invalid login credentials"


def test_the_official_client_sees_a_duplicate_sign_up(supabase_client, user):
    with pytest.raises(AuthApiError) as failure:
        supabase_client.auth.sign_up({"email": user.email, "password": PASSWORD})
    assert (failure.value.status, failure.value.code) == (422, "user_already_exists")
