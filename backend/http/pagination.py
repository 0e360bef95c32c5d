"""Keyset (cursor) pagination: stable pages however many rows arrive between requests.

A list is ordered newest first by a key of one or more columns, e.g. ``(created_at, id)``
descending. A page asks for ``limit + 1`` rows after the cursor; the extra row only tells
whether there is a next page. The cursor is the key of the page's last row, encoded as
url-safe base64 JSON: opaque to clients, and holding nothing they have not already seen.

    page = Page.from_args(args, key=NEWEST_FIRST)      # (("created_at", datetime), ("id", UUID))
    cur.execute(f"select ... where {page.where_sql()} order by {page.order_sql()} limit %s",
                (*page.where_params(), page.fetch_size))
    return page.result(cur.fetchall())   # {"items": [...], "next_cursor": "..." | None}
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from backend.errors import ApiError

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class BadCursor(ApiError):
    code, error = 400, "bad_cursor"
    description = "cursor is not valid: pass the next_cursor of the previous page unchanged."


# A key is its columns with their Python types: a cursor must hold values of those types,
# or a forged one would reach SQL as a type error instead of a 400.
Key = tuple[tuple[str, type], ...]
NEWEST_FIRST: Key = (("created_at", datetime), ("id", UUID))


@dataclass(frozen=True)
class Page:
    """One page request: how many rows, and the key of the last row already seen."""

    key: Key
    limit: int = DEFAULT_LIMIT
    after: tuple | None = None

    @classmethod
    def from_args(cls, args: dict, key: Key) -> Page:
        cursor = args.get("cursor")
        after = decode_cursor(cursor, tuple(kind for _, kind in key)) if cursor else None
        return cls(key=key, limit=args.get("limit", DEFAULT_LIMIT), after=after)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(column for column, _ in self.key)

    @property
    def fetch_size(self) -> int:
        return self.limit + 1

    def where_sql(self) -> str:
        """A row-value comparison the (key desc) index answers; "true" on the first page."""
        if self.after is None:
            return "true"
        columns = ", ".join(self.columns)
        marks = ", ".join(["%s"] * len(self.columns))
        return f"({columns}) < ({marks})"

    def where_params(self) -> tuple:
        return self.after or ()

    def order_sql(self) -> str:
        return ", ".join(f"{column} desc" for column in self.columns)

    def result(self, rows: list[dict]) -> dict:
        items = rows[: self.limit]
        more = len(rows) > self.limit
        next_cursor = encode_cursor(tuple(items[-1][c] for c in self.columns)) if more else None
        return {"items": items, "next_cursor": next_cursor}


def encode_cursor(values: tuple) -> str:
    payload = json.dumps([_tagged(v) for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: tuple[type, ...]) -> tuple:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("wrong cursor length")
        decoded = tuple(_untagged(v) for v in values)
        if not all(type(v) is kind for v, kind in zip(decoded, kinds, strict=True)):
            raise ValueError("cursor of another list")
        return decoded
    except (ValueError, TypeError, binascii.Error, UnicodeError) as error:
        raise BadCursor() from error


# Values keep their type through the round trip: a timestamp must compare as a timestamp.
def _tagged(value) -> list:
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, UUID):
        return ["u", str(value)]
    if isinstance(value, int) and not isinstance(value, bool):
        return ["i", value]
    raise TypeError(f"cannot put {type(value).__name__} in a cursor")


def _untagged(item):
    tag, value = item
    if tag in ("t", "u") and not isinstance(value, str):
        raise ValueError("cursor timestamp or id that is not a string")
    if tag == "t":
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("cursor timestamp without time zone")
        return parsed
    if tag == "u":
        return UUID(value)
    if tag == "i" and isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("unknown cursor value")
