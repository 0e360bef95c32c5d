"""FAL's webhook signatures: ED25519 over request id, user id, timestamp and the body's hash.

The signed message is ``request_id + "\\n" + user_id + "\\n" + timestamp + "\\n" +
sha256_hex(raw body)``; the signature comes hex-encoded in ``X-Fal-Webhook-Signature``.
Public keys come from FAL's JWKS, cached for at most a day. A signature no cached key
accepts makes one refetch (FAL may have rotated), at most once per ``min_refetch_seconds``
so forged deliveries cannot turn us into a JWKS hammer.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable, Mapping

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

HEADER_REQUEST_ID = "X-Fal-Webhook-Request-Id"
HEADER_USER_ID = "X-Fal-Webhook-User-Id"
HEADER_TIMESTAMP = "X-Fal-Webhook-Timestamp"
HEADER_SIGNATURE = "X-Fal-Webhook-Signature"
TOLERANCE_SECONDS = 300
MAX_KEY_AGE_SECONDS = 24 * 3600


class SignatureRejected(Exception):
    """The delivery is not FAL's, or not fresh: answer 401 and change nothing."""


class KeysUnavailable(Exception):
    """FAL's JWKS could not be fetched: the delivery cannot be judged now (503)."""


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{request_id}\n{user_id}\n{timestamp}\n{digest}".encode()


def public_keys_from_jwks(document: dict) -> list[Ed25519PublicKey]:
    """The Ed25519 keys (``kty`` OKP, ``crv`` Ed25519) of a JWKS; others are skipped."""
    keys = []
    for jwk in document.get("keys", []) if isinstance(document, dict) else []:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        try:
            raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (KeyError, TypeError, ValueError):
            continue
    return keys


FETCH_TIMEOUT_SECONDS = 3.0  # a request thread waits no longer for FAL's keys


def fetch_jwks(url: str) -> dict:
    response = httpx.get(url, timeout=FETCH_TIMEOUT_SECONDS)
    response.raise_for_status()
    return response.json()


class WebhookVerifier:
    """Checks deliveries against FAL's keys; thread-safe, one per process."""

    def __init__(
        self,
        jwks_url: str,
        *,
        max_key_age_seconds: float = MAX_KEY_AGE_SECONDS,
        min_refetch_seconds: float = 60.0,
        tolerance_seconds: float = TOLERANCE_SECONDS,
        fetch: Callable[[str], dict] = fetch_jwks,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = jwks_url
        self._max_age = min(max_key_age_seconds, MAX_KEY_AGE_SECONDS)
        self._min_refetch = min_refetch_seconds
        self._tolerance = tolerance_seconds
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._fetching = threading.Lock()  # one fetch at a time; the others take its result
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at: float | None = None  # of the keys held
        self._attempted_at: float | None = None  # of the last fetch, failed or not
        self._failed = False
        self.fetches = 0

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """The delivery's request id when it is FAL's and fresh; SignatureRejected if not."""
        request_id, user_id, timestamp, signature = self._signed_parts(headers)
        self._check_fresh(timestamp)
        message = signed_message(request_id, user_id, timestamp, body)
        if self._accepted(self._current_keys(), signature, message):
            return request_id
        if self._refetch_allowed() and self._accepted(self._refetched_keys(), signature, message):
            return request_id
        raise SignatureRejected("the webhook signature does not match any of FAL's keys")

    def _signed_parts(self, headers: Mapping[str, str]) -> tuple[str, str, str, bytes]:
        names = (HEADER_REQUEST_ID, HEADER_USER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)
        values = [headers.get(name) for name in names]
        missing = [name for name, value in zip(names, values, strict=True) if not value]
        if missing:
            raise SignatureRejected(f"the webhook lacks {', '.join(missing)}")
        try:
            signature = bytes.fromhex(values[3])
        except ValueError:
            raise SignatureRejected("the webhook signature is not hex") from None
        return values[0], values[1], values[2], signature

    def _check_fresh(self, timestamp: str) -> None:
        try:
            sent = int(timestamp)
        except ValueError:
            raise SignatureRejected("the webhook timestamp is not a number of seconds") from None
        if abs(self._clock() - sent) > self._tolerance:
            raise SignatureRejected(
                f"the webhook timestamp is more than {int(self._tolerance)} s away from now"
            )

    @staticmethod
    def _accepted(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
        for key in keys:
            try:
                key.verify(signature, message)
                return True
            except InvalidSignature:
                continue
        return False

    def _current_keys(self) -> list[Ed25519PublicKey]:
        with self._lock:
            fresh = self._fetched_at is not None and (
                self._clock() - self._fetched_at < self._max_age
            )
            if fresh:
                return self._keys
        return self._refetched_keys()

    def _refetch_allowed(self) -> bool:
        with self._lock:
            return (
                self._attempted_at is None
                or self._clock() - self._attempted_at >= self._min_refetch
            )

    def _refetched_keys(self) -> list[Ed25519PublicKey]:
        """FAL's keys fetched again, by one thread at a time: a thread that waited for
        another's fetch, or comes within min_refetch_seconds of the last one, takes its
        result (its keys, or its failure), so forged deliveries, while FAL's key server is
        down or slow or not, never each hold a request thread on a fetch."""
        asked_at = self._clock()
        with self._fetching:
            with self._lock:
                attempted, failed, keys = self._attempted_at, self._failed, self._keys
            recent = attempted is not None and (
                attempted >= asked_at or self._clock() - attempted < self._min_refetch
            )
            if recent:
                if failed:
                    raise KeysUnavailable("FAL's signing keys could not be fetched just now")
                return keys
            attempted = self._clock()
            try:
                keys = public_keys_from_jwks(self._fetch(self._url))
                if not keys:
                    # FAL always publishes a key: an answer without one (a proxy's error
                    # as JSON, say) is a failed fetch, and the keys held stay
                    raise ValueError("the JWKS holds no Ed25519 key")
            except (httpx.HTTPError, ValueError) as error:
                with self._lock:
                    self._attempted_at, self._failed = attempted, True
                raise KeysUnavailable(
                    f"FAL's signing keys could not be fetched: {error}"
                ) from error
            with self._lock:
                self._keys, self._fetched_at = keys, attempted
                self._attempted_at, self._failed = attempted, False
                self.fetches += 1
            return keys
