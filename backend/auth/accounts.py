"""Email accounts as GoTrue keeps them: the credential rules, the password hash, the row.

Sign-up (the local provider) and ``velro user create`` both come here, so both accept the
same input and write the row GoTrue would. What an address looks like is
``backend.email_address``'s rule, which the request schemas share. Nothing here needs a
request or the app.
"""

from __future__ import annotations

import uuid

import bcrypt
from psycopg.types.json import Jsonb

from backend.auth.providers.base import AuthFailure
from backend.email_address import is_email

MAX_PASSWORD_BYTES = 72  # bcrypt ignores what follows
INSTANCE_ID = "00000000-0000-0000-0000-000000000000"


def validate_credentials(email: str, password: str, minimum_length: int) -> str:
    """The normalised email, or AuthFailure saying what is wrong (GoTrue's codes)."""
    email = (email or "").strip().lower()
    if not is_email(email):
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
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise AuthFailure(
            422,
            "weak_password",
            "Password cannot be longer than 72 bytes.",
            {"weak_password": {"reasons": ["length"]}},
        )
    return email


def hash_password(password: str, cost: int) -> str:
    """The bcrypt hash GoTrue keeps in auth.users.encrypted_password (GoTrue's cost is 10)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


# the app_metadata of a user who signs in with email and password, as GoTrue writes it
EMAIL_PROVIDER = {"provider": "email", "providers": ["email"]}


def insert_user(cur, email: str, hashed: str, data: dict, confirmed: bool = True) -> dict | None:
    """Insert an email user (the trigger adds the profile); None if the email is taken.

    Sign-up and `velro user create` both come here, so both write the row GoTrue would;
    an operator's user is confirmed, a sign-up only with AUTH_AUTOCONFIRM.
    """
    cur.execute(
        """insert into auth.users (instance_id, id, aud, role, email, encrypted_password,
                email_confirmed_at, last_sign_in_at, raw_app_meta_data, raw_user_meta_data,
                created_at, updated_at, is_anonymous)
            values (%s, %s, 'authenticated', 'authenticated', %s, %s,
                case when %s then now() end, case when %s then now() end, %s, %s,
                now(), now(), false)
            on conflict (email) where is_sso_user = false do nothing
            returning *""",
        (
            INSTANCE_ID,
            uuid.uuid4(),
            email,
            hashed,
            confirmed,
            confirmed,
            Jsonb(EMAIL_PROVIDER),
            Jsonb(data),
        ),
    )
    return cur.fetchone()
