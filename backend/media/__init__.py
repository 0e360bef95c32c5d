"""Media: outputs copied from the provider into our storage, and signed URLs to them.

- ``fetch``: downloads under a policy (allowed hosts, public addresses only at every hop,
  size and content-type limits).
- ``probe``: content type and pixel size, read from the bytes.
- ``storage``: a local directory (HMAC-signed URLs the app serves) or Supabase Storage.
- ``copy``: the media-copy job's work, ``copy_outputs``.
- ``cleanup``: the media-cleanup job's work: a deleted generation's objects go too.
- ``routes``: ``GET /api/v1/generations/{id}/media`` (signed URLs, for readers only) and
  the local storage's ``GET /api/v1/media/<name>``.

It may import ``backend.config`` and the database driver; only ``routes`` knows Flask.
The worker calls ``copy_generation_outputs(settings, generation_id)`` and
``clean_deleted_generations_media(settings)``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from urllib.parse import urlsplit
from uuid import UUID

from backend.config import Settings
from backend.media.cleanup import delete_media_of_deleted_generations
from backend.media.copy import copy_outputs
from backend.media.fetch import FetchPolicy, UnsafeMedia
from backend.media.storage import LocalStorage, SupabaseStorage

__all__ = [
    "UnsafeMedia",
    "clean_deleted_generations_media",
    "copy_generation_outputs",
    "fetch_policy",
    "storage_for",
]


def signing_key(settings: Settings) -> bytes:
    """The local URLs' HMAC key: MEDIA_SIGNING_KEY, else derived from JWT_SECRET (one
    secret fewer to set; a token's secret and a URL's key still never coincide)."""
    if settings.MEDIA_SIGNING_KEY:
        return settings.MEDIA_SIGNING_KEY.encode()
    return hmac.new(settings.JWT_SECRET.encode(), b"velro media urls", hashlib.sha256).digest()


@functools.lru_cache(maxsize=8)
def storage_for(settings: Settings) -> LocalStorage | SupabaseStorage:
    """One storage client per configuration (the Supabase one keeps an HTTP connection pool)."""
    if settings.MEDIA_STORAGE == "supabase":
        return SupabaseStorage(settings.SUPABASE_URL, settings.SUPABASE_SERVICE_ROLE_KEY)
    return LocalStorage(settings.MEDIA_DIR, settings.PUBLIC_URL, signing_key(settings))


def fetch_policy(settings: Settings) -> FetchPolicy:
    private = {host.strip() for host in settings.MEDIA_PRIVATE_HOSTS.split(",") if host.strip()}
    if not settings.FAL_KEY and settings.is_local:
        # the simulated provider serves its outputs from this app, on this machine
        public = urlsplit(settings.PUBLIC_URL)
        private.add(f"{public.hostname}:{public.port or (443 if public.scheme == 'https' else 80)}")
    return FetchPolicy(
        allowed_hosts=tuple(
            h.strip() for h in settings.MEDIA_ALLOWED_HOSTS.split(",") if h.strip()
        ),
        max_bytes=settings.MEDIA_MAX_BYTES,
        private_hosts=frozenset(private),
    )


def copy_generation_outputs(settings: Settings, generation_id: UUID | str) -> list[dict]:
    """The media-copy job: store a completed generation's outputs (safe to run again)."""
    return copy_outputs(
        settings.direct_database_url,
        generation_id,
        storage_for(settings),
        fetch_policy(settings),
        settings.MEDIA_MAX_OUTPUTS,
    )


def clean_deleted_generations_media(settings: Settings) -> int:
    """The media-cleanup job: delete the stored objects of deleted generations."""
    return delete_media_of_deleted_generations(settings.direct_database_url, storage_for(settings))
