"""AUTH_MODE=supabase: /api/v1/auth goes to Supabase Auth through the official client.

The Supabase Auth here is a second instance of this app, running the local provider and
signing ES256 tokens, served over real HTTP; both share the database, as Supabase Auth and
Postgres do.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fixtures_app import PASSWORD, unique_email


def es256_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def supabase_url(make_app, live_server):
    """A stand-in Supabase Auth: this app with the local provider, on a real port."""
    return live_server(lambda base_url: make_app(PUBLIC_URL=base_url, JWT_PRIVATE_KEY=es256_pem()))


@pytest.fixture
def api(make_app, supabase_url):
    app = make_app(AUTH_MODE="supabase", SUPABASE_URL=supabase_url, SUPABASE_ANON_KEY="anon")
    return app.test_client()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_signup_me_refresh_logout_through_supabase_auth(api, supabase_url):
    email = unique_email("supa")
    signup = api.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert signup.status_code == 201, signup.get_json()
    session = signup.get_json()
    header = jwt.get_unverified_header(session["access_token"])
    assert header["alg"] == "ES256"  # verified with the key fetched from the JWKS
    claims = jwt.decode(session["access_token"], options={"verify_signature": False})
    assert claims["iss"] == f"{supabase_url}/auth/v1"

    me = api.get("/api/v1/auth/me", headers=bearer(session["access_token"]))
    assert me.status_code == 200 and me.get_json()["email"] == email

    login = api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200

    refreshed = api.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert refreshed.status_code == 200
    replay = api.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert replay.status_code == 401
    assert replay.get_json()["error"] == "refresh_token_already_used"

    token = login.get_json()["access_token"]
    assert api.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204
    gone = api.get("/api/v1/auth/me", headers=bearer(token))
    assert gone.status_code == 401 and gone.get_json()["error"] == "invalid_token"


def test_supabase_failures_in_our_error_shape(api, user):
    wrong = api.post("/api/v1/auth/login", json={"email": user.email, "password": "wrong-pass"})
    assert wrong.status_code == 401
    assert wrong.get_json()["error"] == "invalid_credentials"
    duplicate = api.post("/api/v1/auth/signup", json={"email": user.email, "password": PASSWORD})
    assert duplicate.status_code == 409
    assert duplicate.get_json()["error"] == "user_already_exists"


def test_hs256_tokens_of_the_shared_secret_are_refused_for_the_wrong_issuer(api, user):
    # the app's own local tokens name http://localhost:8000/auth/v1 as issuer
    response = api.get("/api/v1/auth/me", headers=user.headers)
    assert response.status_code == 401


def test_no_gotrue_routes_in_supabase_mode(api):
    assert api.get("/auth/v1/.well-known/jwks.json").status_code == 404


def test_an_unreachable_supabase_is_503(make_app):
    app = make_app(AUTH_MODE="supabase", SUPABASE_URL="http://127.0.0.1:9", SUPABASE_ANON_KEY="a")
    response = app.test_client().post(
        "/api/v1/auth/login", json={"email": "a@example.com", "password": PASSWORD}
    )
    assert response.status_code == 503
    assert response.get_json()["error"] == "unavailable"


class BrokenAuth:
    """Supabase Auth answering every request with one status, body and content type."""

    def __init__(self):
        self.answer = (500, b"", "text/plain")
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body, content_type = owner.answer
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


INTERNAL = "Database error querying schema: relation auth.secret_table does not exist"


@pytest.mark.parametrize(
    ("answer", "status", "error"),
    [
        ((500, b"<html>Internal Server Error</html>", "text/html"), 503, "unavailable"),
        (
            (
                500,
                json.dumps(
                    {"code": 500, "error_code": "unexpected_failure", "msg": INTERNAL}
                ).encode(),
                "application/json",
            ),
            503,
            "unavailable",
        ),
        ((502, json.dumps({"message": INTERNAL}).encode(), "application/json"), 503, "unavailable"),
        ((429, b"Too Many Requests", "text/plain"), 429, "over_request_rate_limit"),
    ],
)
def test_supabase_auth_failing_is_not_passed_on_word_for_word(make_app, answer, status, error):
    broken = BrokenAuth()
    try:
        broken.answer = answer
        app = make_app(AUTH_MODE="supabase", SUPABASE_URL=broken.url, SUPABASE_ANON_KEY="a")
        response = app.test_client().post(
            "/api/v1/auth/login", json={"email": "a@example.com", "password": PASSWORD}
        )
    finally:
        broken.close()
    body = response.get_json()
    assert (response.status_code, body["error"]) == (status, error)
    assert INTERNAL not in body["message"] and broken.url not in body["message"]
