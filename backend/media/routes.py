"""Media routes: signed URLs for a generation's readers; the local storage's file server."""

from __future__ import annotations

import time
from uuid import UUID

from flask import current_app, request, send_file
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from backend.api.outcomes import documented_errors
from backend.auth.guard import require_user
from backend.db import service_transaction, user_transaction
from backend.errors import Forbidden, NotFound
from backend.http.access import access
from backend.media import storage_for
from backend.media.storage import BadMediaName, LocalStorage

blp = Blueprint(
    "media",
    __name__,
    url_prefix="/api/v1",
    description="What generations made, stored by us and served by signed, expiring URLs.",
)

READABLE = "select 1 from public.generations where id = %s"
STORED = "select 1 from public.generation_media where generation_id = %s and storage_path = %s"
MEDIA = (
    "select position, content_type, size_bytes, width, height, storage_path"
    " from public.generation_media where generation_id = %s order by position"
)


class MediaSchema(Schema):
    position = fields.Integer(required=True)
    content_type = fields.String(required=True)
    size_bytes = fields.Integer(required=True)
    width = fields.Integer(allow_none=True)
    height = fields.Integer(allow_none=True)
    url = fields.String(required=True, metadata={"description": "Signed; works until expires_at"})
    expires_at = fields.Integer(required=True, metadata={"description": "Unix seconds"})


class MediaListSchema(Schema):
    items = fields.List(fields.Nested(MediaSchema), required=True)


def signed_media(rows: list[dict]) -> list[dict]:
    """Rows of generation_media with a fresh signed URL each (the caller may read them)."""
    settings = current_app.config["SETTINGS"]
    storage = storage_for(settings)
    seconds = settings.MEDIA_URL_SECONDS
    expires_at = int(time.time()) + seconds
    return [
        {
            **{k: v for k, v in row.items() if k != "storage_path"},
            "url": storage.signed_url(row["storage_path"], seconds),
            "expires_at": expires_at,
        }
        for row in rows
    ]


@blp.route("/generations/<uuid:generation_id>/media")
class GenerationMedia(MethodView):
    @require_user
    @access("generation", "read")
    @blp.response(200, MediaListSchema)
    @documented_errors(blp, 401, 404)
    def get(self, generation_id: UUID):
        """The generation's stored outputs with signed, expiring URLs (readers only).

        Empty until the outputs are copied, shortly after the generation completes.
        """
        with user_transaction() as cur:
            cur.execute(READABLE, (generation_id,))
            if cur.fetchone() is None:
                raise NotFound("generation not found")
            cur.execute(MEDIA, (generation_id,))
            rows = cur.fetchall()
        return {"items": signed_media(rows)}


@blp.route("/media/<path:name>")
class MediaFile(MethodView):
    @access("public")
    @blp.response(
        200,
        {"type": "string", "format": "binary"},
        content_type="application/octet-stream",
        description="The stored bytes; Content-Type says what they are (image/..., video/...)",
    )
    @documented_errors(blp, 403, 404)
    def get(self, name: str):
        """A stored output by its signed URL (local storage; no token needed, only the URL)."""
        storage = storage_for(current_app.config["SETTINGS"])
        if not isinstance(storage, LocalStorage):
            raise NotFound("media is served by Supabase Storage here")
        expires = request.args.get("expires", "")
        signature = request.args.get("signature", "")
        try:
            if not storage.verify(name, expires, signature):
                raise Forbidden("this media URL is invalid or has expired: ask for a new one")
            path = storage.open(name)
        except BadMediaName:
            raise NotFound("media not found") from None
        if not path.is_file() or not _still_stored(name):
            raise NotFound("media not found")
        response = send_file(path.resolve(), conditional=True, max_age=0)
        response.headers["Cache-Control"] = "private, no-store"
        return response


def _still_stored(name: str) -> bool:
    """Whether a generation still holds this object: a deleted one's URLs stop working."""
    try:
        generation_id = UUID(name.split("/", 1)[0])
    except ValueError:
        return False
    with service_transaction() as cur:
        cur.execute(STORED, (generation_id, name))
        return cur.fetchone() is not None
