"""The local auth provider: users in auth.users, sessions and refresh tokens as GoTrue keeps them.

Passwords are bcrypt (cost ``BCRYPT_COST``) in ``auth.users.encrypted_password``; emails are stored
lowercased. A sign-in creates a row in ``auth.sessions`` and an opaque refresh token whose
sha256 is stored in ``auth.refresh_tokens``. A refresh token works once: using it revokes
it and issues a child (``parent`` links them). Presenting a revoked one again means it
leaked, so the whole session is deleted and every token of it stops working. Sign-ins,
failed sign-ins, sign-ups, confirmations, sign-outs and refresh-token reuse go to the
audit log.

Email confirmation works as in Supabase Auth: unless AUTH_AUTOCONFIRM, a sign-up gets no
session but an email with a six-digit code; ``auth.users.confirmation_token`` keeps its
token hash, shaped as GoTrue's sha224(email + code) but an HMAC under a key derived from
JWT_SECRET, which is also what the email offers as ``token_hash``. ``verify`` (POST
/auth/v1/verify) checks either, within an hour, sets
``email_confirmed_at`` and signs the user in; until then sign-in answers
``email_not_confirmed``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from datetime import UTC, datetime

import bcrypt
from psycopg.types.json import Jsonb

from backend.auth.accounts import (
    EMAIL_PROVIDER,
    INSTANCE_ID,
    hash_password,
    insert_user,
    validate_credentials,
)
from backend.auth.mailer import Mailer
from backend.auth.providers.base import SIGN_OUT_SCOPES, AuthFailure, Client, Session
from backend.auth.tokens import TokenSigner
from backend.cache import cache
from backend.cache.listener import announce
from backend.config import Settings
from backend.db import owner_transaction, rpc
from backend.email_address import is_email

# an emailed code is six digits: short-lived, and the verify route is rate limited per email
CONFIRMATION_LIFETIME = "1 hour"
CONFIRMATION_TYPES = ("signup", "email")
CODE = re.compile(r"[0-9]{6}")  # what a confirmation mail sends
MAX_CODE_FAILURES = 5  # wrong codes per address within CONFIRMATION_LIFETIME


INVALID_CREDENTIALS = AuthFailure(400, "invalid_credentials", "Invalid login credentials")
INVALID_CONFIRMATION = AuthFailure(403, "otp_expired", "Token has expired or is invalid")
TOO_MANY_CODES = AuthFailure(
    429,
    "over_request_rate_limit",
    "Too many wrong codes for this address: use the token_hash from the email, or try in an hour",
)


class LocalProvider:
    """Signs people up and in against auth.users; issues Supabase-shaped sessions."""

    def __init__(self, settings: Settings, signer: TokenSigner, mailer: Mailer):
        self._settings = settings
        self._signer = signer
        self._mailer = mailer
        # a token_hash is keyed, so nobody can compute one from an address and a guess
        self._code_key = hmac.new(
            settings.JWT_SECRET.encode(), b"velro confirmation codes", hashlib.sha256
        ).digest()
        # compared against when the email is unknown, so both failures take as long
        self._decoy_hash = bcrypt.hashpw(
            secrets.token_bytes(16), bcrypt.gensalt(settings.BCRYPT_COST)
        )

    # sign-up and sign-in ----------------------------------------------------------------

    def sign_up(
        self, email: str, password: str, data: dict | None = None, *, client: Client
    ) -> Session:
        """A session when sign-ups are confirmed at once; else tokenless, and a code is mailed."""
        email = self.check_credentials(email, password)
        confirmed = self._settings.autoconfirm
        hashed = hash_password(password, self._settings.BCRYPT_COST)
        with owner_transaction() as cur:
            user = insert_user(cur, email, hashed, data or {}, confirmed)
            if user is None:
                if confirmed:
                    raise AuthFailure(422, "user_already_exists", "User already registered")
                # With confirmations on, GoTrue answers a taken address as it answers a new
                # one: sign-up must not tell who has an account (login and resend do not).
                taken = self._taken_address(cur, email, data)
                return Session(None, None, None, None, taken)
            _audit(cur, client, "auth.signup", user["id"], {"email": email, "confirmed": confirmed})
            if not confirmed:
                # mailed before the commit: a message that cannot leave undoes the sign-up
                user = self._send_confirmation(cur, user)
                return Session(None, None, None, None, gotrue_user(user))
            session_id, refresh_token = _start_session(cur, user["id"], client)
        return self._session(user, session_id, refresh_token)

    def resend_confirmation(self, email: str) -> None:
        """A new code for an unconfirmed sign-up; silent for any other address."""
        email = (email or "").strip().lower()
        with owner_transaction() as cur:
            cur.execute(
                "select * from auth.users where email = %s and is_sso_user = false"
                " and email_confirmed_at is null and deleted_at is null for update",
                (email,),
            )
            user = cur.fetchone()
            if user is not None:
                self._send_confirmation(cur, user)

    def verify(
        self, kind: str, token_hash: str, token: str, email: str, *, client: Client
    ) -> Session:
        """Confirm an email by token_hash, or by the emailed code with its address; sign in."""
        if kind not in CONFIRMATION_TYPES:
            raise AuthFailure(
                400, "validation_failed", "Verify requires a verification type: signup or email"
            )
        if token_hash:
            return self._confirm(token_hash, client)
        if token and email:
            return self._confirm_by_code(email.strip().lower(), token.strip(), client)
        raise AuthFailure(
            400, "validation_failed", "Verify requires either a token_hash or a token and its email"
        )

    def _confirm_by_code(self, email: str, code: str, client: Client) -> Session:
        # Six digits are guessable: after a few wrong codes within the code's lifetime the
        # address takes codes no more (its token_hash still works), whatever the IP. Only a
        # six-digit code with a whole address is tried, so no other split of the same
        # characters reaches the same hash past the address's count.
        if not (CODE.fullmatch(code) and is_email(email)):
            raise INVALID_CONFIRMATION
        token_hash = confirmation_token_hash(self._code_key, email, code)
        with owner_transaction() as cur:
            # the pending account's row locked from the count to the failure's record:
            # guesses sent at once are counted one after the other, not all against zero
            cur.execute(
                "select id from auth.users where email = %s and is_sso_user = false"
                " and email_confirmed_at is null for update",
                (email,),
            )
            pending = cur.fetchone()
            if pending and _recent_code_failures(cur, pending["id"]) >= MAX_CODE_FAILURES:
                raise TOO_MANY_CODES
            confirmed = _confirm_in(cur, token_hash, client)
            if confirmed is None and pending:
                _audit(
                    cur, client, "auth.confirmation_code_failed", pending["id"], {"email": email}
                )
        if confirmed is None:
            raise INVALID_CONFIRMATION
        return self._session(*confirmed)

    def _confirm(self, token_hash: str, client: Client) -> Session:
        with owner_transaction() as cur:
            confirmed = _confirm_in(cur, token_hash, client)
        if confirmed is None:
            raise INVALID_CONFIRMATION
        return self._session(*confirmed)

    def sign_in(self, email: str, password: str, *, client: Client) -> Session:
        email = (email or "").strip().lower()
        with owner_transaction() as cur:
            cur.execute(
                "select * from auth.users where email = %s and is_sso_user = false",
                (email,),
            )
            user = cur.fetchone()
        stored = (user or {}).get("encrypted_password") or ""
        if not _password_matches(password, stored, self._decoy_hash) or user["deleted_at"]:
            self._record_failed_sign_in(email, user, client)
            raise INVALID_CREDENTIALS
        if user["banned_until"] and user["banned_until"].timestamp() > time.time():
            raise AuthFailure(400, "user_banned", "User is banned")
        if user["email_confirmed_at"] is None:
            raise AuthFailure(400, "email_not_confirmed", "Email not confirmed")
        with owner_transaction() as cur:
            cur.execute(
                "update auth.users set last_sign_in_at = now() where id = %s", (user["id"],)
            )
            session_id, refresh_token = _start_session(cur, user["id"], client)
            _audit(cur, client, "auth.login", user["id"], {"session_id": str(session_id)})
        return self._session(user, session_id, refresh_token)

    def check_credentials(self, email: str, password: str) -> str:
        """The normalised email, or AuthFailure saying what is wrong (GoTrue's codes)."""
        return validate_credentials(email, password, self._settings.PASSWORD_MIN_LENGTH)

    # refresh and sign-out ---------------------------------------------------------------

    def refresh(self, refresh_token: str, *, client: Client) -> Session:
        # One transaction, the token's row locked from the lookup to the rotation: of two
        # refreshes with one token, the second waits, then finds it used, as a reuse. Its
        # session's row is locked first: sign-out and reuse detection delete the session,
        # whose cascade then takes its tokens, and taking the two the other way round
        # deadlocked with them.
        digest = _digest(refresh_token)
        with owner_transaction() as cur:
            cur.execute(
                "select 1 from auth.sessions where id ="
                " (select session_id from auth.refresh_tokens where token = %s) for update",
                (digest,),
            )
            cur.execute(
                "select id, token, revoked, session_id, user_id from auth.refresh_tokens"
                " where token = %s for update",
                (digest,),
            )
            row = cur.fetchone()
            if row is None or row["session_id"] is None:
                raise AuthFailure(
                    400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found"
                )
            if not row["revoked"]:
                user, new_token = _rotate(cur, row)
            else:
                cur.execute("delete from auth.sessions where id = %s", (row["session_id"],))
                announce(cur, [("session", row["session_id"])])
                _audit(
                    cur,
                    client,
                    "auth.refresh_token_reused",
                    uuid.UUID(row["user_id"]),
                    {"session_id": str(row["session_id"])},
                )
        if row["revoked"]:
            cache().invalidate(f"session:{row['session_id']}")  # here at once; others by notice
            # reported after the commit above, so the revoked session stays revoked
            raise AuthFailure(
                400, "refresh_token_already_used", "Invalid Refresh Token: Already Used"
            )
        return self._session(user, row["session_id"], new_token)

    def sign_out(self, auth, scope: str = "global", *, client: Client) -> None:
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
                f"delete from auth.sessions where {condition} returning id",  # noqa: S608
                {"session_id": auth.session_id, "user_id": auth.user_id},
            )
            # announced by the app, not only by a trigger a hosted project may not have
            ended = [("session", row["id"]) for row in cur.fetchall()]
            announce(cur, ended)
            _audit(
                cur,
                client,
                "auth.logout",
                auth.user_id,
                {"scope": scope, "session_id": str(auth.session_id)},
            )
        cache().invalidate_many(f"{scope}:{ident}" for scope, ident in ended)

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

    def _taken_address(self, cur, email: str, data: dict | None) -> dict:
        """A sign-up's answer for an address that has an account: a confirmed one gets a
        made-up user, and nothing is written or mailed; an unconfirmed one gets a new code,
        as a new sign-up would. Its password stays the first sign-up's: as GoTrue says, a
        sign-up cannot prove who claims the address, so it may not change the account."""
        cur.execute(
            "select * from auth.users where email = %s and is_sso_user = false for update",
            (email,),
        )
        user = cur.fetchone()
        if user is not None and user["email_confirmed_at"] is None:
            return gotrue_user(self._send_confirmation(cur, user))
        now = datetime.now(UTC)
        made_up = {
            "id": uuid.uuid4(),
            "email": email,
            "raw_app_meta_data": EMAIL_PROVIDER,
            "raw_user_meta_data": data or {},
        }
        return gotrue_user(
            {**made_up, "confirmation_sent_at": now, "created_at": now, "updated_at": now}
        )

    def _send_confirmation(self, cur, user: dict) -> dict:
        code = f"{secrets.randbelow(1_000_000):06d}"
        token_hash = confirmation_token_hash(self._code_key, user["email"], code)
        cur.execute(
            "update auth.users set confirmation_token = %s, confirmation_sent_at = now()"
            " where id = %s returning *",
            (token_hash, user["id"]),
        )
        user = cur.fetchone()
        self._mailer.send(
            user["email"],
            "Confirm your email address",
            confirmation_text(self._settings.PUBLIC_URL, user["email"], code, token_hash),
        )
        return user

    def _record_failed_sign_in(self, email: str, user: dict | None, client: Client) -> None:
        with owner_transaction() as cur:
            _audit(
                cur,
                client,
                "auth.login_failed",
                user["id"] if user else None,
                {"email": email[:255], "known_user": user is not None},
            )


def confirmation_token_hash(key: bytes, email: str, code: str) -> str:
    """An emailed code's token hash, shaped as GoTrue's (56 hex characters) but keyed: GoTrue
    hashes the address and the code, which anyone can compute for every code without
    counting as a wrong guess."""
    return hmac.new(key, f"{email}\n{code}".encode(), hashlib.sha224).hexdigest()


def confirmation_text(public_url: str, email: str, code: str, token_hash: str) -> str:
    verify = f"{public_url.rstrip('/')}/auth/v1/verify"
    return (
        f"Welcome to Velro. Confirm that {email} is your address with this code:\n\n"
        f"    {code}\n\n"
        f"It works for {CONFIRMATION_LIFETIME}. Your app asks for it, or send it yourself:\n\n"
        f"    POST {verify}\n"
        f'    {{"type": "signup", "email": "{email}", "token": "{code}"}}\n\n'
        f'or, instead of email and token: {{"type": "signup", "token_hash": "{token_hash}"}}\n\n'
        "If you did not sign up, ignore this email: nothing happens without the code.\n"
    )


def _start_session(cur, user_id, client: Client) -> tuple[uuid.UUID, str]:
    session_id = uuid.uuid4()
    cur.execute(
        "insert into auth.sessions (id, user_id, created_at, updated_at, aal, user_agent, ip)"
        " values (%s, %s, now(), now(), 'aal1', %s, %s)",
        (session_id, user_id, client.user_agent, client.ip),
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


def _confirm_in(cur, token_hash: str, client: Client) -> tuple[dict, uuid.UUID, str] | None:
    """Confirm the address whose live code or link has this hash and open a session: (the
    user, the session id, its refresh token), or None when no such code lives."""
    cur.execute(
        "update auth.users set email_confirmed_at = now(), confirmation_token = '',"
        " updated_at = now(), last_sign_in_at = now()"
        " where confirmation_token = %s and confirmation_token <> ''"
        " and confirmation_sent_at > now() - %s::interval and deleted_at is null"
        " returning *",
        (token_hash, CONFIRMATION_LIFETIME),
    )
    user = cur.fetchone()
    if user is None:
        return None
    _audit(cur, client, "auth.email_confirmed", user["id"], {"email": user["email"]})
    session_id, refresh_token = _start_session(cur, user["id"], client)
    return user, session_id, refresh_token


def _rotate(cur, row: dict) -> tuple[dict, str]:
    """Revoke the (locked, unrevoked) token and issue its child in the same session."""
    cur.execute(
        "update auth.refresh_tokens set revoked = true, updated_at = now() where id = %s",
        (row["id"],),
    )
    cur.execute(
        "update auth.sessions set refreshed_at = now(), updated_at = now() where id = %s",
        (row["session_id"],),
    )
    cur.execute("select * from auth.users where id = %s", (row["user_id"],))
    user = cur.fetchone()
    _refuse_unusable_account(user)  # raising rolls the rotation back
    token = _issue_refresh_token(cur, user["id"], row["session_id"], parent=row["token"])
    return user, token


def _recent_code_failures(cur, user_id) -> int:
    cur.execute(
        "select count(*) as failures from private.audit_events"
        " where actor_id = %s and event = 'auth.confirmation_code_failed'"
        " and occurred_at > now() - %s::interval",
        (user_id, CONFIRMATION_LIFETIME),
    )
    return cur.fetchone()["failures"]


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


def _audit(cur, client: Client, event: str, actor_id, details: dict) -> None:
    details = {**details, "ip": client.ip}
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
        "confirmation_sent_at": iso(row.get("confirmation_sent_at")),
        "last_sign_in_at": iso(row.get("last_sign_in_at")),
        "app_metadata": row.get("raw_app_meta_data") or {},
        "user_metadata": row.get("raw_user_meta_data") or {},
        "identities": [],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row.get("updated_at")),
        "is_anonymous": bool(row.get("is_anonymous")),
    }
