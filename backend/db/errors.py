"""SQLSTATEs the database layer turns into domain errors (HTTP belongs to backend.http)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from backend.errors import InvalidToken

# raised by private.raise_error(401, ...): the preamble found the token's session ended
SESSION_ENDED = "PT401"


class SessionEnded(InvalidToken):
    """The token is valid but its session was logged out or expired."""


@contextmanager
def session_end_as_domain_error() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as error:
        if error.sqlstate == SESSION_ENDED:
            raise SessionEnded(error.diag.message_primary) from None
        raise
