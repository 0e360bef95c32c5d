"""Supabase-shaped JWTs: verifying them (HS256 secret, ES256/RS256 by kid) and signing them.

Verification picks the key by the header: HS256 uses ``JWT_SECRET``; ES256 and RS256 use
the key whose ``kid`` matches, from the local provider's own key or from ``JWKS_URL``
(``RemoteKeySet``). An unknown kid refetches the JWKS, at most once per
``JWKS_MIN_REFETCH_SECONDS``, so a rotation is picked up at once and a flood of made-up
kids cannot hammer the key server. Keys no fetch has confirmed for ``JWKS_MAX_AGE_SECONDS``
verify nothing until a fetch succeeds. A key verifies only the algorithm it is for (its
``alg``, or the one its type and curve imply) and only if its ``use`` and ``key_ops``, when
present, allow verifying. Claims checked: signature, ``exp`` (with leeway),
``iss``, ``aud``, ``sub`` (a UUID), ``role`` = authenticated, and a ``session_id``. A token
that passed is remembered for a minute (``exp`` is still checked on each use).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import uuid

import httpx
import jwt
from cachetools import TTLCache
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from backend.config import Settings
from backend.errors import InvalidToken

log = logging.getLogger(__name__)

KEY_TYPES = {"ES256": "EC", "RS256": "RSA"}
VERIFIED_CACHE_SIZE = 10_000  # tokens whose signature was checked lately
VERIFIED_CACHE_SECONDS = 60  # a retired signing key stops working within this
REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss", "role", "session_id"]


class RemoteKeySet:
    """Public keys from a JWKS URL, cached, refetched on an unknown kid (rate-limited).

    Keys are refetched once per ``cache_seconds``; a failed fetch keeps the keys held, so a
    key server hiccup does not sign everyone out. Keys no fetch has confirmed for
    ``max_age_seconds`` are not used: a key the server has since withdrawn (revoked after a
    leak, say) cannot stay trusted for as long as the fetches keep failing.
    """

    def __init__(
        self,
        url: str,
        http: httpx.Client,
        cache_seconds: float,
        min_refetch_seconds: float,
        max_age_seconds: float,
    ):
        self.url = url
        self._http = http
        self._cache_seconds = cache_seconds
        self._min_refetch_seconds = min_refetch_seconds
        self._max_age_seconds = max_age_seconds
        # the keys and when a fetch last brought them, replaced together so that a reader
        # never pairs new keys with an old time
        self._held: tuple[dict[str, jwt.PyJWK], float] = ({}, float("-inf"))
        self._attempted_at = float("-inf")  # the last fetch, failed or not
        self._lock = threading.Lock()

    def get(self, kid: str) -> jwt.PyJWK | None:
        keys, fetched_at = self._held
        now = time.monotonic()
        too_old = now - fetched_at > self._max_age_seconds
        if kid not in keys or too_old or now - self._attempted_at > self._cache_seconds:
            self._refetch()
            keys, fetched_at = self._held
        if time.monotonic() - fetched_at > self._max_age_seconds:
            return None  # fail closed: unconfirmed keys verify nothing until a fetch succeeds
        return keys.get(kid)

    def _refetch(self) -> None:
        with self._lock:
            if time.monotonic() - self._attempted_at < self._min_refetch_seconds:
                return
            self._attempted_at = attempted_at = time.monotonic()
            try:
                response = self._http.get(self.url, timeout=5.0)
                response.raise_for_status()
                self._held = (parse_jwks(response.json()), attempted_at)
            except (httpx.HTTPError, ValueError) as error:
                # keep the keys we have (get() stops using them past their maximum age)
                log.warning("could not fetch JWKS from %s: %s", self.url, error)


def parse_jwks(document: object) -> dict[str, jwt.PyJWK]:
    """The signing keys of a JWKS by kid; ValueError when the answer is not a JWKS at all
    (an object whose ``keys`` is a list), so that the keys held are kept."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("the answer is not a JWKS: no list of keys")
    keys = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if not _allows_verifying(entry):
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry)
        except (jwt.PyJWTError, TypeError, ValueError):
            # an algorithm we do not accept, or members PyJWT cannot read (a non-string
            # coordinate raises TypeError): other keys still count
            continue
    return keys


def _allows_verifying(entry: dict) -> bool:
    """Whether the entry's ``use`` and ``key_ops``, when present, allow verifying signatures:
    a key published for encryption, or for other operations, must not vouch for a token."""
    if "use" in entry and entry["use"] != "sig":
        return False
    operations = entry.get("key_ops", ["verify"])
    return isinstance(operations, list) and "verify" in operations


class TokenVerifier:
    """Turns a bearer token into verified claims or raises InvalidToken (401)."""

    def __init__(
        self, settings: Settings, local_keys: dict[str, jwt.PyJWK], remote: RemoteKeySet | None
    ):
        self._settings = settings
        self._local_keys = local_keys
        self._remote = remote
        self._verified: TTLCache = TTLCache(maxsize=VERIFIED_CACHE_SIZE, ttl=VERIFIED_CACHE_SECONDS)
        self._lock = threading.Lock()

    def verify(self, token: str) -> dict:
        claims = self._remembered(token)
        if claims is None:
            header = _unverified_header(token)
            algorithm = header.get("alg")
            key = self._key_for(algorithm, header.get("kid"))
            claims = self._decode(token, key, algorithm)
            _check_subject(claims)
            with self._lock:
                self._verified[token] = claims
        return claims

    def _remembered(self, token: str) -> dict | None:
        # A client sends the same token for up to an hour; checking its signature once a
        # minute instead of on every request saves most of the verification cost. Expiry
        # is still checked on every use; the session is checked by the database.
        with self._lock:
            claims = self._verified.get(token)
        if claims is None or claims["exp"] + self._settings.JWT_LEEWAY < time.time():
            return None
        return claims

    def _key_for(self, algorithm: str, kid: str | None):
        if algorithm == "HS256":
            return self._settings.JWT_SECRET
        if algorithm not in KEY_TYPES:
            raise InvalidToken(f"Tokens signed with {algorithm!r} are not accepted.")
        if not kid:
            raise InvalidToken("The token has no key id (kid).")
        key = self._local_keys.get(kid) or (self._remote.get(kid) if self._remote else None)
        if key is None:
            raise InvalidToken("The token was signed with an unknown key.")
        # PyJWT takes the key's algorithm from its alg, or from its type and curve: a key
        # published for another algorithm (RS512, PS256, ES384...) must not verify this one
        if key.key_type != KEY_TYPES[algorithm] or key.algorithm_name != algorithm:
            raise InvalidToken("The token's algorithm does not match its key.")
        return key.key

    def _decode(self, token: str, key, algorithm: str) -> dict:
        s = self._settings
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=s.JWT_AUDIENCE,
                issuer=s.issuer,
                leeway=s.JWT_LEEWAY,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The token has expired; refresh the session.") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("The token is for another audience.") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("The token was issued by someone we do not trust.") from None
        except jwt.MissingRequiredClaimError as error:
            raise InvalidToken(f"The token has no {error.claim!r} claim.") from None
        except jwt.PyJWTError:
            raise InvalidToken("The token's signature or claims are not valid.") from None


def _unverified_header(token: str) -> dict:
    # Only picks the key; jwt.decode then checks the whole token. Parsing the header here
    # rather than with jwt.get_unverified_header saves a second pass over the token.
    try:
        # a header nested past json's recursion limit raises RecursionError, not ValueError
        header = json.loads(jwt.utils.base64url_decode(token.split(".", 1)[0]))
    except (ValueError, TypeError, RecursionError):
        header = None
    if not isinstance(header, dict) or token.count(".") != 2:
        raise InvalidToken("The token is not a well-formed JWT.")
    # picking the key looks both up in dicts: a list or an object there must be a 401, not
    # a TypeError
    if not isinstance(header.get("alg"), str) or not isinstance(header.get("kid", ""), str):
        raise InvalidToken("The token's header must name its algorithm and key id as strings.")
    return header


def _check_subject(claims: dict) -> None:
    if claims.get("role") != "authenticated":
        raise InvalidToken("The token is not a signed-in user's token.")
    try:
        uuid.UUID(str(claims["sub"]))
        uuid.UUID(str(claims["session_id"]))
    except ValueError:
        raise InvalidToken("The token's subject or session is not a UUID.") from None


class TokenSigner:
    """Signs the local provider's access tokens: HS256, or JWT_PRIVATE_KEY (ES256/RS256)."""

    def __init__(self, settings: Settings):
        self._secret = settings.JWT_SECRET
        self._private_key = None
        self.algorithm, self.kid = "HS256", None
        if settings.JWT_PRIVATE_KEY:
            self._private_key = load_private_key(settings.JWT_PRIVATE_KEY)
            self.algorithm = (
                "ES256" if isinstance(self._private_key, ec.EllipticCurvePrivateKey) else "RS256"
            )
            self.kid = settings.JWT_KEY_ID or key_thumbprint(
                public_jwk(self._private_key.public_key())
            )

    def sign(self, claims: dict) -> str:
        if self._private_key is None:
            return jwt.encode(claims, self._secret, algorithm="HS256")
        return jwt.encode(
            claims, self._private_key, algorithm=self.algorithm, headers={"kid": self.kid}
        )

    def public_jwks(self) -> dict:
        """What /auth/v1/.well-known/jwks.json serves (empty with HS256, as GoTrue does)."""
        if self._private_key is None:
            return {"keys": []}
        entry = public_jwk(self._private_key.public_key())
        entry.update(kid=self.kid, alg=self.algorithm, use="sig", key_ops=["verify"])
        return {"keys": [entry]}

    def verification_keys(self) -> dict[str, jwt.PyJWK]:
        return parse_jwks(self.public_jwks())


def load_private_key(pem: str):
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except ValueError:
        raise ValueError("JWT_PRIVATE_KEY is not an unencrypted PEM private key") from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return key
    raise ValueError("JWT_PRIVATE_KEY must be an EC P-256 key (ES256) or an RSA key of 2048+ bits")


def public_jwk(public_key) -> dict:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return ECAlgorithm.to_jwk(public_key, as_dict=True)
    return RSAAlgorithm.to_jwk(public_key, as_dict=True)


def key_thumbprint(jwk: dict) -> str:
    """RFC 7638 thumbprint: a stable kid derived from the key itself."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
