"""Request and response schemas of /api/v1/auth (they also document the OpenAPI spec)."""

from __future__ import annotations

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate, validates

from backend.auth.accounts import MAX_PASSWORD_BYTES
from backend.auth.providers.base import SIGN_OUT_SCOPES
from backend.config import Settings
from backend.email_address import MAX_EMAIL_LENGTH
from backend.http.text import Email, Text


class CredentialsSchema(Schema):
    email = Email(required=True, validate=validate.Length(max=MAX_EMAIL_LENGTH))
    password = Text(
        required=True,
        load_only=True,
        metadata={
            # the default of PASSWORD_MIN_LENGTH; bcrypt reads at most MAX_PASSWORD_BYTES
            "minLength": Settings.PASSWORD_MIN_LENGTH,
            "maxLength": MAX_PASSWORD_BYTES,
            "description": f"{Settings.PASSWORD_MIN_LENGTH} characters or more (the"
            f" PASSWORD_MIN_LENGTH setting), at most {MAX_PASSWORD_BYTES} bytes in UTF-8",
        },
    )

    # the same rules as accounts.validate_credentials, in this API's words
    @validates("password")
    def _password_length(self, value: str, **_kwargs) -> None:
        minimum = current_app.config["SETTINGS"].PASSWORD_MIN_LENGTH
        if len(value) < minimum:
            raise ValidationError(f"Use at least {minimum} characters.")
        if len(value.encode()) > MAX_PASSWORD_BYTES:
            raise ValidationError(f"Use at most {MAX_PASSWORD_BYTES} bytes.")


class SignupSchema(CredentialsSchema):
    display_name = Text(validate=validate.Length(min=1, max=100))


class RefreshSchema(Schema):
    refresh_token = Text(required=True, validate=validate.Length(min=1, max=255))


class LogoutSchema(Schema):
    scope = Text(
        load_default="local",
        validate=validate.OneOf(SIGN_OUT_SCOPES),
        metadata={"description": "local: this session; others: all but this one; global: all"},
    )


class UserSchema(Schema):
    id = fields.UUID()
    email = Text()
    role = Text()
    created_at = Text()
    last_sign_in_at = Text(allow_none=True)
    email_confirmed_at = Text(allow_none=True)
    confirmation_sent_at = Text(allow_none=True)


class SessionSchema(Schema):
    access_token = Text(
        allow_none=True, metadata={"description": "null until the email is confirmed"}
    )
    token_type = Text(allow_none=True)
    expires_in = fields.Integer(allow_none=True)
    expires_at = fields.Integer(allow_none=True)
    refresh_token = Text(allow_none=True)
    user = fields.Nested(UserSchema)


class ProfileSchema(Schema):
    id = fields.UUID()
    email = Text()
    display_name = Text(allow_none=True)
    status = Text()
    credits = fields.Integer()
    plan = Text()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
