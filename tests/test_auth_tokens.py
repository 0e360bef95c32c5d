"""Token verification: HS256, ES256/RS256 from a JWKS over real HTTP, rotation, refusals."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from test_config import PRODUCTION

from backend.auth import tokens
from backend.auth.tokens import public_jwk
from backend.config import DEFAULT_JWT_SECRET, ConfigError, load_settings


def claims_of(user) -> dict:
    return jwt.decode(user.access_token, options={"verify_signature": False})


def me(client, token):
    return client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


def assert_refused(response, words=""):
    body = response.get_json()
    assert response.status_code == 401, body
    assert body["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert words.lower() in body["message"].lower()


def hs256(claims, secret=DEFAULT_JWT_SECRET, **headers):
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


# HS256 and the claims ----------------------------------------------------------------------


def test_the_issued_token_is_supabase_shaped(user, app):
    claims = claims_of(user)
    assert claims["iss"] == "http://localhost:8000/auth/v1"
    assert claims["aud"] == "authenticated" and claims["role"] == "authenticated"
    assert claims["sub"] == user.id and claims["email"] == user.email
    assert claims["aal"] == "aal1" and claims["is_anonymous"] is False
    assert claims["exp"] - claims["iat"] == 3600
    assert {"session_id", "app_metadata", "user_metadata", "amr"} <= set(claims)
    assert jwt.get_unverified_header(user.access_token)["alg"] == "HS256"


def test_a_re_signed_token_with_the_secret_is_accepted(client, user):
    assert me(client, hs256(claims_of(user))).status_code == 200


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"exp": -60}, "expired"),
        ({"aud": "anon"}, "audience"),
        ({"iss": "https://evil.example/auth/v1"}, "issued"),
        ({"role": "anon"}, "signed-in user"),
        ({"role": "service_role"}, "signed-in user"),
        ({"sub": "not-a-uuid"}, "uuid"),
        ({"session_id": None}, "session_id"),
        ({"sub": None}, "sub"),
    ],
)
def test_tokens_with_bad_claims_are_refused(client, user, change, words):
    claims = claims_of(user)
    for name, value in change.items():
        if value is None:
            claims.pop(name)
        elif name == "exp":
            claims["exp"] = int(time.time()) + value
        else:
            claims[name] = value
    assert_refused(me(client, hs256(claims)), words)


def test_expiry_has_a_small_leeway(client, user):
    claims = {**claims_of(user), "exp": int(time.time()) - 10}
    assert me(client, hs256(claims)).status_code == 200


def test_a_forged_signature_is_refused(client, user):
    assert_refused(me(client, hs256(claims_of(user), secret="x" * 40)), "signature")
    header, _payload, signature = user.access_token.split(".")
    tampered = jwt.utils.base64url_encode(
        json.dumps({**claims_of(user), "sub": "00000000-0000-0000-0000-000000000001"}).encode()
    ).decode()
    assert_refused(me(client, f"{header}.{tampered}.{signature}"), "signature")


def test_unsigned_tokens_are_refused(client, user):
    token = jwt.encode(claims_of(user), key=None, algorithm="none")
    assert_refused(me(client, token), "not accepted")


@pytest.mark.parametrize(
    "header",
    [{"alg": ["HS256"]}, {"alg": {"HS256": 1}}, {"alg": 256}, {"alg": "ES256", "kid": ["k"]}],
)
def test_a_header_naming_its_key_with_other_than_strings_is_refused(client, user, header):
    def part(value: dict) -> str:
        return jwt.utils.base64url_encode(json.dumps(value).encode()).decode()

    _header, payload, signature = user.access_token.split(".")
    assert_refused(me(client, f"{part(header)}.{payload}.{signature}"), "as strings")


def test_an_unknown_kid_without_any_jwks_is_refused(client, user):
    key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(claims_of(user), key, algorithm="ES256", headers={"kid": "nobody"})
    assert_refused(me(client, token), "unknown key")


# JWKS over real HTTP -----------------------------------------------------------------------


class KeyServer:
    """A JWKS endpoint on 127.0.0.1 whose keys a test can rotate; counts its fetches.

    ``status`` and ``body`` make it fail: another status, or bytes sent instead of the keys.
    """

    def __init__(self):
        self.keys: list[dict] = []
        self.fetches = 0
        self.status = 200
        self.body: bytes | None = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.fetches += 1
                body = owner.body
                if body is None:
                    body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/auth/v1/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, *signing_keys):
        self.keys = [jwk(key) for key in signing_keys]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class SigningKey:
    def __init__(self, kid, alg):
        self.kid, self.alg = kid, alg
        if alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def sign(self, claims):
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid})


def jwk(key: SigningKey, **members) -> dict:
    """The key's public JWK as the JWKS publishes it; a member given as None is left out."""
    entry = {**public_jwk(key.private.public_key()), "kid": key.kid, "alg": key.alg, "use": "sig"}
    entry.update(members)
    return {name: value for name, value in entry.items() if value is not None}


def fresh(claims) -> dict:
    # a token not seen before: a remembered one skips the key lookup these tests are about
    return {**claims, "jti": str(uuid.uuid4())}


class Clock:
    """Stands in for the monotonic clock of backend.auth.tokens (the key cache's age)."""

    def __init__(self):
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()  # token expiry stays on the wall clock


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(tokens, "time", fake)
    return fake


@pytest.fixture
def key_server():
    server = KeyServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def keys():
    return {"ec-1": SigningKey("ec-1", "ES256"), "rsa-2": SigningKey("rsa-2", "RS256")}


def test_rotation_picks_up_new_keys_and_keeps_old_ones(make_app, key_server, keys, user):
    app = make_app(JWKS_URL=key_server.url, JWKS_MIN_REFETCH_SECONDS=0)
    client = app.test_client()
    claims = claims_of(user)
    key_server.publish(keys["ec-1"])

    assert me(client, keys["ec-1"].sign(claims)).status_code == 200
    assert key_server.fetches == 1
    assert_refused(me(client, keys["rsa-2"].sign(claims)), "unknown key")
    assert key_server.fetches == 2  # the unknown kid refetched once

    key_server.publish(keys["ec-1"], keys["rsa-2"])  # rotation: new key added, old kept
    assert me(client, keys["rsa-2"].sign(claims)).status_code == 200
    assert me(client, keys["ec-1"].sign(claims)).status_code == 200
    assert me(client, hs256(claims)).status_code == 200  # the legacy secret still works
    assert key_server.fetches == 3


def test_a_retired_key_stops_working_when_the_cache_expires(make_app, key_server, keys, user):
    app = make_app(JWKS_URL=key_server.url, JWKS_MIN_REFETCH_SECONDS=0, JWKS_CACHE_SECONDS=0)
    client = app.test_client()
    claims = claims_of(user)
    key_server.publish(keys["ec-1"], keys["rsa-2"])
    assert me(client, keys["ec-1"].sign(claims)).status_code == 200
    key_server.publish(keys["rsa-2"])
    assert_refused(me(client, keys["ec-1"].sign(claims)), "unknown key")
    assert me(client, keys["rsa-2"].sign(claims)).status_code == 200


def test_unknown_kids_refetch_at_most_once_per_interval(make_app, key_server, keys, user):
    app = make_app(JWKS_URL=key_server.url, JWKS_MIN_REFETCH_SECONDS=60)
    client = app.test_client()
    claims = claims_of(user)
    key_server.publish(keys["ec-1"])
    for n in range(5):
        impostor = SigningKey(f"made-up-{n}", "ES256")
        assert_refused(me(client, impostor.sign(claims)), "unknown key")
    assert key_server.fetches == 1


def test_a_key_cannot_verify_another_algorithm(make_app, key_server, keys, user):
    app = make_app(JWKS_URL=key_server.url)
    key_server.publish(keys["ec-1"])
    token = jwt.encode(
        claims_of(user), keys["rsa-2"].private, algorithm="RS256", headers={"kid": "ec-1"}
    )
    assert_refused(me(app.test_client(), token), "does not match")


def test_an_unreachable_jwks_refuses_the_token_but_not_hs256(make_app, user, keys):
    app = make_app(JWKS_URL="http://127.0.0.1:9/jwks.json")
    client = app.test_client()
    assert_refused(me(client, keys["ec-1"].sign(claims_of(user))), "unknown key")
    assert me(client, user.access_token).status_code == 200


# which published keys count ---------------------------------------------------------------


def test_a_key_published_for_encryption_does_not_verify_tokens(make_app, key_server, keys, user):
    client = make_app(JWKS_URL=key_server.url, JWKS_MIN_REFETCH_SECONDS=0).test_client()
    key_server.keys = [jwk(keys["ec-1"], use="enc")]
    assert_refused(me(client, keys["ec-1"].sign(fresh(claims_of(user)))), "unknown key")
    key_server.keys = [jwk(keys["ec-1"], use="sig")]  # the very same key, now for signing
    assert me(client, keys["ec-1"].sign(fresh(claims_of(user)))).status_code == 200


def test_a_key_published_without_use_verifies_tokens(make_app, key_server, keys, user):
    # RFC 7517 makes `use` optional; JWKS that leave it out still sign
    client = make_app(JWKS_URL=key_server.url).test_client()
    key_server.keys = [jwk(keys["ec-1"], use=None)]
    assert me(client, keys["ec-1"].sign(claims_of(user))).status_code == 200


# each: the key it is published for, and how its entry in the JWKS reads
NOT_FOR_THIS_TOKEN = {
    # PyJWT loads these keys for the algorithm named; the token's header names another
    "ec-published-for-es384": ("ec-1", {"alg": "ES384"}),
    "rsa-published-for-rs512": ("rsa-2", {"alg": "RS512"}),
    "rsa-published-for-ps256": ("rsa-2", {"alg": "PS256"}),
    "rsa-published-for-es256": ("rsa-2", {"alg": "ES256"}),  # alg against the key's type
    "for-encryption": ("ec-1", {"use": "enc"}),
    "use-null": ("ec-1", {"use": None}),
    "ops-without-verify": ("ec-1", {"key_ops": ["sign", "encrypt"]}),
    "ops-empty": ("ec-1", {"key_ops": []}),
    "ops-a-string": ("rsa-2", {"key_ops": "verify"}),  # a list, in a JWK
}


@pytest.mark.parametrize("entry", NOT_FOR_THIS_TOKEN.values(), ids=NOT_FOR_THIS_TOKEN.keys())
def test_a_key_published_for_another_algorithm_or_operation_verifies_nothing(
    make_app, key_server, keys, user, entry
):
    kid, members = entry
    other = "rsa-2" if kid == "ec-1" else "ec-1"
    key_server.keys = [{**jwk(keys[kid]), **members}, jwk(keys[other])]  # None: JSON null
    client = make_app(JWKS_URL=key_server.url).test_client()
    assert_refused(me(client, keys[kid].sign(fresh(claims_of(user)))))
    assert me(client, keys[other].sign(fresh(claims_of(user)))).status_code == 200


@pytest.mark.parametrize(
    "members",
    [{"alg": None}, {"key_ops": ["verify"]}, {"key_ops": ["sign", "verify"]}, {"use": None}],
    ids=["without-alg", "ops-verify", "ops-sign-and-verify", "without-use"],
)
def test_a_key_whose_members_allow_verifying_verifies(make_app, key_server, keys, user, members):
    client = make_app(JWKS_URL=key_server.url).test_client()
    key_server.keys = [jwk(keys["ec-1"], **members), jwk(keys["rsa-2"], **members)]
    for kid in ("ec-1", "rsa-2"):
        assert me(client, keys[kid].sign(fresh(claims_of(user)))).status_code == 200, kid


@pytest.mark.parametrize(
    "odd",
    [{"kid": None}, {"alg": "XX256"}, {"kty": "OKP"}],
    ids=["without-kid", "unknown-alg", "unknown-kty"],
)
def test_a_key_we_cannot_use_is_skipped_and_the_others_still_verify(
    make_app, key_server, keys, user, odd
):
    client = make_app(JWKS_URL=key_server.url).test_client()
    key_server.keys = [jwk(keys["rsa-2"], **odd), jwk(keys["ec-1"])]
    assert me(client, keys["ec-1"].sign(claims_of(user))).status_code == 200
    assert_refused(me(client, keys["rsa-2"].sign(claims_of(user))), "unknown key")


# a failing key server ----------------------------------------------------------------------

FAILURES = {
    "unavailable": (503, b"down for maintenance"),
    "not-json": (200, b"<html>"),
    # JSON, but not a JWKS: an object whose keys is a list
    "null": (200, b"null"),
    "a-list": (200, b"[]"),
    "keys-null": (200, b'{"keys": null}'),
    "no-keys": (200, b'{"error": "upstream timeout"}'),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_held_keys_keep_verifying_when_a_refetch_for_an_unknown_kid_fails(
    make_app, key_server, keys, user, clock, failure
):
    client = make_app(JWKS_URL=key_server.url, JWKS_MIN_REFETCH_SECONDS=10).test_client()
    claims = claims_of(user)
    key_server.publish(keys["ec-1"])
    assert me(client, keys["ec-1"].sign(fresh(claims))).status_code == 200
    key_server.status, key_server.body = failure

    clock.now += 11
    assert_refused(me(client, keys["rsa-2"].sign(fresh(claims))), "unknown key")
    assert key_server.fetches == 2
    assert me(client, keys["ec-1"].sign(fresh(claims))).status_code == 200
    # the failed attempt counts: unknown kids do not retry the failing server until 10 s on
    clock.now += 9
    assert_refused(me(client, keys["rsa-2"].sign(fresh(claims))), "unknown key")
    assert key_server.fetches == 2
    clock.now += 2
    assert_refused(me(client, keys["rsa-2"].sign(fresh(claims))), "unknown key")
    assert key_server.fetches == 3
    assert me(client, keys["ec-1"].sign(fresh(claims))).status_code == 200


def test_entries_that_are_not_keys_are_skipped_and_the_token_refused_not_an_error(
    make_app, key_server, keys, user
):
    client = make_app(JWKS_URL=key_server.url).test_client()
    key_server.body = json.dumps(
        {"keys": [1, None, {"kid": ["ec-1"]}, {**jwk(keys["ec-1"]), "x": 5}]}
    ).encode()
    assert_refused(me(client, keys["ec-1"].sign(fresh(claims_of(user)))), "unknown key")


def test_held_keys_retry_once_per_period_and_stop_verifying_past_their_maximum_age(
    make_app, key_server, keys, user, clock
):
    """Past the cache period a known kid retries the failing server, once per period: a
    failed attempt restarts the period, and the held keys keep verifying. Keys no fetch has
    confirmed for JWKS_MAX_AGE_SECONDS verify nothing until a fetch succeeds."""
    client = make_app(
        JWKS_URL=key_server.url,
        JWKS_CACHE_SECONDS=600,
        JWKS_MIN_REFETCH_SECONDS=10,
        JWKS_MAX_AGE_SECONDS=3600,
    ).test_client()
    claims = claims_of(user)
    key_server.publish(keys["ec-1"])
    assert me(client, keys["ec-1"].sign(fresh(claims))).status_code == 200
    fetched = clock.now
    key_server.status = 503

    for period in range(1, 4):
        clock.now += 601
        assert me(client, keys["ec-1"].sign(fresh(claims))).status_code == 200
        assert key_server.fetches == 1 + period
        clock.now += 300
        assert me(client, keys["ec-1"].sign(fresh(claims))).status_code == 200
        assert key_server.fetches == 1 + period

    clock.now = fetched + 3600  # the last moment the held keys count
    assert me(client, keys["ec-1"].sign(fresh(claims))).status_code == 200
    clock.now += 1
    assert_refused(me(client, keys["ec-1"].sign(fresh(claims))), "unknown key")
    assert me(client, hs256(fresh(claims))).status_code == 200  # the secret is no JWKS key
    # too old, each token retries the server, at most once per JWKS_MIN_REFETCH_SECONDS
    fetches = key_server.fetches
    clock.now += 10
    assert_refused(me(client, keys["ec-1"].sign(fresh(claims))), "unknown key")
    assert_refused(me(client, keys["ec-1"].sign(fresh(claims))), "unknown key")
    assert key_server.fetches == fetches + 1

    key_server.status = 200  # the server is back, with the same key
    clock.now += 10
    assert me(client, keys["ec-1"].sign(fresh(claims))).status_code == 200
    assert key_server.fetches == fetches + 2


def test_held_keys_go_when_a_fetch_succeeds_without_them(make_app, key_server, keys, user, clock):
    client = make_app(
        JWKS_URL=key_server.url, JWKS_CACHE_SECONDS=600, JWKS_MIN_REFETCH_SECONDS=10
    ).test_client()
    claims = claims_of(user)
    key_server.publish(keys["ec-1"])
    assert me(client, keys["ec-1"].sign(fresh(claims))).status_code == 200
    key_server.status = 503
    clock.now += 601
    assert me(client, keys["ec-1"].sign(fresh(claims))).status_code == 200

    key_server.status = 200
    key_server.publish(keys["rsa-2"])  # the server is back, and has retired ec-1
    clock.now += 601
    assert_refused(me(client, keys["ec-1"].sign(fresh(claims))), "unknown key")
    assert me(client, keys["rsa-2"].sign(fresh(claims))).status_code == 200


# where the keys may come from --------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://auth.velro.example/jwks.json", "http://127.0.0.1:9999/jwks.json"]
)
def test_production_refuses_a_jwks_url_over_plain_http(url):
    # loopback too: production fetches keys only over https
    with pytest.raises(ConfigError, match=r"(?<!FAL_)JWKS_URL must be https://"):
        load_settings(environ={**PRODUCTION, "JWKS_URL": url})


def test_https_jwks_urls_load_in_production_and_plain_http_in_development():
    https = "https://auth.velro.example/jwks.json"
    assert load_settings(environ={**PRODUCTION, "JWKS_URL": https}).jwks_url == https
    plain = {**PRODUCTION, "APP_ENV": "development", "JWKS_URL": "http://auth.example/jwks"}
    assert load_settings(environ=plain).jwks_url == "http://auth.example/jwks"


# the local provider signing with its own ES256 key ------------------------------------------


def test_local_provider_signs_es256_and_serves_its_jwks(make_app):
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    app = make_app(JWT_PRIVATE_KEY=pem, JWT_KEY_ID="local-ec")
    client = app.test_client()
    signup = client.post(
        "/api/v1/auth/signup",
        json={"email": f"es256-{time.time_ns()}@example.com", "password": "long enough pw"},
    )
    token = signup.get_json()["access_token"]
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "local-ec", "typ": "JWT"}
    jwks = client.get("/auth/v1/.well-known/jwks.json").get_json()
    (key,) = jwks["keys"]
    assert key["kid"] == "local-ec" and key["alg"] == "ES256" and key["kty"] == "EC"
    assert "d" not in key  # the public part only
    assert me(client, token).status_code == 200
    verified = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["ES256"], audience="authenticated")
    assert verified["session_id"]


def test_a_remembered_token_still_expires(make_app, user):
    client = make_app(JWT_LEEWAY=0).test_client()
    token = hs256({**claims_of(user), "exp": int(time.time()) + 2})
    assert me(client, token).status_code == 200
    time.sleep(2.5)
    assert_refused(me(client, token), "expired")
