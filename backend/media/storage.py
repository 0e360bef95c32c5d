"""Where stored media lives: a local directory (embedded default) or Supabase Storage.

Both answer ``put(name, body, content_type)``, ``signed_url(name, seconds)``,
``delete(names)``, ``delete_generation(generation_id)`` and, for the local one,
``open(name)``. Object names are ``<generation id>/<position>-<copy>.<ext>``, where
``<copy>`` tells one copy of the outputs from another: the storage policies read the
generation id from the first folder.

Local URLs are ``<PUBLIC_URL>/api/v1/media/<name>?expires=<unix>&signature=<hmac>``: the app
serves them (``backend.media.routes``) after checking the HMAC and the expiry, so a URL
works without a token, for as long as it says, and for that one object only. Supabase
URLs come from Storage's own ``create_signed_url``; the app signs with the service key
only after the caller's own transaction showed the generation is theirs to read.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import shutil
import time
from pathlib import Path
from urllib.parse import quote, urlencode
from uuid import UUID

from storage3 import SyncStorageClient

BUCKET = "generation-media"
# objects stored before copies named themselves have no -<copy>
SAFE_NAME = re.compile(r"^[0-9a-f-]{36}/[0-9]{1,4}(-[0-9a-f]{8})?\.[a-z0-9]{1,5}$")
MAX_EXPIRES_DIGITS = 12  # a Unix time until the year 33658


class BadMediaName(ValueError):
    """A name that is not one of ours (and so could point outside the media directory)."""


def checked_name(name: str) -> str:
    if not SAFE_NAME.fullmatch(name):
        raise BadMediaName(f"{name!r} is not a media object name")
    return name


class LocalStorage:
    """A directory on this machine; URLs signed with HMAC-SHA256 and served by the app."""

    def __init__(self, directory: str | Path, public_url: str, signing_key: bytes):
        self.directory = Path(directory)
        self.public_url = public_url.rstrip("/")
        self._key = signing_key

    def put(self, name: str, body: bytes, content_type: str) -> None:
        path = self.directory / checked_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".partial")
        partial.write_bytes(body)
        partial.replace(path)  # readers see the whole file or none of it

    def signed_url(self, name: str, seconds: int, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + seconds)
        query = urlencode({"expires": expires, "signature": self.signature(name, expires)})
        return f"{self.public_url}/api/v1/media/{quote(checked_name(name))}?{query}"

    def signature(self, name: str, expires: int) -> str:
        message = f"{name}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verify(self, name: str, expires: str, signature: str, now: float | None = None) -> bool:
        """Whether a URL's query is ours for this name and has not expired."""
        # a Unix time, in ASCII digits ("²" is a digit to str.isdigit), and short: int()
        # refuses more than 4300 digits with an error
        if not (expires.isascii() and expires.isdigit() and len(expires) <= MAX_EXPIRES_DIGITS):
            return False
        if int(expires) < (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(self.signature(name, int(expires)), signature)

    def open(self, name: str) -> Path:
        return self.directory / checked_name(name)

    def delete(self, names: list[str]) -> None:
        """These objects (one already gone is fine), and their folders once empty."""
        for name in names:
            path = self.directory / checked_name(name)
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty: another copy's objects are there
                path.parent.rmdir()

    def delete_generation(self, generation_id: UUID) -> None:
        """Every object stored for this generation (none is fine)."""
        shutil.rmtree(self.directory / str(UUID(str(generation_id))), ignore_errors=True)


class SupabaseStorage:
    """Supabase Storage through its official client (storage3), with the service key."""

    def __init__(self, supabase_url: str, service_key: str):
        self.client = SyncStorageClient(
            f"{supabase_url.rstrip('/')}/storage/v1/",
            {"apikey": service_key, "Authorization": f"Bearer {service_key}"},
        )

    def put(self, name: str, body: bytes, content_type: str) -> None:
        # upsert: a retried copy replaces its own object instead of failing on the first one
        options = {"content-type": content_type, "upsert": "true"}
        self.client.from_(BUCKET).upload(checked_name(name), body, options)

    def signed_url(self, name: str, seconds: int, now: float | None = None) -> str:
        return self.client.from_(BUCKET).create_signed_url(checked_name(name), seconds)["signedURL"]

    def delete(self, names: list[str]) -> None:
        """These objects (one already gone is fine)."""
        if names:
            self.client.from_(BUCKET).remove([checked_name(name) for name in names])

    def delete_generation(self, generation_id: UUID) -> None:
        """Every object stored for this generation (none is fine): its folder, listed a page
        at a time until it is empty. Storage answers a removal with what it removed: one
        that removes nothing (a policy, a misconfigured key) ends the loop with an error."""
        folder = str(UUID(str(generation_id)))
        bucket = self.client.from_(BUCKET)
        while names := [f"{folder}/{item['name']}" for item in bucket.list(folder)]:
            if not bucket.remove(names):
                raise RuntimeError(
                    f"Supabase Storage removed none of {folder}'s {len(names)} objects"
                )
