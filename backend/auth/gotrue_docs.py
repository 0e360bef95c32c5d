"""The OpenAPI description of /auth/v1, the Supabase Auth (GoTrue) routes.

Those routes are a plain Flask blueprint: they parse GoTrue's JSON by hand so that the
official clients get GoTrue's own answers, errors included, which smorest's validation
would change. So their request and response shapes are declared here, from what
``backend.auth.gotrue`` and the local provider read and write, and added to the document
as paths of their own.
"""

from __future__ import annotations

from typing import ClassVar

from apispec import APISpec
from flask import Flask
from marshmallow import INCLUDE, Schema, fields, validate

from backend.auth.accounts import MAX_PASSWORD_BYTES
from backend.auth.guard import BEARER_SCHEME
from backend.auth.providers.base import SIGN_OUT_SCOPES
from backend.config import Settings
from backend.email_address import MAX_EMAIL_LENGTH
from backend.http.access import EXTENSION_KEY, access_of

TAG = "gotrue"
BLUEPRINT = "gotrue"  # the name of backend.auth.gotrue.blp
CONFIRMATION_TYPES = ("signup", "email")


class GoTrueErrorSchema(Schema):
    """GoTrue's own error shape (not error/message/request_id): its clients parse it."""

    code = fields.Integer(required=True, metadata={"description": "the HTTP status again"})
    error_code = fields.String(required=True, metadata={"description": "e.g. invalid_credentials"})
    msg = fields.String(required=True, metadata={"description": "what went wrong"})


class WeakPasswordSchema(Schema):
    reasons = fields.List(fields.String(), required=True, metadata={"example": ["length"]})


class GoTrueSignupErrorSchema(GoTrueErrorSchema):
    """GoTrue's error shape; a refused password (error_code weak_password) also says why."""

    weak_password = fields.Nested(WeakPasswordSchema)


class GoTrueUserSchema(Schema):
    id = fields.UUID()
    aud = fields.String()
    role = fields.String()
    email = fields.String()
    email_confirmed_at = fields.DateTime(allow_none=True)
    phone = fields.String()
    confirmed_at = fields.DateTime(allow_none=True)
    confirmation_sent_at = fields.DateTime(allow_none=True)
    last_sign_in_at = fields.DateTime(allow_none=True)
    app_metadata = fields.Dict()
    user_metadata = fields.Dict(metadata={"description": "the sign-up's data"})
    identities = fields.List(fields.Dict())
    created_at = fields.DateTime()
    updated_at = fields.DateTime(allow_none=True)
    is_anonymous = fields.Boolean()


class GoTrueSessionSchema(Schema):
    access_token = fields.String(metadata={"description": "a JWT for Authorization: Bearer"})
    token_type = fields.String(metadata={"example": "bearer"})
    expires_in = fields.Integer(metadata={"description": "seconds"})
    expires_at = fields.Integer(metadata={"description": "Unix time"})
    refresh_token = fields.String(metadata={"description": "single use: refreshing rotates it"})
    user = fields.Nested(GoTrueUserSchema)


class GoTrueRequest(Schema):
    """A request body: GoTrue reads the fields it knows and ignores any others.

    A field sent as null counts as not sent.
    """

    class Meta:
        unknown = INCLUDE


class GoTrueSignupSchema(GoTrueRequest):
    email = fields.Email(
        required=True,
        validate=validate.Length(max=MAX_EMAIL_LENGTH),
        metadata={"description": "anything else answers 400 validation_failed"},
    )
    password = fields.String(
        required=True,
        metadata={
            # the default of PASSWORD_MIN_LENGTH; bcrypt reads at most MAX_PASSWORD_BYTES
            "minLength": Settings.PASSWORD_MIN_LENGTH,
            "maxLength": MAX_PASSWORD_BYTES,
            "description": f"{Settings.PASSWORD_MIN_LENGTH} characters or more (the"
            f" PASSWORD_MIN_LENGTH setting), at most {MAX_PASSWORD_BYTES} bytes in UTF-8;"
            " otherwise 422 weak_password",
        },
    )
    data = fields.Raw(
        metadata={
            "description": "user metadata, kept as user_metadata when it is an object;"
            " any other value is ignored"
        }
    )


class GoTrueVerifySchema(GoTrueRequest):
    # either the link's token_hash, or the emailed code with its address
    OPENAPI_RULES: ClassVar[dict] = {
        "anyOf": [{"required": ["token_hash"]}, {"required": ["token", "email"]}]
    }

    type = fields.String(required=True, validate=validate.OneOf(CONFIRMATION_TYPES))
    token_hash = fields.String(
        allow_none=True,
        validate=validate.Length(min=1),
        metadata={"description": "from the confirmation link"},
    )
    token = fields.String(
        allow_none=True,
        validate=validate.Length(min=1),
        metadata={"description": "the emailed code, sent with email"},
    )
    email = fields.String(
        allow_none=True,
        validate=validate.Length(min=1),
        metadata={"description": "the address the code was sent to (compared, not validated)"},
    )


class GoTrueResendSchema(GoTrueRequest):
    type = fields.String(required=True, validate=validate.OneOf(CONFIRMATION_TYPES))
    email = fields.String(
        allow_none=True,
        metadata={"description": "compared with pending sign-ups; any other value is a no-op"},
    )


class GoTruePasswordGrantSchema(GoTrueRequest):
    email = fields.String(required=True, metadata={"description": "compared, not validated"})
    password = fields.String(required=True)


class GoTrueRefreshGrantSchema(GoTrueRequest):
    refresh_token = fields.String(required=True)


class JsonWebKeySchema(Schema):
    """A public key: EC P-256 (crv, x, y) or RSA (n, e)."""

    kty = fields.String(metadata={"example": "EC"})
    kid = fields.String()
    alg = fields.String(metadata={"example": "ES256"})
    use = fields.String(metadata={"example": "sig"})
    key_ops = fields.List(fields.String())
    crv = fields.String()
    x = fields.String()
    y = fields.String()
    n = fields.String()
    e = fields.String()


class JsonWebKeySetSchema(Schema):
    keys = fields.List(
        fields.Nested(JsonWebKeySchema),
        metadata={"description": "empty when tokens are signed with a shared secret (HS256)"},
    )


class EmptySchema(Schema):
    pass


def _json(schema) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


GOTRUE_SHAPE = "GoTrue's error shape (code, error_code, msg), not this API's: "
BAD_JSON = "the body is not a JSON object or a field is not a string (bad_json)"
UNSTORABLE = "a text field holds a NUL or an unpaired surrogate (validation_failed)"
TOO_MANY = (
    "over_request_rate_limit: too many attempts from this address or for this email;"
    " Retry-After says when to try again"
)


def _errors(reasons: dict[int, str], schema=GoTrueErrorSchema) -> dict:
    """Each error answer of an operation, and why; every one in GoTrue's shape."""
    return {
        str(status): {"description": GOTRUE_SHAPE + why, **_json(schema)}
        for status, why in reasons.items()
    }


def _body(schema, description: str) -> dict:
    return {"required": True, "description": description, **_json(schema)}


SESSION = {"description": "Signed in", **_json(GoTrueSessionSchema)}
BEARER = [{BEARER_SCHEME: []}]


def _operations() -> dict[str, dict]:
    """Each view of the blueprint (by function name): its operations by method."""
    return {
        "signup": {
            "post": {
                "operationId": "gotrue_signup",
                "summary": "Sign up with email and password",
                "requestBody": _body(GoTrueSignupSchema, "The new account"),
                "responses": {
                    "200": {
                        "description": "A session, or the user alone while the email waits"
                        " for confirmation",
                        **_json({"anyOf": [GoTrueSessionSchema, GoTrueUserSchema]}),
                    },
                    **_errors(
                        {
                            400: f"{BAD_JSON}, or the email is not an address (validation_failed)",
                            429: TOO_MANY,
                            503: "the confirmation email could not be sent; nothing was kept"
                            " (unexpected_failure)",
                        }
                    ),
                    **_errors(
                        {
                            422: "the password is too short or over 72 bytes (weak_password,"
                            " with weak_password.reasons), the email is already signed up"
                            f" (user_already_exists), or {UNSTORABLE}"
                        },
                        GoTrueSignupErrorSchema,
                    ),
                },
            }
        },
        "verify": {
            "post": {
                "operationId": "gotrue_verify",
                "summary": "Confirm an email: token_hash, or token and email",
                "requestBody": _body(GoTrueVerifySchema, "The confirmation"),
                "responses": {
                    "200": SESSION,
                    **_errors(
                        {
                            400: f"{BAD_JSON}; type is not signup or email, or neither"
                            " token_hash nor token with email was sent (validation_failed)",
                            403: "otp_expired: the code or token_hash is wrong, used, or over"
                            " an hour old",
                            422: UNSTORABLE,
                            429: f"{TOO_MANY}; or five wrong codes for this email within the"
                            " hour (then only its token_hash works)",
                        }
                    ),
                },
            }
        },
        "resend": {
            "post": {
                "operationId": "gotrue_resend",
                "summary": "Mail a new confirmation code (same answer for unknown emails)",
                "requestBody": _body(GoTrueResendSchema, "Where to send it"),
                "responses": {
                    "200": {"description": "Sent if the account exists", **_json(EmptySchema)},
                    **_errors(
                        {
                            400: f"{BAD_JSON}, or type is not signup or email (validation_failed)",
                            422: UNSTORABLE,
                            429: TOO_MANY,
                            503: "the confirmation email could not be sent (unexpected_failure)",
                        }
                    ),
                },
            }
        },
        "token": {
            "post": {
                "operationId": "gotrue_token",
                "summary": "Sign in (grant_type=password) or refresh (grant_type=refresh_token)",
                "parameters": [
                    {
                        "in": "query",
                        "name": "grant_type",
                        "required": True,
                        "schema": {"type": "string", "enum": ["password", "refresh_token"]},
                    }
                ],
                "requestBody": _body(
                    {"anyOf": [GoTruePasswordGrantSchema, GoTrueRefreshGrantSchema]},
                    "Credentials for password, the refresh token for refresh_token",
                ),
                "responses": {
                    "200": SESSION,
                    **_errors(
                        {
                            400: f"{BAD_JSON}; grant_type missing or another value"
                            " (validation_failed); a wrong email or password"
                            " (invalid_credentials), an unconfirmed email (email_not_confirmed)"
                            " or a banned user (user_banned); a refresh token unknown"
                            " (refresh_token_not_found) or already used"
                            " (refresh_token_already_used, which also ends its session), or"
                            " its account gone (user_not_found)",
                            422: UNSTORABLE,
                            429: f"{TOO_MANY} (password sign-ins only)",
                        }
                    ),
                },
            }
        },
        "logout": {
            "post": {
                "operationId": "gotrue_logout",
                "summary": "Sign out",
                "security": BEARER,
                "parameters": [
                    {
                        "in": "query",
                        "name": "scope",
                        "schema": {
                            "type": "string",
                            "enum": list(SIGN_OUT_SCOPES),
                            "default": "global",
                        },
                        "description": "global: every session; local: this one; others: all"
                        " but this one",
                    }
                ],
                "responses": {
                    "204": {"description": "Signed out"},
                    **_errors(
                        {
                            400: "scope is not global, local or others (validation_failed)",
                            401: "no bearer token (no_authorization)",
                            403: "the token is invalid or expired (bad_jwt), or its session"
                            " ended (session_not_found)",
                        }
                    ),
                },
            }
        },
        "user": {
            "get": {
                "operationId": "gotrue_user",
                "summary": "The signed-in user",
                "security": BEARER,
                "responses": {
                    "200": {"description": "The user", **_json(GoTrueUserSchema)},
                    **_errors(
                        {
                            401: "no bearer token (no_authorization)",
                            403: "the token is invalid or expired (bad_jwt), its session ended"
                            " (session_not_found), or its user is gone (user_not_found)",
                        }
                    ),
                },
            }
        },
        "jwks": {
            "get": {
                "operationId": "gotrue_jwks",
                "summary": "The public keys that verify this service's access tokens",
                "responses": {"200": {"description": "A JWKS", **_json(JsonWebKeySetSchema)}},
            }
        },
    }


def document(app: Flask, spec: APISpec) -> None:
    """Add the /auth/v1 paths, from the blueprint's own rules (registered before this).

    A route of the blueprint that is not described here fails the app's start (KeyError),
    so the document cannot silently lag behind the routes.
    """
    spec.tag(
        {
            "name": TAG,
            "description": "Supabase Auth (GoTrue) compatible routes, for the official"
            " Supabase clients. Errors come in GoTrue's shape: code, error_code, msg.",
        }
    )
    described = _operations()
    for rule in app.url_map.iter_rules():
        blueprint, _, view = rule.endpoint.partition(".")
        if blueprint != BLUEPRINT:
            continue
        operations = described[view]
        declared = access_of(app, rule.endpoint, "get")  # one view per rule here
        for operation in operations.values():
            operation["tags"] = [TAG]
            if declared is not None:
                operation[EXTENSION_KEY] = declared
        spec.path(rule=rule, operations=operations)
