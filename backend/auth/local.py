"""The local auth provider: users in auth.users, sessions and refresh tokens as GoTrue keeps them.

Passwords are bcrypt (cost 10) in ``auth.users.encrypted_password``; emails are stored
lowercased. A sign-in creates a row in ``auth.sessions`` and an opaque refresh token whose
sha256 is stored in ``auth.refresh_tokens``. A refresh token works once: using it revokes
it and issues a child (``parent`` links them). Presenting a revoked one again means it
leaked, so the whole session is deleted and every token of it stops working. Sign-ins,
failed sign-ins, sign-ups, sign-outs and refresh-token reuse go to the audit log.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid

import bcrypt
from flask import request
from psycopg.types.json import Jsonb

from backend.auth.provider import SIGN_OUT_SCOPES, AuthFailure, Session
from backend.auth.tokens import TokenSigner
from backend.config import Settings
from backend.db import owner_transaction, rpc

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
BCRYPT_COST = 10
INSTANCE_ID = "00000000-0000-0000-0000-000000000000"


INVALID_CREDENTIALS = AuthFailure(400, "invalid_credentials", "Invalid login credentials")


class LocalProvider:
    """Signs people up and in against auth.users; issues Supabase-shaped sessions."""

    def __init__(self, settings: Settings, signer: TokenSigner):
        self._settings = settings
        self._signer = signer
        # compared against when the email is unknown, so both failures take as long
        self._decoy_hash = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(BCRYPT_COST))

    # sign-up and sign-in ----------------------------------------------------------------

    def sign_up(self, email: str, password: str, data: dict | None = None) -> Session:
        email = self.check_credentials(email, password)
        with owner_transaction() as cur:
            user = insert_user(cur, email, hash_password(password), data or {})
            if user is None:
                raise AuthFailure(422, "user_already_exists", "User already registered")
            session_id, refresh_token = _start_session(cur, user["id"])
            _audit(cur, "auth.signup", user["id"], {"email": email})
        return self._session(user, session_id, refresh_token)

    def sign_in(self, email: str, password: str) -> Session:
        email = (email or "").strip().lower()
        with owner_transaction() as cur:
            cur.execute(
                "select * from auth.users where email = %s and is_sso_user = false",
                (email,),
            )
            user = cur.fetchone()
        stored = (user or {}).get("encrypted_password") or ""
        if not _password_matches(password, stored, self._decoy_hash) or user["deleted_at"]:
            self._record_failed_sign_in(email, user)
            raise INVALID_CREDENTIALS
        if user["banned_until"] and user["banned_until"].timestamp() > time.time():
            raise AuthFailure(400, "user_banned", "User is banned")
        with owner_transaction() as cur:
            cur.execute(
                "update auth.users set last_sign_in_at = now() where id = %s", (user["id"],)
            )
            session_id, refresh_token = _start_session(cur, user["id"])
            _audit(cur, "auth.login", user["id"], {"session_id": str(session_id)})
        return self._session(user, session_id, refresh_token)

    def check_credentials(self, email: str, password: str) -> str:
        """The normalised email, or AuthFailure saying what is wrong (GoTrue's codes)."""
        return validate_credentials(email, password, self._settings.PASSWORD_MIN_LENGTH)

    # refresh and sign-out ---------------------------------------------------------------

    def refresh(self, refresh_token: str) -> Session:
        with owner_transaction() as cur:
            cur.execute(
                "select id, revoked, session_id, user_id from auth.refresh_tokens"
                " where token = %s for update",
                (_digest(refresh_token),),
            )
            row = cur.fetchone()
            if row is None or row["session_id"] is None:
                raise AuthFailure(
                    400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found"
                )
            if row["revoked"]:
                cur.execute("delete from auth.sessions where id = %s", (row["session_id"],))
                _audit(
                    cur,
                    "auth.refresh_token_reused",
                    uuid.UUID(row["user_id"]),
                    {"session_id": str(row["session_id"])},
                )
        if row["revoked"]:
            # reported after the commit above, so the revoked session stays revoked
            raise AuthFailure(
                400, "refresh_token_already_used", "Invalid Refresh Token: Already Used"
            )
        with owner_transaction() as cur:
            user, new_token = _rotate(cur, row)
        return self._session(user, row["session_id"], new_token)

    def sign_out(self, auth, scope: str = "global") -> None:
        if scope not in SIGN_OUT_SCOPES:
            raise AuthFailure(
                400, "validation_failed", f"scope must be one of {', '.join(SIGN_OUT_SCOPES)}"
            )
        condition = {
            "local": "id = %(session_id)s",
            "global": "user_id = %(user_id)s",
            "others": "user_id = %(user_id)s and id <> %(session_id)s",
        }[scope]
        with owner_transaction() as cur:
            cur.execute(
                f"delete from auth.sessions where {condition}",  # noqa: S608 (fixed choices)
                {"session_id": auth.session_id, "user_id": auth.user_id},
            )
            _audit(
                cur,
                "auth.logout",
                auth.user_id,
                {"scope": scope, "session_id": str(auth.session_id)},
            )

    # reading users ----------------------------------------------------------------------

    def get_user(self, user_id) -> dict | None:
        with owner_transaction() as cur:
            cur.execute("select * from auth.users where id = %s", (user_id,))
            row = cur.fetchone()
        return gotrue_user(row) if row else None

    # internals --------------------------------------------------------------------------

    def _session(self, user: dict, session_id, refresh_token: str) -> Session:
        now = int(time.time())
        expiry = self._settings.JWT_EXPIRY
        claims = {
            "aud": self._settings.JWT_AUDIENCE,
            "exp": now + expiry,
            "iat": now,
            "iss": self._settings.issuer,
            "sub": str(user["id"]),
            "email": user["email"],
            "phone": user.get("phone") or "",
            "app_metadata": user.get("raw_app_meta_data") or {},
            "user_metadata": user.get("raw_user_meta_data") or {},
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": str(session_id),
            "is_anonymous": bool(user.get("is_anonymous")),
        }
        return Session(
            self._signer.sign(claims), refresh_token, expiry, now + expiry, gotrue_user(user)
        )

    def _record_failed_sign_in(self, email: str, user: dict | None) -> None:
        with owner_transaction() as cur:
            _audit(
                cur,
                "auth.login_failed",
                user["id"] if user else None,
                {"email": email[:255], "known_user": user is not None},
            )


def validate_credentials(email: str, password: str, minimum_length: int) -> str:
    """The normalised email, or AuthFailure saying what is wrong (GoTrue's codes)."""
    email = (email or "").strip().lower()
    if not EMAIL.match(email) or len(email) > 255:
        raise AuthFailure(
            400, "validation_failed", "Unable to validate email address: invalid format"
        )
    if len(password or "") < minimum_length:
        raise AuthFailure(
            422,
            "weak_password",
            f"Password should be at least {minimum_length} characters.",
            {"weak_password": {"reasons": ["length"]}},
        )
    if len(password.encode()) > 72:
        raise AuthFailure(
            422,
            "weak_password",
            "Password cannot be longer than 72 bytes.",
            {"weak_password": {"reasons": ["length"]}},
        )
    return email


def hash_password(password: str) -> str:
    """The bcrypt hash (cost 10) GoTrue keeps in auth.users.encrypted_password."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()


def insert_user(cur, email: str, hashed: str, data: dict) -> dict | None:
    """Insert a confirmed email user (the trigger adds the profile); None if the email is taken.

    Sign-up and `velro user create` both come here, so both write the row GoTrue would.
    """
    cur.execute(
        """insert into auth.users (instance_id, id, aud, role, email, encrypted_password,
                email_confirmed_at, last_sign_in_at, raw_app_meta_data, raw_user_meta_data,
                created_at, updated_at, is_anonymous)
            values (%s, %s, 'authenticated', 'authenticated', %s, %s, now(), now(), %s, %s,
                now(), now(), false)
            on conflict (email) where is_sso_user = false do nothing
            returning *""",
        (
            INSTANCE_ID,
            uuid.uuid4(),
            email,
            hashed,
            Jsonb({"provider": "email", "providers": ["email"]}),
            Jsonb(data),
        ),
    )
    return cur.fetchone()


def _start_session(cur, user_id) -> tuple[uuid.UUID, str]:
    session_id = uuid.uuid4()
    cur.execute(
        "insert into auth.sessions (id, user_id, created_at, updated_at, aal, user_agent, ip)"
        " values (%s, %s, now(), now(), 'aal1', %s, %s)",
        (session_id, user_id, request.user_agent.string[:255] or None, request.remote_addr),
    )
    return session_id, _issue_refresh_token(cur, user_id, session_id, parent=None)


def _issue_refresh_token(cur, user_id, session_id, parent: str | None) -> str:
    token = secrets.token_urlsafe(32)
    cur.execute(
        "insert into auth.refresh_tokens (instance_id, token, user_id, revoked, created_at,"
        " updated_at, parent, session_id) values (%s, %s, %s, false, now(), now(), %s, %s)",
        (INSTANCE_ID, _digest(token), str(user_id), parent, session_id),
    )
    return token


def _rotate(cur, row: dict) -> tuple[dict, str]:
    cur.execute(
        "update auth.refresh_tokens set revoked = true, updated_at = now()"
        " where id = %s and not revoked returning token",
        (row["id"],),
    )
    revoked = cur.fetchone()
    if revoked is None:  # a concurrent refresh won the race
        raise AuthFailure(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used")
    cur.execute(
        "update auth.sessions set refreshed_at = now(), updated_at = now() where id = %s",
        (row["session_id"],),
    )
    cur.execute("select * from auth.users where id = %s", (row["user_id"],))
    user = cur.fetchone()
    _refuse_unusable_account(user)  # raising rolls the rotation back
    token = _issue_refresh_token(cur, user["id"], row["session_id"], parent=revoked["token"])
    return user, token


def _refuse_unusable_account(user: dict | None) -> None:
    """A refresh checks the account as sign-in does: a deleted or banned user gets no session."""
    if user is None or user["deleted_at"]:
        raise AuthFailure(400, "user_not_found", "This account does not exist")
    if user["banned_until"] and user["banned_until"].timestamp() > time.time():
        raise AuthFailure(400, "user_banned", "User is banned")


def _password_matches(password: str, stored: str, decoy: bytes) -> bool:
    candidate = (password or "").encode()[:72]
    if not stored:
        bcrypt.checkpw(candidate, decoy)
        return False
    try:
        return bcrypt.checkpw(candidate, stored.encode())
    except ValueError:  # not a bcrypt hash
        return False


def _digest(token: str) -> str:
    return hashlib.sha256((token or "").encode()).hexdigest()


def _audit(cur, event: str, actor_id, details: dict) -> None:
    details = {**details, "ip": request.remote_addr}
    rpc(
        cur,
        "private.audit",
        p_event=event,
        p_actor_id=actor_id,
        p_subject_type="user",
        p_subject_id=str(actor_id) if actor_id else None,
        p_team_id=None,
        p_details=Jsonb(details),
    )


def gotrue_user(row: dict) -> dict:
    """An auth.users row as GoTrue's user JSON."""

    def iso(value):
        return value.isoformat() if value else None

    return {
        "id": str(row["id"]),
        "aud": row.get("aud") or "authenticated",
        "role": row.get("role") or "authenticated",
        "email": row["email"],
        "email_confirmed_at": iso(row.get("email_confirmed_at")),
        "phone": row.get("phone") or "",
        "confirmed_at": iso(row.get("confirmed_at")),
        "last_sign_in_at": iso(row.get("last_sign_in_at")),
        "app_metadata": row.get("raw_app_meta_data") or {},
        "user_metadata": row.get("raw_user_meta_data") or {},
        "identities": [],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row.get("updated_at")),
        "is_anonymous": bool(row.get("is_anonymous")),
    }
