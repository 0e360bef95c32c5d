"""What an email address looks like: the one rule every route and command applies.

Sign-up, sign-in and invitations (``backend.http.text.Email``, the local provider) and
``velro user create`` (``backend.auth.accounts``) all come here, so an address one accepts,
all do. It imports nothing of the app: the http package and the operator's command can both
use it without loading each other, or the web app.
"""

from __future__ import annotations

import re

# a local part, an @, and dot-separated domain labels: no two parts can take the same
# characters, so a match is linear in the length (an earlier pattern backtracked, and a
# long string of dots took seconds per request)
EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
MAX_EMAIL_LENGTH = 254  # RFC 5321: the longest address a mail server accepts


def is_email(text: str) -> bool:
    """Whether ``text`` has the shape of an email address a mail server accepts."""
    return len(text) <= MAX_EMAIL_LENGTH and EMAIL.fullmatch(text) is not None
