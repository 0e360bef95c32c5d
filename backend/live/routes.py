"""``GET /api/v1/generations/{id}/events``: a generation's status changes as Server-Sent Events.

The stream opens with the generation as it is now (event ``status``), then sends one event
per later status, each exactly once and in order, and ends after a final status
(completed, failed, cancelled), after ``SSE_MAX_SECONDS``, or when the server shuts down
(the client reconnects, as EventSource does). Each event's ``id`` is the status, so a
reconnecting client's ``Last-Event-ID`` skips what it already has. Every event is read again
as the caller: a caller who loses access mid-stream gets an ``error`` event and the stream
ends. The caller is read before the stream takes a live slot, or the place of their older
stream of the generation: a logged-out token gets 401 and a stranger 404, and neither
touches anyone's stream.
"""

from __future__ import annotations

import json
import queue
import time
from uuid import UUID

from flask import Response, current_app, request, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint

from backend.api import schemas
from backend.api.generations import COLUMNS
from backend.api.outcomes import documented_errors
from backend.auth.guard import current_user, require_user
from backend.db import user_transaction
from backend.errors import InvalidToken, NotFound, Unavailable
from backend.http.access import access
from backend.live import listener
from backend.live.follow import FINISHED, is_later
from backend.live.listener import CLOSED, RESYNC, Busy, Notice, NotListening

blp = Blueprint(
    "generation_events",
    __name__,
    url_prefix="/api/v1/generations",
    description="Live status of a generation (Server-Sent Events).",
)

KEEPALIVE_SECONDS = 15.0
# sent first, so the response's headers leave at once even when there is nothing new yet
# (a reconnecting client that has seen everything); EventSource retries after this many ms
OPENING = "retry: 3000\n\n"
READ = f"select {COLUMNS} from public.generations where id = %s"  # noqa: S608


def read_generation(generation_id) -> dict | None:
    with user_transaction() as cur:
        cur.execute(READ, (generation_id,))
        return cur.fetchone()


def _readable(generation_id) -> dict:
    """The generation as the caller may read it now; 401 when their session has ended, 404
    when they may not read it."""
    generation = read_generation(generation_id)
    if generation is None:
        raise NotFound("generation not found")
    return generation


def _read_or_end(generation_id) -> tuple[dict | None, str | None]:
    """The generation as its follower may read it now, or the error event that ends their
    stream: their session ended, or they may no longer read it."""
    try:
        current = read_generation(generation_id)
    except InvalidToken as refused:
        return None, sse("error", {"error": refused.error, "message": refused.description})
    if current is None:
        return None, sse("error", {"error": "not_found", "message": "generation not found"})
    return current, None


def sse(event: str, data: dict, event_id: str | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


@blp.route("/<uuid:generation_id>/events")
class GenerationEvents(MethodView):
    @require_user
    @access("generation", "read")
    @blp.response(
        200,
        {"type": "string"},
        content_type="text/event-stream",
        description="Events `status` (data: the generation) and `error`; `id` is the status",
    )
    @documented_errors(blp, 401, 404, 503)
    def get(self, generation_id: UUID):
        """Follow a generation: one `status` event now and one per change, until it ends."""
        # the caller first: subscribing takes a live slot and may end an older stream of
        # their user (a reconnect takes its place), which a logged-out token or a stranger
        # must not be able to do
        _readable(generation_id)
        subscription = listener().subscribe(
            str(generation_id),
            str(current_user().user_id),
            reconnect=request.headers.get("Last-Event-ID") is not None,
        )
        try:
            inbox = subscription.__enter__()
        except (Busy, NotListening) as error:
            raise Unavailable(str(error)) from None
        try:
            # again, now subscribed: no change falls between this read and the notices, and
            # a logout or a lost share since the check above is refused here
            generation = _readable(generation_id)
        except BaseException:
            subscription.__exit__(None, None, None)
            raise
        stream = _stream(generation_id, generation, inbox, request.headers.get("Last-Event-ID"))
        response = Response(
            stream_with_context(_closing(stream, subscription)), mimetype="text/event-stream"
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Accel-Buffering"] = "no"  # proxies must not hold events back
        return response


def _closing(stream, subscription):
    try:
        yield from stream
    finally:
        subscription.__exit__(None, None, None)


def _stream(generation_id, generation: dict, inbox: queue.Queue, last_seen: str | None):
    dump = schemas.GenerationSchema().dump
    deadline = time.monotonic() + current_app.config["SETTINGS"].SSE_MAX_SECONDS
    sent = last_seen or ""
    yield OPENING
    if is_later(generation["status"], sent):
        yield sse("status", dump(generation), generation["status"])
        sent = generation["status"]
    while sent not in FINISHED:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            notice = inbox.get(timeout=min(KEEPALIVE_SECONDS, remaining))
        except queue.Empty:
            # no notice tells a stream its follower signed out or lost access: ask again
            _, ended = _read_or_end(generation_id)
            if ended:
                yield ended
                return
            yield ": keepalive\n\n"
            continue
        if notice == CLOSED:
            return  # the server is shutting down; the client reconnects elsewhere
        if isinstance(notice, Notice) and not is_later(notice.status, sent):
            continue
        current, ended = _read_or_end(generation_id)
        if ended:
            yield ended
            return
        status = notice.status if isinstance(notice, Notice) else current["status"]
        if notice == RESYNC and not is_later(status, sent):
            continue
        # the transition as it happened, with the generation as it is now
        yield sse("status", {**dump(current), "status": status}, status)
        sent = status
