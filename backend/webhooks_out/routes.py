"""Routes: the caller's webhook signing secret and a generation's delivery log."""

from __future__ import annotations

from uuid import UUID

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from backend.api.outcomes import documented_errors
from backend.auth.guard import require_user
from backend.db import rpc, user_transaction
from backend.errors import NotFound
from backend.http.access import access

blp = Blueprint(
    "webhooks_out",
    __name__,
    url_prefix="/api/v1",
    description="Webhooks we send to you: your signing secret and each generation's deliveries.",
)

DELIVERIES = (
    "select id, event, url, status, attempts, response_status, last_error, next_attempt_at,"
    " created_at, delivered_at from public.webhook_deliveries where generation_id = %s"
    " order by created_at, event"
)
READABLE = "select 1 from public.generations where id = %s"


class SecretSchema(Schema):
    secret = fields.String(
        required=True, metadata={"description": "whsec_...: shown only now; store it"}
    )
    created_at = fields.DateTime(required=True)


class SecretInfoSchema(Schema):
    configured = fields.Boolean(required=True)
    created_at = fields.DateTime(allow_none=True)


class DeliverySchema(Schema):
    id = fields.UUID(required=True)
    event = fields.String(required=True)
    url = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "pending, delivered, failed"})
    attempts = fields.Integer(required=True)
    response_status = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    next_attempt_at = fields.DateTime(required=True)
    created_at = fields.DateTime(required=True)
    delivered_at = fields.DateTime(allow_none=True)


class DeliveryListSchema(Schema):
    items = fields.List(fields.Nested(DeliverySchema), required=True)


@blp.route("/webhooks/secret")
class WebhookSecret(MethodView):
    @require_user
    @access("account", "read")
    @blp.response(200, SecretInfoSchema)
    @documented_errors(blp, 401, 403)
    def get(self):
        """Whether you have a signing secret, and since when (never the secret itself)."""
        with user_transaction() as cur:
            return rpc(cur, "public.webhook_secret_info")[0]

    @require_user
    @access("account", "write")
    @blp.response(201, SecretSchema)
    @documented_errors(blp, 401, 403)
    def post(self):
        """Make or rotate your signing secret; the answer is the only time it is shown.

        Events are signed per Standard Webhooks (``webhook-id``, ``webhook-timestamp``,
        ``webhook-signature``); after a rotation, new attempts use the new secret.
        """
        with user_transaction() as cur:
            return rpc(cur, "public.rotate_webhook_secret")[0]


@blp.route("/generations/<uuid:generation_id>/webhook-deliveries")
class Deliveries(MethodView):
    @require_user
    @access("generation", "read")
    @blp.response(200, DeliveryListSchema)
    @documented_errors(blp, 401, 404)
    def get(self, generation_id: UUID):
        """The delivery log of a generation's webhook events (its owner's only)."""
        with user_transaction() as cur:
            cur.execute(READABLE, (generation_id,))
            if cur.fetchone() is None:
                raise NotFound("generation not found")
            cur.execute(DELIVERIES, (generation_id,))
            return {"items": cur.fetchall()}
