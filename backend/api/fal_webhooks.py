"""FAL's webhooks: ``POST /api/v1/webhooks/fal``, verified before anything is read.

A forged, altered, stale or replayed-late delivery gets 401 in the one error shape and
changes nothing. A verified one is applied through SQL that only moves a generation
forward, so FAL's retries, duplicates and out-of-order deliveries are harmless. The URL's
``generation_id`` and ``tag`` (backend/fal/webhooks.py) settle a delivery whose request id
we have not recorded.
"""

from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from backend.api.outcomes import documented_errors
from backend.db import service_transaction
from backend.errors import ApiError, NotFound, Unavailable
from backend.fal.metrics import WEBHOOKS
from backend.fal.provider import jwks_url_for
from backend.fal.signatures import (
    HEADER_REQUEST_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    HEADER_USER_ID,
    TOLERANCE_SECONDS,
    KeysUnavailable,
    SignatureRejected,
    WebhookVerifier,
)
from backend.fal.webhooks import (
    NAME,
    TAG,
    BadDelivery,
    apply_delivery,
    generation_named,
    parse_delivery,
)
from backend.http.access import access

VERIFIER = "velro.fal_webhook_verifier"

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/api/v1/webhooks",
    description="Deliveries from FAL.ai, signed with FAL's ED25519 keys.",
)


class WebhookReceiptSchema(Schema):
    generation_id = fields.UUID(required=True)
    status = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "the generation's status now; null: it was deleted"},
    )
    applied = fields.Boolean(
        required=True,
        metadata={
            "description": "true when the generation holds this request and the delivery was"
            " recorded (forward only: a generation that already ended keeps its end); false"
            " for a request it does not hold, or a generation deleted since (acknowledged, so"
            " that FAL stops retrying; nothing changed)"
        },
    )


class FalDeliverySchema(Schema):
    """What FAL posts (documentation only: the raw body is verified before it is parsed)."""

    request_id = fields.String(
        required=True, metadata={"description": f"the same as {HEADER_REQUEST_ID}"}
    )
    gateway_request_id = fields.String()
    status = fields.String(required=True, validate=validate.OneOf(["OK", "ERROR"]))
    payload = fields.Dict(
        allow_none=True, metadata={"description": "the model's output (images, video) when OK"}
    )
    error = fields.String(allow_none=True, metadata={"description": "why it failed, on ERROR"})
    payload_error = fields.String(allow_none=True)


PARAMETERS = [
    {"in": "header", "name": name, "required": True, "schema": {"type": "string"}, "description": d}
    for name, d in (
        (HEADER_REQUEST_ID, "FAL's request id, signed"),
        (HEADER_USER_ID, "FAL's user id, signed"),
        (HEADER_TIMESTAMP, f"Unix seconds, signed; refused if over {TOLERANCE_SECONDS}s off"),
        (HEADER_SIGNATURE, "hex ED25519 signature of id, user, timestamp and the body's SHA-256"),
    )
] + [
    {"in": "query", "name": name, "required": False, "schema": {"type": "string"}, "description": d}
    for name, d in (
        (NAME, "the generation this URL was given to FAL for"),
        (TAG, f"our HMAC of {NAME}: only a URL we made names a generation"),
    )
]


def verifier() -> WebhookVerifier:
    if VERIFIER not in current_app.extensions:
        jwks_url = jwks_url_for(current_app.config["SETTINGS"])
        current_app.extensions[VERIFIER] = WebhookVerifier(jwks_url)
    return current_app.extensions[VERIFIER]


@blp.route("/fal")
class FalWebhook(MethodView):
    @blp.response(200, WebhookReceiptSchema)
    @access("fal")
    @documented_errors(blp, 400, 401, 404, 503)
    @blp.doc(
        parameters=PARAMETERS,
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": FalDeliverySchema}},
        },
    )
    def post(self):
        """A FAL request finished: record its outputs, or its failure (refunded once)."""
        body = request.get_data(cache=True)
        try:
            request_id = verifier().verify(request.headers, body)
        except SignatureRejected as error:
            WEBHOOKS.labels("bad_signature").inc()
            raise ApiError(str(error), status=401, error="invalid_signature") from None
        except KeysUnavailable as error:
            WEBHOOKS.labels("keys_unavailable").inc()
            raise Unavailable(str(error)) from None
        try:
            delivery = parse_delivery(body, request_id)
        except BadDelivery as error:
            WEBHOOKS.labels("bad_body").inc()
            raise ApiError(str(error), status=400, error="bad_request") from None
        settings = current_app.config["SETTINGS"]
        named = generation_named(settings, request.args)
        with service_transaction() as cur:
            receipt = apply_delivery(cur, request_id, delivery, settings.MEDIA_MAX_OUTPUTS, named)
        if receipt is None:
            WEBHOOKS.labels("unknown_request").inc()
            raise NotFound(f"no generation has FAL request id {request_id} (yet)")
        WEBHOOKS.labels("applied" if receipt.applied else "not_held").inc()
        return receipt
