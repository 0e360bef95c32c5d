"""Token verification as the app does it vs decoding the same token without verifying it.

The subject is ``TokenVerifier.verify`` (backend/auth/tokens.py), the code every signed-in
request runs: read the header, pick the key (the HS256 secret, or the ES256 key by its
kid), check the signature and the claims (exp, iss, aud, sub, role, session). Each token is
verified once, so the verifier's one-minute memory of checked tokens never answers; a
third figure times that memory: the same tokens asked again. The baseline is PyJWT decoding
the token with the signature check off, the least any JWT reader does.

In process, no database, no HTTP: subject and baseline interleaved per token, first tenth
discarded as warm-up. Target: at p50 a full check costs at most 4x reading the token
unverified, for either algorithm (a ratio, so the machine's load mostly cancels out).
"""

from __future__ import annotations

import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench import anchors
from bench.progress import say
from bench.scenarios.cache_support import app_env
from bench.stats import summarize

TARGET = 4.0
WARMUP_FRACTION = 0.1
ALGORITHMS = ("HS256", "ES256")


def run(scale) -> dict:
    iterations = scale.token_iterations
    figures: dict = {"iterations": iterations}
    for algorithm in ALGORITHMS:
        settings, signer, verifier = _signer_and_verifier(algorithm)
        tokens = [_token(settings, signer) for _ in range(iterations)]
        checked, decoded = _interleaved(verifier, tokens)
        remembered = [_timed(verifier.verify, token) for token in tokens]
        figures[algorithm] = {
            "subject": summarize(checked).as_dict(),
            "baseline": summarize(decoded).as_dict(),
            "remembered": summarize(remembered).as_dict(),
        }
        side = figures[algorithm]
        say(
            f"token verification {algorithm}: p50 {side['subject']['p50']:.1f} µs vs "
            f"{side['baseline']['p50']:.1f} µs unverified; remembered "
            f"{side['remembered']['p50']:.1f} µs"
        )
    return figures


def _signer_and_verifier(algorithm: str):
    """Settings, signer and verifier wired as the local provider wires them."""
    from backend.auth.tokens import TokenSigner, TokenVerifier
    from backend.config import load_settings

    env = app_env(None)
    if algorithm == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
        env["JWT_PRIVATE_KEY"] = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    settings = load_settings({"DATABASE_URL": "postgresql://127.0.0.1/unused"}, environ=env)
    signer = TokenSigner(settings)
    if signer.algorithm != algorithm:
        raise RuntimeError(f"the signer signs {signer.algorithm}, not {algorithm}")
    return settings, signer, TokenVerifier(settings, signer.verification_keys(), None)


def _token(settings, signer) -> str:
    """A Supabase-shaped access token of a made-up user and session."""
    now = int(time.time())
    return signer.sign(
        {
            "sub": str(uuid.uuid4()),
            "role": "authenticated",
            "aud": settings.JWT_AUDIENCE,
            "iss": settings.issuer,
            "iat": now,
            "exp": now + 3600,
            "session_id": str(uuid.uuid4()),
            "aal": "aal1",
        }
    )


def _unverified(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _interleaved(verifier, tokens: list[str]) -> tuple[list[int], list[int]]:
    """Each token verified and decoded once, alternating which goes first; warm-up dropped."""
    warmup = int(len(tokens) * WARMUP_FRACTION)
    checked, decoded = [], []
    for index, token in enumerate(tokens):
        if index % 2:
            base = _timed(_unverified, token)
            took = _timed(verifier.verify, token)
        else:
            took = _timed(verifier.verify, token)
            base = _timed(_unverified, token)
        if index >= warmup:
            checked.append(took)
            decoded.append(base)
    return checked, decoded


def _timed(function, token: str) -> int:
    began = time.perf_counter_ns()
    function(token)
    return time.perf_counter_ns() - began


# report --------------------------------------------------------------------------------


def rows(figures: dict) -> list[dict]:
    out = []
    for algorithm in ALGORITHMS:
        side = figures[algorithm]
        subject, baseline = side["subject"], side["baseline"]
        out.append(
            {
                "scenario": f"token verification, {algorithm}, as every signed-in request does "
                "it (signature, exp, iss, aud, sub, role, session) vs PyJWT decoding it unverified",
                "measured": _cell(subject),
                "baseline": _cell(baseline),
                "ratio": subject["p50"] / baseline["p50"],
                "anchor": anchors.PYJWT,
                "target": TARGET,
                "met": subject["p50"] / baseline["p50"] <= TARGET,
            }
        )
    remembered = figures["HS256"]["remembered"]
    out.append(
        {
            "scenario": "token verification, a token checked in the last minute (the "
            "verifier's memory; exp still checked) vs decoding it unverified",
            "measured": _cell(remembered),
            "baseline": _cell(figures["HS256"]["baseline"]),
            "ratio": remembered["p50"] / figures["HS256"]["baseline"]["p50"],
            "anchor": anchors.PYJWT,
            "target": "—",
            "met": None,
        }
    )
    return out


def _cell(summary: dict) -> str:
    return f"{summary['p50']:.1f} / {summary['p95']:.1f} / {summary['p99']:.1f} µs"


def notes(figures: dict) -> list[str]:
    return [
        f"- Token rows: in process, {figures['iterations']:,} distinct tokens per algorithm "
        "(made-up users and sessions), each verified once by a fresh `TokenVerifier` wired as "
        "the local provider wires it (HS256: JWT_SECRET; ES256: a P-256 key by its kid); p50 / "
        "p95 / p99."
    ]
