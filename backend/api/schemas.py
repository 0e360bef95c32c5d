"""Marshmallow schemas of the REST resources: what each route reads and what it answers.

They validate input before anything reaches the database (an unknown or malformed field
is a 422 that names it) and they are the source of the OpenAPI document. Every string
field is a ``Text`` (backend/http/text.py): a NUL or an unpaired surrogate is a 422 too.
Limits mirror the table constraints in supabase/migrations so a bad value is refused with a
field name rather than a generic constraint error. Authorization is never decided here.
"""

from __future__ import annotations

from typing import ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from backend.email_address import MAX_EMAIL_LENGTH
from backend.http.pagination import DEFAULT_LIMIT, MAX_LIMIT
from backend.http.text import NOT_BLANK, Email, JsonObject, Text, is_blank
from backend.webhooks_out.deliver import Refused, checked_url

TEAM_ROLES = ("viewer", "editor", "admin", "owner")
SHARE_ROLES = ("viewer", "editor", "admin")  # owner is never granted through a team
VISIBILITIES = ("private", "team", "public")
GENERATION_SCOPES = ("mine", "public")
GENERATION_STATUSES = ("pending", "queued", "processing", "completed", "failed", "cancelled")
CREDIT_KINDS = ("grant", "purchase", "charge", "refund")
MODEL_KINDS = ("image", "video")
PRICE_UNITS = ("generation", "image", "second")


def not_blank(value: str) -> None:
    if is_blank(value):
        raise ValidationError("Must not be blank.")


def sendable_url(value: str) -> None:
    """A URL the webhook delivery can send to, read as it reads it."""
    try:
        checked_url(value)
    except Refused as refused:
        raise ValidationError(str(refused)) from None


def text(max_length: int, **kwargs) -> Text:
    """A string of 1..max_length characters, some of which show (not only whitespace,
    controls or invisible characters)."""
    # the document states the very rule the validator runs: a client that checks the
    # pattern refuses exactly the names the API refuses
    kwargs["metadata"] = {"pattern": NOT_BLANK, **kwargs.get("metadata", {})}
    return Text(validate=[validate.Length(min=1, max=max_length), not_blank], **kwargs)


def one_of(choices: tuple[str, ...], **kwargs) -> Text:
    return Text(validate=validate.OneOf(choices), **kwargs)


# pages -----------------------------------------------------------------------------------


class PageArgs(Schema):
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(min=1, max=MAX_LIMIT),
        metadata={"description": f"page size, 1 to {MAX_LIMIT}"},
    )
    cursor = Text(
        validate=validate.Length(min=1, max=512),
        metadata={"description": "next_cursor of the previous page"},
    )


def page_of(item_schema: type[Schema], name: str) -> type[Schema]:
    """A page schema: {"items": [...], "next_cursor": "..." | null}."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item_schema), required=True),
            "next_cursor": Text(
                allow_none=True,
                required=True,
                metadata={"description": "pass as ?cursor= for the next page; null on the last"},
            ),
        },
        name=name,
    )


class UsageArgs(Schema):
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=366))


class UsageDaySchema(Schema):
    day = fields.Date(required=True)
    generations = fields.Integer(required=True)
    completed = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    credits_spent = fields.Integer(required=True)


class UsageSchema(Schema):
    days = fields.Integer(required=True)
    usage = fields.List(
        fields.Nested(UsageDaySchema),
        required=True,
        metadata={"description": "days with activity, oldest first, as of the last refresh"},
    )


class AccessSchema(Schema):
    access_granted = fields.Boolean(required=True)
    access_method = one_of(
        ("direct_ownership", "project_owner", "project_team", "generation_share", "public"),
        allow_none=True,
        required=True,
    )
    effective_role = one_of(TEAM_ROLES, allow_none=True, required=True)
    permissions = fields.List(Text(), required=True)


# projects --------------------------------------------------------------------------------


class ProjectCreateSchema(Schema):
    name = text(200, required=True)
    description = Text(validate=validate.Length(max=2000), allow_none=True)
    visibility = one_of(VISIBILITIES)


class ProjectUpdateSchema(Schema):
    OPENAPI_RULES: ClassVar[dict] = {"minProperties": 1}  # see _something_to_change
    name = text(200)
    description = Text(validate=validate.Length(max=2000), allow_none=True)
    visibility = one_of(VISIBILITIES)

    @validates_schema
    def _something_to_change(self, data, **_kwargs):
        if not data:
            raise ValidationError("Give at least one of name, description, visibility.")


class ProjectTeamLinkSchema(Schema):
    access_level = one_of(SHARE_ROLES, load_default="viewer")


class ProjectTeamSchema(Schema):
    project_id = fields.UUID(required=True)
    team_id = fields.UUID(required=True)
    access_level = Text(required=True)
    created_at = fields.DateTime(required=True)


class ProjectSchema(Schema):
    id = fields.UUID(required=True)
    owner_id = fields.UUID(required=True)
    name = Text(required=True)
    description = Text(allow_none=True, required=True)
    visibility = Text(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class ProjectDetailSchema(ProjectSchema):
    access = fields.Nested(
        AccessSchema, required=True, metadata={"description": "the caller's access"}
    )
    teams = fields.List(fields.Nested(ProjectTeamSchema), required=True)


ProjectPageSchema = page_of(ProjectSchema, "ProjectPage")


# generations -----------------------------------------------------------------------------


class IdempotencyKeyHeader(Schema):
    idempotency_key = Text(
        data_key="Idempotency-Key",
        load_default=None,
        validate=validate.Length(min=1, max=255),
        metadata={
            "description": "optional, chosen by the client: a retry of the same request with the"
            " same key returns the first generation and is not charged; the same key with a"
            " different request is a 409"
        },
    )


class GenerationCreateHeaders(IdempotencyKeyHeader):
    prefer = Text(
        data_key="Prefer",
        load_default=None,
        validate=validate.Length(max=200),
        metadata={
            "description": "`wait=N` (1 to 60): hold the answer up to N seconds until the"
            " generation ends; `Preference-Applied` says whether it waited"
        },
    )


WEBHOOK_EVENTS = ("start", "completed")


class GenerationCreateSchema(Schema):
    model_id = Text(required=True, validate=validate.Length(min=1, max=200))
    prompt = text(4000, required=True)
    project_id = fields.UUID(allow_none=True)
    parameters = JsonObject(
        load_default=dict,
        metadata={"description": "model parameters; GET /api/v1/models lists each model's schema"},
    )
    title = Text(validate=validate.Length(max=200), allow_none=True)
    webhook_url = Text(
        validate=[
            validate.Length(max=2048),
            validate.URL(schemes={"http", "https"}),
            sendable_url,
        ],
        metadata={
            "format": "uri",
            "pattern": "^https?://",
            "description": "called with Standard Webhooks-signed events of this generation (https"
            " in production); sign-ups make their secret with POST /api/v1/webhooks/secret",
        },
    )
    webhook_events_filter = fields.List(
        one_of(WEBHOOK_EVENTS),
        validate=validate.Length(min=1, max=2),
        metadata={"description": "which events to send: start, completed (default: both)"},
    )


class GenerationListArgs(PageArgs):
    scope = one_of(
        GENERATION_SCOPES,
        load_default="mine",
        metadata={
            "description": "mine: what you created, what is in your projects and your teams'"
            " projects, and what is shared with your teams; public: every generation of a"
            " public project"
        },
    )
    project_id = fields.UUID()
    status = one_of(GENERATION_STATUSES)
    model_id = Text(validate=validate.Length(min=1, max=200))


class GenerationUpdateSchema(Schema):
    title = Text(required=True, validate=validate.Length(max=200), allow_none=True)


class GenerationSchema(Schema):
    id = fields.UUID(required=True)
    owner_id = fields.UUID(required=True)
    project_id = fields.UUID(allow_none=True, required=True)
    model_id = Text(required=True)
    prompt = Text(required=True)
    parameters = fields.Dict(required=True)
    title = Text(allow_none=True, required=True)
    status = Text(required=True)
    outputs = fields.Raw(required=True, metadata={"description": "output media, once completed"})
    error = Text(allow_none=True, required=True)
    cost = fields.Integer(required=True, metadata={"description": "credits charged"})
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    completed_at = fields.DateTime(allow_none=True, required=True)


GenerationPageSchema = page_of(GenerationSchema, "GenerationPage")


class AuthorizationSchema(AccessSchema):
    response_time_ms = fields.Float(required=True, metadata={"description": "measured in the app"})
    cache_hit = fields.Boolean(required=True)


class ShareCreateSchema(Schema):
    team_id = fields.UUID(required=True)
    role = one_of(SHARE_ROLES, load_default="viewer")


class ShareSchema(Schema):
    generation_id = fields.UUID(required=True)
    team_id = fields.UUID(required=True)
    role = Text(required=True)
    created_at = fields.DateTime(required=True)


# teams -----------------------------------------------------------------------------------


class TeamCreateSchema(Schema):
    name = text(100, required=True)


class TeamSchema(Schema):
    id = fields.UUID(required=True)
    name = Text(required=True)
    owner_id = fields.UUID(required=True)
    role = Text(required=True, metadata={"description": "the caller's role in the team"})
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class TeamDetailSchema(TeamSchema):
    member_count = fields.Integer(required=True)


TeamPageSchema = page_of(TeamSchema, "TeamPage")


class MemberSchema(Schema):
    user_id = fields.UUID(required=True)
    role = Text(required=True)
    email = Text(allow_none=True, required=True)
    display_name = Text(allow_none=True, required=True)
    joined_at = fields.DateTime(required=True)


MemberPageSchema = page_of(MemberSchema, "MemberPage")


class MembershipSchema(Schema):
    team_id = fields.UUID(required=True)
    user_id = fields.UUID(required=True)
    role = Text(required=True)
    created_at = fields.DateTime(required=True)


class TeamPermissionsSchema(Schema):
    team_id = fields.UUID(required=True)
    role = Text(required=True)
    permissions = fields.List(Text(), required=True)


class InviteSchema(Schema):
    email = Email(required=True, validate=validate.Length(max=MAX_EMAIL_LENGTH))
    role = one_of(
        SHARE_ROLES,
        load_default="viewer",
        metadata={"description": "admin only when the owner invites"},
    )


class InvitationSchema(Schema):
    invitation_id = fields.UUID(required=True)
    team_id = fields.UUID(required=True)
    email = Text(required=True)
    role = Text(required=True)
    token = Text(required=True, metadata={"description": "shown once; only its hash is kept"})
    expires_at = fields.DateTime(required=True)


class PendingInvitationSchema(Schema):
    id = fields.UUID(required=True)
    team_id = fields.UUID(required=True)
    email = Text(required=True)
    role = Text(required=True)
    invited_by = fields.UUID(allow_none=True, required=True)
    expires_at = fields.DateTime(required=True)
    created_at = fields.DateTime(required=True)


PendingInvitationPageSchema = page_of(PendingInvitationSchema, "PendingInvitationPage")


class AcceptInvitationSchema(Schema):
    token = Text(
        required=True,
        validate=validate.Length(min=1, max=256),
        metadata={"description": "the invitation token from the email"},
    )


class MemberRoleSchema(Schema):
    role = one_of(
        SHARE_ROLES,
        required=True,
        metadata={"description": "ownership moves only by POST /api/v1/teams/{id}/transfer"},
    )


class TransferSchema(Schema):
    user_id = fields.UUID(required=True, metadata={"description": "the member who becomes owner"})


# credits and models ------------------------------------------------------------------------


class CreditTotalsSchema(Schema):
    credited = fields.Integer(required=True)
    charged = fields.Integer(required=True)
    refunded = fields.Integer(required=True)
    charges = fields.Integer(required=True)


class BalanceSchema(Schema):
    balance = fields.Integer(required=True)
    plan = Text(required=True)
    totals = fields.Nested(
        CreditTotalsSchema,
        allow_none=True,
        required=True,
        metadata={"description": "lifetime totals as of the last analytics refresh"},
    )


class TransactionListArgs(PageArgs):
    kind = one_of(CREDIT_KINDS)


class TransactionSchema(Schema):
    id = fields.UUID(required=True)
    kind = Text(required=True)
    amount = fields.Integer(required=True)
    balance_after = fields.Integer(required=True)
    generation_id = fields.UUID(allow_none=True, required=True)
    refund_of = fields.UUID(
        allow_none=True, required=True, metadata={"description": "the charge a refund returns"}
    )
    note = Text(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)


TransactionPageSchema = page_of(TransactionSchema, "TransactionPage")


class ModelListArgs(Schema):
    kind = one_of(MODEL_KINDS)


class ModelSchema(Schema):
    id = Text(required=True)
    name = Text(required=True)
    kind = Text(required=True)
    credit_cost = fields.Integer(required=True, metadata={"description": "credits per price_unit"})
    price_unit = one_of(
        PRICE_UNITS,
        required=True,
        metadata={
            "description": "what credit_cost is per. generation: a flat price; image: times"
            " num_images (default 1); second: times the duration parameter in seconds (default:"
            " the schema's)"
        },
    )
    parameter_schema = fields.Dict(required=True)


class ModelListSchema(Schema):
    items = fields.List(fields.Nested(ModelSchema), required=True)
