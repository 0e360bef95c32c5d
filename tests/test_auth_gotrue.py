"""/auth/v1: GoTrue's routes and JSON, and the official Supabase client against a live server."""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
from fixtures_app import PASSWORD, counts, query, unique_email
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


DOTS_BETWEEN_ATS = "a@" + "." * 200_000 + "@"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"email": "not an email", "password": PASSWORD}, 400, "validation_failed"),
        ({"email": "a@localhost", "password": PASSWORD}, 400, "validation_failed"),
        # a shape that made the old address pattern backtrack for seconds per request
        ({"email": DOTS_BETWEEN_ATS, "password": PASSWORD}, 400, "validation_failed"),
        ({"email": 5, "password": PASSWORD}, 400, "bad_json"),
        ({"password": PASSWORD}, 400, "validation_failed"),
        (["not", "an", "object"], 400, "bad_json"),
    ],
)
def test_bad_signup_input(client, db_url, payload, status, code):
    before = counts(db_url)
    gotrue_error(client.post("/auth/v1/signup", json=payload), status, code)
    assert counts(db_url) == before


@pytest.mark.parametrize("body", ["{not json", "[" * 5000, '{"email": ' + "1" * 5000 + "}"])
def test_a_body_json_cannot_read_is_refused_in_gotrues_shape(client, db_url, body):
    before = counts(db_url)
    response = client.post("/auth/v1/signup", data=body, content_type="application/json")
    gotrue_error(response, 400, "bad_json")
    assert counts(db_url) == before


@pytest.mark.parametrize("local_part", ["first..last", "(x)", "a,b"])
def test_an_address_either_api_signs_up_both_sign_in(client, local_part):
    """One rule for addresses on every route: an account GoTrue's sign-up made for an
    address marshmallow's own rule refuses still signs in at /api/v1."""
    address = f"{local_part}.{unique_email()}"
    assert signup(client, address).status_code == 200
    body = {"email": address, "password": PASSWORD}
    assert client.post("/api/v1/auth/login", json=body).status_code == 200
    again = {"email": f"{local_part}.{unique_email()}", "password": PASSWORD}
    assert client.post("/api/v1/auth/signup", json=again).status_code == 201


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


def test_a_wrong_method_or_path_under_auth_v1_answers_in_gotrue_shape(client):
    # routing fails before the blueprint is known: these once came in the common shape,
    # and the 405 without the Allow header HTTP requires (found by the fuzzer)
    response = client.get("/auth/v1/signup")
    gotrue_error(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"POST"}
    gotrue_error(client.delete("/auth/v1/user"), 405, "method_not_allowed")
    gotrue_error(client.get("/auth/v1/nothing-here"), 404, "not_found")
    # elsewhere the common shape still answers
    elsewhere = client.get("/api/v1/nothing-here")
    assert elsewhere.status_code == 404
    assert set(elsewhere.get_json()) == {"error", "message", "request_id"}
    assert client.delete("/api/v1/models").headers["Allow"]


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


# email confirmation (AUTH_AUTOCONFIRM off) ----------------------------------------------------


@pytest.fixture
def confirming(make_app, tmp_path):
    """An app that mails a confirmation code at sign-up, into a folder of the test's own."""
    return make_app(AUTH_AUTOCONFIRM=False, MAIL_DIR=str(tmp_path / "mail"))


def mailed_codes(app) -> list[tuple[str, str]]:
    """(code, token_hash) of every confirmation mail the app wrote, oldest first."""
    folder = Path(app.config["SETTINGS"].MAIL_DIR)
    found = []
    for path in sorted(folder.glob("*.eml")):
        text = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = text.get_content()
        code = re.search(r"^\s+(\d{6})$", body, re.MULTILINE).group(1)
        token_hash = re.search(r'"token_hash": "([0-9a-f]{56})"', body).group(1)
        found.append((code, token_hash))
    return found


def test_signup_with_confirmation_answers_a_confirmed_address_as_a_new_one(confirming, user):
    """As GoTrue with confirmations on: no user_already_exists, a made-up user, no mail."""
    response = signup(confirming.test_client(), user.email)
    assert response.status_code == 200
    body = response.get_json()
    assert "access_token" not in body and body["email"] == user.email
    assert body["id"] != user.id and body["email_confirmed_at"] is None
    assert body["confirmation_sent_at"]
    assert mailed_codes(confirming) == []


def test_signup_with_confirmation_answers_the_user_alone_and_mails_a_code(confirming, db_url):
    client = confirming.test_client()
    email_address = unique_email("confirm")
    response = signup(client, email_address)
    assert response.status_code == 200
    body = response.get_json()
    assert "access_token" not in body and body["email"] == email_address
    assert body["confirmation_sent_at"] and body["email_confirmed_at"] is None
    ((code, token_hash),) = mailed_codes(confirming)
    (row,) = query(
        db_url,
        "select email_confirmed_at, confirmation_token from auth.users where email = %s",
        (email_address,),
    )
    assert row["email_confirmed_at"] is None and row["confirmation_token"] == token_hash
    assert code not in row["confirmation_token"]
    assert (
        query(
            db_url,
            "select 1 from auth.sessions as s join auth.users as u on u.id = s.user_id"
            " where u.email = %s",
            (email_address,),
        )
        == []
    )
    refused = client.post(
        "/auth/v1/token?grant_type=password", json={"email": email_address, "password": PASSWORD}
    )
    assert gotrue_error(refused, 400, "email_not_confirmed")["msg"] == "Email not confirmed"


@pytest.mark.parametrize("by", ["token_hash", "token and email"])
def test_verify_confirms_once_and_signs_in(confirming, db_url, by):
    client = confirming.test_client()
    email_address = unique_email("verify")
    signup(client, email_address)
    ((code, token_hash),) = mailed_codes(confirming)
    if by == "token_hash":
        body = {"type": "signup", "token_hash": token_hash}
    else:
        body = {"type": "email", "token": code, "email": email_address.upper()}
    verified = client.post("/auth/v1/verify", json=body)
    assert verified.status_code == 200, verified.get_json()
    session = verified.get_json()
    assert session["user"]["email_confirmed_at"] and session["refresh_token"]
    me = client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {session['access_token']}"}
    )
    assert me.status_code == 200 and me.get_json()["email"] == email_address
    gotrue_error(client.post("/auth/v1/verify", json=body), 403, "otp_expired")
    signed_in = client.post(
        "/auth/v1/token?grant_type=password", json={"email": email_address, "password": PASSWORD}
    )
    assert signed_in.status_code == 200
    assert query(
        db_url,
        "select 1 from private.audit_events where event = 'auth.email_confirmed' and actor_id = %s",
        (session["user"]["id"],),
    )


def test_a_wrong_or_stale_code_confirms_nothing(confirming, db_url):
    client = confirming.test_client()
    email_address = unique_email("stale")
    signup(client, email_address)
    ((code, _token_hash),) = mailed_codes(confirming)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for body in (
        {"type": "signup", "token": wrong, "email": email_address},
        {"type": "signup", "token": code, "email": unique_email("other")},
        {"type": "signup", "token": code, "email": DOTS_BETWEEN_ATS},
        {"type": "signup", "token_hash": "0" * 56},
    ):
        gotrue_error(client.post("/auth/v1/verify", json=body), 403, "otp_expired")
    query(
        db_url,
        "update auth.users set confirmation_sent_at = now() - interval '61 minutes'"
        " where email = %s returning id",
        (email_address,),
    )
    body = {"type": "signup", "token": code, "email": email_address}
    gotrue_error(client.post("/auth/v1/verify", json=body), 403, "otp_expired")
    (row,) = query(
        db_url, "select email_confirmed_at from auth.users where email = %s", (email_address,)
    )
    assert row["email_confirmed_at"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"type": "recovery", "token_hash": "x"},
        {"token_hash": "x"},
        {"type": "signup"},
        {"type": "signup", "token": "123456"},
        {"type": "signup", "token": 123456, "email": "a@example.com"},
    ],
)
def test_verify_refuses_bad_input(confirming, body):
    response = confirming.test_client().post("/auth/v1/verify", json=body)
    assert response.status_code == 400
    assert response.get_json()["error_code"] in ("validation_failed", "bad_json")


def test_resend_mails_a_new_code_and_the_old_one_stops_working(confirming):
    client = confirming.test_client()
    email_address = unique_email("resend")
    signup(client, email_address)
    resent = client.post("/auth/v1/resend", json={"type": "signup", "email": email_address})
    assert resent.status_code == 200 and resent.get_json() == {}
    (old_code, _), (new_code, _) = mailed_codes(confirming)
    old = {"type": "signup", "token": old_code, "email": email_address}
    if old_code != new_code:  # one in a million they are equal
        gotrue_error(client.post("/auth/v1/verify", json=old), 403, "otp_expired")
    new = {"type": "signup", "token": new_code, "email": email_address}
    assert client.post("/auth/v1/verify", json=new).status_code == 200


def test_resend_says_the_same_for_unknown_and_confirmed_addresses(confirming, user):
    client = confirming.test_client()
    for address in (unique_email("nobody"), user.email):
        response = client.post("/auth/v1/resend", json={"type": "signup", "email": address})
        assert response.status_code == 200 and response.get_json() == {}
    assert mailed_codes(confirming) == []


def test_a_confirmation_that_cannot_be_mailed_undoes_the_sign_up(make_app, tmp_path, db_url):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the mail folder should be")
    app = make_app(AUTH_AUTOCONFIRM=False, MAIL_DIR=str(blocked))
    before = counts(db_url)
    gotrue_error(signup(app.test_client()), 503, "mail_unavailable")
    assert counts(db_url) == before


def test_the_official_client_confirms_by_code(confirming, live_server):
    base_url = live_server(confirming)
    options = ClientOptions(auto_refresh_token=False, persist_session=False)
    client = create_client(base_url, "any-anon-key", options=options)
    try:
        auth = client.auth
        email_address = unique_email("sdk-confirm")
        signed_up = auth.sign_up({"email": email_address, "password": PASSWORD})
        assert signed_up.session is None and signed_up.user.email == email_address
        auth.resend({"type": "signup", "email": email_address})
        code, _token_hash = mailed_codes(confirming)[-1]
        verified = auth.verify_otp({"email": email_address, "token": code, "type": "signup"})
        assert verified.session is not None and verified.user.email_confirmed_at
        assert auth.get_user(verified.session.access_token).user.email == email_address
    finally:
        client.auth.close()


def test_after_five_wrong_codes_the_address_takes_codes_no_more(confirming, db_url):
    client = confirming.test_client()
    email_address = unique_email("guess")
    signup(client, email_address)
    ((code, token_hash),) = mailed_codes(confirming)
    wrong = [f"{(int(code) + n) % 1_000_000:06d}" for n in range(1, 6)]
    for guess in wrong:
        body = {"type": "signup", "token": guess, "email": email_address}
        gotrue_error(client.post("/auth/v1/verify", json=body), 403, "otp_expired")
    right = {"type": "signup", "token": code, "email": email_address}
    gotrue_error(client.post("/auth/v1/verify", json=right), 429, "over_request_rate_limit")
    (row,) = query(
        db_url, "select email_confirmed_at from auth.users where email = %s", (email_address,)
    )
    assert row["email_confirmed_at"] is None
    # nor does any other way of sending the same guess: the address split differently from
    # the code, or the token_hash GoTrue would derive from the address and the code
    split = {"type": "signup", "token": email_address[-1] + code, "email": email_address[:-1]}
    gotrue_error(client.post("/auth/v1/verify", json=split), 403, "otp_expired")
    derived = hashlib.sha224(f"{email_address}{code}".encode()).hexdigest()
    for guess in (derived, hashlib.sha224(f"{email_address}\n{code}".encode()).hexdigest()):
        body = {"type": "signup", "token_hash": guess}
        gotrue_error(client.post("/auth/v1/verify", json=body), 403, "otp_expired")
    (row,) = query(
        db_url, "select email_confirmed_at from auth.users where email = %s", (email_address,)
    )
    assert row["email_confirmed_at"] is None
    by_hash = client.post("/auth/v1/verify", json={"type": "signup", "token_hash": token_hash})
    assert by_hash.status_code == 200


def test_wrong_codes_sent_at_once_are_counted_one_after_the_other(confirming, db_url):
    """Twelve wrong codes at once, each on its own connection: five are tried, the others are
    refused as too many, and the right code is then refused too."""
    email_address = unique_email("burst")
    signup(confirming.test_client(), email_address)
    ((code, _token_hash),) = mailed_codes(confirming)
    guesses = [f"{(int(code) + n) % 1_000_000:06d}" for n in range(1, 13)]
    barrier = threading.Barrier(len(guesses))

    def guess(token: str):
        barrier.wait()
        body = {"type": "signup", "token": token, "email": email_address}
        return confirming.test_client().post("/auth/v1/verify", json=body).status_code

    with ThreadPoolExecutor(len(guesses)) as pool:
        answers = sorted(pool.map(guess, guesses))
    assert answers == [403] * 5 + [429] * 7
    right = {"type": "signup", "token": code, "email": email_address}
    client = confirming.test_client()
    gotrue_error(client.post("/auth/v1/verify", json=right), 429, "over_request_rate_limit")


def test_a_second_sign_up_of_an_unconfirmed_address_changes_nothing_but_the_code(confirming):
    """A sign-up cannot prove who claims an address: it mails a new code to the address and
    leaves the account as it was (its password), as GoTrue does."""
    client = confirming.test_client()
    address = unique_email("claimed")
    signup(client, address, password=PASSWORD)
    signup(client, address, password="someone else's password")
    code, _token_hash = mailed_codes(confirming)[-1]
    body = {"type": "signup", "token": code, "email": address}
    assert client.post("/auth/v1/verify", json=body).status_code == 200
    other = {"email": address, "password": "someone else's password"}
    gotrue_error(
        client.post("/auth/v1/token?grant_type=password", json=other), 400, "invalid_credentials"
    )
    first = {"email": address, "password": PASSWORD}
    assert client.post("/auth/v1/token?grant_type=password", json=first).status_code == 200
