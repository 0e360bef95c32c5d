"""The OpenAPI description of /auth/v1, the Supabase Auth (GoTrue) routes.

Those routes are a plain Flask blueprint: they parse GoTrue's JSON by hand so that the
official clients get GoTrue's own answers, errors included, which smorest's validation
would change. So their request and response shapes are declared here, from what
``backend.auth.gotrue`` and the local provider read and write, and added to the document
as paths of their own.
"""

from __future__ import annotations

from apispec import APISpec
from flask import Flask
from marshmallow import Schema, fields, validate

from backend.auth.guard import BEARER_SCHEME
from backend.auth.providers.base import SIGN_OUT_SCOPES
from backend.http.access import EXTENSION_KEY, access_of

TAG = "gotrue"
BLUEPRINT = "gotrue"  # the name of backend.auth.gotrue.blp
CONFIRMATION_TYPES = ("signup", "email")


class GoTrueErrorSchema(Schema):
    code = fields.Integer(metadata={"description": "the HTTP status again"})
    error_code = fields.String(metadata={"description": "e.g. invalid_credentials"})
    msg = fields.String(metadata={"description": "what went wrong"})


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


class GoTrueSignupSchema(Schema):
    email = fields.Email(required=True)
    password = fields.String(required=True)
    data = fields.Dict(metadata={"description": "user metadata, kept as user_metadata"})


class GoTrueVerifySchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(CONFIRMATION_TYPES))
    token_hash = fields.String(metadata={"description": "from the confirmation link"})
    token = fields.String(metadata={"description": "the emailed code, sent with email"})
    email = fields.Email()


class GoTrueResendSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(CONFIRMATION_TYPES))
    email = fields.Email(required=True)


class GoTruePasswordGrantSchema(Schema):
    email = fields.Email(required=True)
    password = fields.String(required=True)


class GoTrueRefreshGrantSchema(Schema):
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


def _errors(*statuses: int) -> dict:
    reasons = {
        400: "Bad input, wrong credentials, or an unconfirmed or banned account",
        401: "No bearer token",
        403: "The token is invalid, expired or its session ended",
        422: "A field is invalid, or the email is taken",
        429: "Too many attempts; Retry-After says when to try again",
        503: "The confirmation email could not be sent; nothing was kept",
    }
    return {str(s): {"description": reasons[s], **_json(GoTrueErrorSchema)} for s in statuses}


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
                    **_errors(400, 422, 429, 503),
                },
            }
        },
        "verify": {
            "post": {
                "operationId": "gotrue_verify",
                "summary": "Confirm an email: token_hash, or token and email",
                "requestBody": _body(GoTrueVerifySchema, "The confirmation"),
                "responses": {"200": SESSION, **_errors(400, 403, 422, 429)},
            }
        },
        "resend": {
            "post": {
                "operationId": "gotrue_resend",
                "summary": "Mail a new confirmation code (same answer for unknown emails)",
                "requestBody": _body(GoTrueResendSchema, "Where to send it"),
                "responses": {
                    "200": {"description": "Sent if the account exists", **_json(EmptySchema)},
                    **_errors(400, 422, 429, 503),
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
                "responses": {"200": SESSION, **_errors(400, 422, 429)},
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
                "responses": {"204": {"description": "Signed out"}, **_errors(400, 401, 403)},
            }
        },
        "user": {
            "get": {
                "operationId": "gotrue_user",
                "summary": "The signed-in user",
                "security": BEARER,
                "responses": {
                    "200": {"description": "The user", **_json(GoTrueUserSchema)},
                    **_errors(401, 403),
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
