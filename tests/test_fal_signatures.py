"""FAL's webhook signatures: the JWKS cache under a failing key server, and the signed
request id as the only thing that picks a generation.

The verifier gets a fake key server and a fake clock, so nothing here waits or fetches over
HTTP; the route's test injects such a verifier into an app on a database of its own.
"""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest
from api_support import MODEL, assert_error, running_api
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from backend.api.fal_webhooks import VERIFIER
from backend.fal.signatures import (
    HEADER_REQUEST_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    HEADER_USER_ID,
    KeysUnavailable,
    SignatureRejected,
    WebhookVerifier,
    signed_message,
)

JWKS_URL = "https://keys.fal.example/.well-known/jwks.json"
MAX_KEY_AGE = 3600
MIN_REFETCH = 60
START = 1_800_000_000


class Clock:
    def __init__(self) -> None:
        self.now = float(START)

    def __call__(self) -> float:
        return self.now


class KeyServer:
    """FAL's JWKS endpoint: publishes ``keys``, or fails as httpx does while ``down``."""

    def __init__(self, *keys: Ed25519PrivateKey) -> None:
        self.keys = list(keys)
        self.down = False
        self.calls = 0

    def __call__(self, url: str) -> dict:
        self.calls += 1
        if self.down:
            raise httpx.ConnectError("FAL's key server does not answer")
        return {"keys": [jwk_of(key) for key in self.keys]}


def jwk_of(key: Ed25519PrivateKey) -> dict:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # base64url, unpadded, as FAL
    return {"kty": "OKP", "crv": "Ed25519", "x": x}


def signed(key: Ed25519PrivateKey, request_id: str, timestamp: float, body: bytes) -> dict:
    """The headers FAL sends with ``body``."""
    user_id, sent = "fal-user", str(int(timestamp))
    return {
        "Content-Type": "application/json",
        HEADER_REQUEST_ID: request_id,
        HEADER_USER_ID: user_id,
        HEADER_TIMESTAMP: sent,
        HEADER_SIGNATURE: key.sign(signed_message(request_id, user_id, sent, body)).hex(),
    }


def deliver(verifier: WebhookVerifier, key: Ed25519PrivateKey, clock: Clock) -> str:
    """A delivery signed by ``key`` now (by the clock): its request id, if verified."""
    body = b'{"request_id": "req-1", "status": "OK"}'
    return verifier.verify(signed(key, "req-1", clock.now, body), body)


@pytest.fixture
def fal_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def stranger() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def key_server(fal_key) -> KeyServer:
    return KeyServer(fal_key)


@pytest.fixture
def verifier(key_server, clock, fal_key) -> WebhookVerifier:
    """A verifier that already holds FAL's key, fetched at START."""
    verifier = WebhookVerifier(
        JWKS_URL,
        max_key_age_seconds=MAX_KEY_AGE,
        min_refetch_seconds=MIN_REFETCH,
        fetch=key_server,
        clock=clock,
    )
    assert deliver(verifier, fal_key, clock) == "req-1"
    assert key_server.calls == 1
    return verifier


# the JWKS cache ------------------------------------------------------------------------


def test_held_keys_keep_verifying_after_a_failed_refetch(
    verifier, key_server, clock, fal_key, stranger
):
    key_server.down = True
    clock.now += MIN_REFETCH  # so an unknown key may refetch
    # the refetch fails: the stranger's delivery cannot be judged, not judged forged
    with pytest.raises(KeysUnavailable):
        deliver(verifier, stranger, clock)
    assert key_server.calls == 2
    assert deliver(verifier, fal_key, clock) == "req-1"
    assert key_server.calls == 2


def test_a_jwks_without_a_key_is_a_failed_fetch_and_the_held_keys_stay(
    verifier, key_server, clock, fal_key, stranger
):
    key_server.keys = []  # a 200 that holds no key: a proxy's error page as JSON, say
    clock.now += MIN_REFETCH
    with pytest.raises(KeysUnavailable):
        deliver(verifier, stranger, clock)
    assert key_server.calls == 2
    assert deliver(verifier, fal_key, clock) == "req-1"


def test_held_keys_verify_until_the_max_age_while_the_key_server_is_down(
    verifier, key_server, clock, fal_key, stranger
):
    key_server.down = True
    clock.now += MIN_REFETCH
    with pytest.raises(KeysUnavailable):
        deliver(verifier, stranger, clock)
    clock.now = START + MAX_KEY_AGE - 1
    assert deliver(verifier, fal_key, clock) == "req-1"
    assert key_server.calls == 2


def test_keys_at_the_max_age_are_not_used_until_a_refetch_succeeds(
    verifier, key_server, clock, fal_key
):
    key_server.down = True
    clock.now = START + MAX_KEY_AGE
    # FAL's own signature cannot be judged with keys this old: 503, so FAL retries later
    with pytest.raises(KeysUnavailable):
        deliver(verifier, fal_key, clock)
    assert key_server.calls == 2
    # and the failed refetch is not repeated for every delivery
    clock.now += MIN_REFETCH - 1
    with pytest.raises(KeysUnavailable):
        deliver(verifier, fal_key, clock)
    assert key_server.calls == 2
    # the first refetch that succeeds brings the keys back
    key_server.down = False
    clock.now += 1
    assert deliver(verifier, fal_key, clock) == "req-1"
    assert key_server.calls == 3


def test_unknown_keys_refetch_the_jwks_at_most_once_per_min_refetch_seconds(
    verifier, key_server, clock, stranger
):
    for _ in range(3):
        clock.now += (MIN_REFETCH - 1) / 3
        with pytest.raises(SignatureRejected):
            deliver(verifier, stranger, clock)
    assert key_server.calls == 1  # the fetch at START is still recent
    clock.now = START + MIN_REFETCH
    with pytest.raises(SignatureRejected):
        deliver(verifier, stranger, clock)
    assert key_server.calls == 2
    with pytest.raises(SignatureRejected):
        deliver(verifier, stranger, clock)
    assert key_server.calls == 2


def test_a_failed_refetch_is_not_retried_within_min_refetch_seconds(
    verifier, key_server, clock, stranger
):
    key_server.down = True
    clock.now += MIN_REFETCH
    with pytest.raises(KeysUnavailable):
        deliver(verifier, stranger, clock)
    clock.now += MIN_REFETCH - 1
    # no refetch allowed: the held keys judge the delivery alone
    with pytest.raises(SignatureRejected):
        deliver(verifier, stranger, clock)
    assert key_server.calls == 2
    clock.now += 1
    with pytest.raises(KeysUnavailable):
        deliver(verifier, stranger, clock)
    assert key_server.calls == 3


# the route -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(database_factory, migrated_template):
    with running_api(database_factory(migrated_template)) as running:
        yield running


def queued_generation(api, user) -> tuple[str, str]:
    """A generation FAL has accepted, recorded as the worker records it: (id, FAL request id)."""
    body = {"model_id": MODEL, "prompt": "a lighthouse at dusk"}
    created = api.ok("POST", "/api/v1/generations", user, 201, json=body)
    request_id = str(uuid.uuid4())
    api.sql(
        "select public.record_generation_progress(%s, 'queued', %s)", (created["id"], request_id)
    )
    return created["id"], request_id


def test_a_body_naming_another_request_than_the_signed_one_is_400_and_changes_nothing(api):
    fal_key, clock = Ed25519PrivateKey.generate(), Clock()
    api.app.extensions[VERIFIER] = WebhookVerifier(JWKS_URL, fetch=KeyServer(fal_key), clock=clock)
    user = api.user()
    signed_id, signed_request = queued_generation(api, user)
    named_id, named_request = queued_generation(api, user)
    # FAL signed this delivery for one request; its body speaks of the other
    body = json.dumps({"request_id": named_request, "status": "ERROR", "error": "x"}).encode()
    before = api.fingerprint()
    response = api.client.post(
        "/api/v1/webhooks/fal", data=body, headers=signed(fal_key, signed_request, clock.now, body)
    )
    error = assert_error(response, 400, "bad_request")
    assert "request_id" in error["message"]
    assert api.fingerprint() == before
    statuses = api.sql(
        "select status::text from public.generations where id in (%s, %s)", (signed_id, named_id)
    )
    assert [row["status"] for row in statuses] == ["queued", "queued"]
