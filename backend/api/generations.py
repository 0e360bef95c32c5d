"""Generations: create (charged once per Idempotency-Key), list, read, retitle, delete,
cancel, authorize, and share with teams.

Reads and writes run as the caller through RLS; the RPCs (create_generation,
cancel_generation, share_generation, ...) check roles in SQL and raise PT4xx, which the
error handler turns into the status. A new generation commits with its submit job; the
worker sends it to FAL.ai.
"""

from __future__ import annotations

from uuid import UUID

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from psycopg.types.json import Jsonb

from backend.api import generation_feeds, schemas
from backend.api.outcomes import denied_or_missing, documented_errors
from backend.auth.guard import current_user, require_user
from backend.cache.authorization import authorize_generation
from backend.db import rpc, service_transaction, user_transaction
from backend.errors import ApiError, NotFound, Unavailable
from backend.fal.provider import queue_for
from backend.fal.queue import FalRejected, FalUnavailable
from backend.http.access import access
from backend.http.pagination import NEWEST_FIRST, Page
from backend.live import listener
from backend.live.follow import BadPreference, requested_wait, wait_until_finished

blp = Blueprint(
    "generations",
    __name__,
    url_prefix="/api/v1/generations",
    description="Generations, their authorization and their shares.",
)

COLUMNS = (
    "id, owner_id, project_id, model_id, prompt, parameters, title, status, outputs, error,"
    " cost, created_at, updated_at, completed_at"
)
EXISTS = "select 1 from public.generations where id = %s"
DELETE = "delete from public.generations where id = %s returning id"

# created = the row was inserted by this transaction (now() is the transaction's start), so
# a replay of an earlier key is told apart without a race between two concurrent retries
CREATE = (
    f"select {COLUMNS}, created_at = now() as created"  # noqa: S608
    " from public.create_generation(p_model_id => %s, p_prompt => %s, p_idempotency_key => %s,"
    " p_project_id => %s, p_parameters => %s, p_title => %s)"
)


@blp.route("")
class Generations(MethodView):
    @require_user
    @access("project", "write")
    @blp.arguments(schemas.GenerationCreateHeaders, location="headers")
    @blp.arguments(schemas.GenerationCreateSchema)
    @blp.response(201, schemas.GenerationSchema, description="Created and charged")
    @blp.alt_response(
        200,
        schema=schemas.GenerationSchema,
        success=True,
        description="A replay: the first generation made with this key; no charge",
    )
    @documented_errors(blp, 400, 401, 402, 403, 404, 409, 422)
    def post(self, headers, body):
        """Start a generation: validates model and parameters, charges its credits.

        The worker submits it to FAL.ai. Follow it with ``GET .../events`` (Server-Sent
        Events), ``Prefer: wait=N`` (the answer waits up to N seconds for the end;
        ``Preference-Applied`` says it did), or a ``webhook_url`` we call with signed events
        (``webhook_events_filter``: start, completed). Creating it in a project needs
        write (editor) access there. The price is the model's ``credit_cost`` per
        ``price_unit``: per generation, per image (``num_images``) or per second of video
        (``duration``). The optional ``Idempotency-Key`` header makes retries safe; the same
        key with a different request is a 409.
        """
        wait = _requested_wait(headers["prefer"])
        _check_webhook_url(body.get("webhook_url"))
        with user_transaction() as cur:
            cur.execute(
                CREATE,
                (
                    body["model_id"],
                    body["prompt"],
                    headers["idempotency_key"],
                    body.get("project_id"),
                    Jsonb(body["parameters"]),
                    body.get("title"),
                ),
            )
            generation = cur.fetchone()
            webhook = _requested_webhook(body)
            if not generation["created"]:
                # the key's fingerprint (in SQL) covers the generation; its webhook is here
                if _stored_webhook(cur, generation["id"]) != webhook:
                    raise ApiError(KEY_REUSED, status=409, error="conflict")
            elif webhook:
                url, events = webhook
                rpc(
                    cur,
                    "public.set_generation_webhook",
                    p_generation_id=generation["id"],
                    p_url=url,
                    p_events=list(events),
                )
        status = 201 if generation["created"] else 200
        if wait is None:
            return generation, status
        finished, waited = wait_until_finished(
            listener(),
            generation["id"],
            str(current_user().user_id),
            wait,
            lambda: _read(generation["id"]),
        )
        applied = {"Preference-Applied": f"wait={wait}"} if waited else {}
        # the charge is committed whatever the wait met (a logout, a lost share, the database
        # gone): the answer always names what was paid for, as created if no read got through
        return finished or generation, status, applied

    @require_user
    @access("account", "read")
    @blp.arguments(schemas.GenerationListArgs, location="query")
    @blp.response(200, schemas.GenerationPageSchema)
    @documented_errors(blp, 400, 401, 422)
    def get(self, args):
        """Generations newest first: the caller's own, their teams' and those shared with them.

        ``scope=public`` lists instead every generation of a public project. Both filter by
        project, status and model, and page with ``next_cursor``.
        """
        page = Page.from_args(args, key=NEWEST_FIRST)
        query, params = generation_feeds.statement(args["scope"], COLUMNS, page, args)
        with user_transaction() as cur:
            cur.execute(query, params)
            return page.result(cur.fetchall())


KEY_REUSED = (
    "this Idempotency-Key was already used with a different request: send the same request "
    "to retry it, or use a new key"
)


def _requested_webhook(body: dict) -> tuple[str, tuple[str, ...]] | None:
    """(url, events sorted) the request asks for, as set_generation_webhook stores them."""
    if not body.get("webhook_url"):
        return None
    events = body.get("webhook_events_filter") or schemas.WEBHOOK_EVENTS
    return body["webhook_url"], tuple(sorted(set(events)))


def _stored_webhook(cur, generation_id) -> tuple[str, tuple[str, ...]] | None:
    cur.execute(
        "select url, events from public.generation_webhooks where generation_id = %s",
        (generation_id,),
    )
    row = cur.fetchone()
    return (row["url"], tuple(row["events"])) if row else None


def _requested_wait(prefer: str | None) -> int | None:
    try:
        return requested_wait(prefer)
    except BadPreference as error:
        raise ApiError(str(error), status=400) from None


def _check_webhook_url(url: str | None) -> None:
    if url and current_app.config["SETTINGS"].is_production and not url.startswith("https://"):
        raise ApiError("webhook_url must be an https:// URL", status=400)


def _read(generation_id) -> dict | None:
    """The generation as the caller sees it now, or None (Prefer: wait reads it again when it
    ends)."""
    with user_transaction() as cur:
        cur.execute(f"select {COLUMNS} from public.generations where id = %s", (generation_id,))  # noqa: S608
        return cur.fetchone()


@blp.route("/<uuid:generation_id>")
class Generation(MethodView):
    @require_user
    @access("generation", "read")
    @blp.response(200, schemas.GenerationSchema)
    @documented_errors(blp, 401, 404)
    def get(self, generation_id: UUID):
        """One generation the caller can read."""
        generation = _read(generation_id)
        if generation is None:
            raise NotFound("generation not found")
        return generation

    @require_user
    @access("generation", "write")
    @blp.arguments(schemas.GenerationUpdateSchema)
    @blp.response(200, schemas.GenerationSchema)
    @documented_errors(blp, 401, 403, 404, 422)
    def patch(self, body, generation_id: UUID):
        """Retitle a generation (write permission: editor or higher)."""
        with user_transaction() as cur:
            cur.execute(
                f"update public.generations set title = %s where id = %s returning {COLUMNS}",  # noqa: S608
                (body["title"], generation_id),
            )
            generation = cur.fetchone()
            if generation is None:
                denied_or_missing(cur, EXISTS, generation_id, "generation")
            return generation

    @require_user
    @access("generation", "delete")
    @blp.response(204)
    @documented_errors(blp, 401, 403, 404, 409)
    def delete(self, generation_id: UUID):
        """Delete a generation (delete permission: admin or owner).

        A charged generation that is pending, queued or processing is not deleted (409):
        cancel it first (its credits are refunded) or wait until it ends.
        """
        with user_transaction() as cur:
            cur.execute(DELETE, (generation_id,))
            if cur.fetchone() is None:
                denied_or_missing(cur, EXISTS, generation_id, "generation")


@blp.route("/<uuid:generation_id>/cancel")
class Cancel(MethodView):
    @require_user
    @access("generation", "write")
    @blp.response(200, schemas.GenerationSchema)
    @documented_errors(blp, 401, 403, 404, 409)
    def post(self, generation_id: UUID):
        """Cancel a pending or queued generation (write permission); credits are refunded once.

        One FAL already holds is cancelled at FAL first, and refunded only once FAL has taken
        it off its queue: if FAL has already started it, nothing changes and the answer is 409.
        """
        with user_transaction() as cur:
            generation = rpc(cur, "public.cancellable_generation", p_generation_id=generation_id)[0]
            if not generation["fal_request_id"]:
                # its submit job finds it cancelled and stops (or cancels at FAL what it sent)
                return rpc(cur, "public.cancel_generation", p_generation_id=generation_id)[0]
        cancel_at_fal(generation)
        with service_transaction() as cur:
            return rpc(
                cur,
                "public.record_fal_cancellation",
                p_generation_id=generation_id,
                p_fal_request_id=generation["fal_request_id"],
                p_user_id=current_user().claims["sub"],
            )[0]


def cancel_at_fal(generation: dict) -> None:
    try:
        queue = queue_for(current_app.config["SETTINGS"])
        queue.cancel(generation["model_id"], generation["fal_request_id"])
    except FalRejected:
        raise ApiError(
            "FAL has already started this generation, so it can no longer be cancelled; "
            "it completes or fails on its own (a failure is refunded)",
            status=409,
            error="conflict",
        ) from None
    except FalUnavailable:
        raise Unavailable("FAL cannot be reached to cancel this generation; try again") from None


@blp.route("/<uuid:generation_id>/authorize")
class Authorize(MethodView):
    @require_user
    @access("generation")
    @blp.response(200, schemas.AuthorizationSchema)
    @documented_errors(blp, 401, 404)
    def post(self, generation_id: UUID):
        """The caller's access to a generation: granted, method, role, permissions.

        A generation the caller cannot read and one that does not exist get the same
        answer: ``access_granted: false``.
        """
        return authorize_generation(current_user().claims, generation_id)


@blp.route("/<uuid:generation_id>/share")
class Share(MethodView):
    @require_user
    @access("generation", "share")
    @blp.arguments(schemas.ShareCreateSchema)
    @blp.response(200, schemas.ShareSchema)
    @documented_errors(blp, 401, 403, 404, 422)
    def put(self, body, generation_id: UUID):
        """Share with a team where the caller is editor or more, at a role (share permission:
        the generation's creator or its project's owner).

        Sharing again with the same team changes the role.
        """
        with user_transaction() as cur:
            return rpc(
                cur,
                "public.share_generation",
                p_generation_id=generation_id,
                p_team_id=body["team_id"],
                p_role=body["role"],
            )[0]


@blp.route("/<uuid:generation_id>/share/<uuid:team_id>")
class Unshare(MethodView):
    @require_user
    @access("generation", "admin")
    @blp.response(204)
    @documented_errors(blp, 401, 403, 404)
    def delete(self, generation_id: UUID, team_id: UUID):
        """End a share (admin on the generation, or the team's owner or admins); access ends at once
        (media URLs already given out work until they expire, ``MEDIA_URL_SECONDS``)."""
        with user_transaction() as cur:
            rpc(cur, "public.unshare_generation", p_generation_id=generation_id, p_team_id=team_id)
