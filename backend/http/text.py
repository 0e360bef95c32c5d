"""Text the database can store, checked at the boundary.

JSON may carry a NUL character (``\\u0000``) or an unpaired surrogate (``\\ud800``); Postgres
text and jsonb can hold neither, and the driver fails on them (``DataError``,
``UnicodeEncodeError``, SQLSTATE 22P05). Every string a request brings in is checked here
first, so such input is a 422 that names the field instead of an error deep in a query:

- ``Text`` and ``Email``: the marshmallow string fields every input schema uses; ``Email``
  takes an address by ``is_email``, the one rule every sign-up, sign-in and invitation
  route applies, so an address one route accepts, all do;
- ``JsonObject``: a JSON object (model parameters, user metadata) whose keys and strings are
  checked at any depth; an error names the path inside it, e.g. ``parameters.style.0``;
- ``refuse_bad_text_in_url``: query string names and values, and path tokens, of every route;
- ``problem_with(value)``: the check itself, for code that reads JSON by hand;
- ``NOT_BLANK`` and ``is_blank``: when a name or a prompt counts as blank, one rule that the
  validator runs and the OpenAPI document publishes as the field's pattern.

This module knows marshmallow and Flask's request, nothing of the database.
"""

from __future__ import annotations

import re
from typing import ClassVar

from flask import request
from marshmallow import ValidationError, fields
from werkzeug.exceptions import UnprocessableEntity

from backend.email_address import is_email

PROBLEM = "Must not contain a NUL character (\\u0000) or an unpaired surrogate (\\ud800-\\udfff)."

# Characters that show nothing on their own, so that a name or a prompt made only of them
# reads as blank: Unicode's White_Space, the controls (Cc) and the default-ignorable code
# points (Unicode 14: zero-width spaces and joiners, direction marks, the soft hyphen,
# variation selectors, Hangul fillers, the byte order mark...). The visible format
# characters (the Arabic number signs U+0600-U+0605, say) are not among them.
INVISIBLE_RANGES = (
    (0x0000, 0x0020),  # the C0 controls (tab, line feed, U+001C-U+001F...), space
    (0x007F, 0x00A0),  # delete, the C1 controls (next line among them), no-break space
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x1680, 0x1680),  # Ogham space mark
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian variation selectors and vowel separator
    (0x2000, 0x200F),  # en quad to hair space; zero-width space, (non-)joiner; LRM, RLM
    (0x2028, 0x202F),  # line and paragraph separators, bidi embeddings, narrow no-break space
    (0x205F, 0x206F),  # medium mathematical space, word joiner, invisible operators, isolates
    (0x3000, 0x3000),  # ideographic space
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # zero-width no-break space (the byte order mark)
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),  # reserved as default-ignorable
)
# The ranges stop at U+FFFF and are written as \uXXXX escapes because then the class means
# the same to a validator that reads the pattern over UTF-16 code units, to one that reads
# it over code points (ECMA-262 with and without its u flag) and to Python's re. So the few
# invisible characters past U+FFFF (tag characters, some format controls of musical and
# shorthand notation) count as visible, here as in the document.
# NOT_BLANK, the JSON Schema pattern of a string that is not blank: some character shows.
NOT_BLANK = "[^{}]".format(
    "".join(
        f"\\u{low:04x}" if low == high else f"\\u{low:04x}-\\u{high:04x}"
        for low, high in INVISIBLE_RANGES
    )
)
_SHOWS = re.compile(NOT_BLANK)


def problem_with(value: str) -> str | None:
    """Why the database cannot store ``value``, or None when it can."""
    if "\x00" in value:
        return PROBLEM
    try:
        value.encode("utf-8")  # a surrogate left after JSON decoding has no pair
    except UnicodeEncodeError:
        return PROBLEM
    return None


def is_blank(value: str) -> bool:
    """Whether ``value`` has no character that shows: the NOT_BLANK pattern, run here."""
    return _SHOWS.search(value) is None


def printable(name: str) -> str:
    """A name safe to echo in an error: the offending characters written as escapes."""
    return "".join(
        f"\\u{ord(c):04x}" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in name
    )


class Text(fields.String):
    """A string of characters the database can store (no NUL, no unpaired surrogate)."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if problem_with(text):
            raise ValidationError(PROBLEM)
        return text


class Email(Text):
    """An email address (``is_email``) made of storable characters."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid_email": "Not a valid email address."
    }

    def __init__(self, **kwargs):
        kwargs["metadata"] = {"format": "email", **kwargs.get("metadata", {})}
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not is_email(text):
            raise self.make_error("invalid_email")
        return text


class JsonObject(fields.Dict):
    """A JSON object of any values whose keys and strings, at every depth, are storable."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, dict):
            _refuse_bad_text(value)
        return super()._deserialize(value, attr, data, **kwargs)


def _refuse_bad_text(value) -> None:
    problems = _problems_in(value)
    if problems:
        raise ValidationError(problems)


def _problems_in(value) -> dict | list | None:
    """{key-or-index: problem or nested problems}, or a list with the problem for a string."""
    if isinstance(value, str):
        return [PROBLEM] if problem_with(value) else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(index), item) for index, item in enumerate(value))
    else:
        return None
    problems = {}
    for key, item in items:
        if problem_with(key):
            problems[printable(key)] = [f"This key is not valid. {PROBLEM}"]
        elif nested := _problems_in(item):
            problems[key] = nested
    return problems or None


def refuse_bad_text_in_url():
    """before_request: a query parameter or path token the database could not store is a 422."""
    details = {}
    for name, values in request.args.lists():
        if problem_with(name) or any(problem_with(v) for v in values):
            details[f"query.{printable(name)}"] = [PROBLEM]
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and problem_with(value):
            details[f"path.{name}"] = [PROBLEM]
    if details:
        # the shape webargs gives a 422: the error handler names each field from "messages"
        sentence = "; ".join(f"{field}: {PROBLEM}" for field in details)
        error = UnprocessableEntity(description=f"Invalid input. {sentence}")
        error.data = {"messages": details}
        raise error
