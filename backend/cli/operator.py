"""What every operator command shares: the database connection, one transaction, finding a
user by email, and the audit line for an operator's action."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from backend.cli import embedded
from backend.db import rpc

AUDIT_SOURCE = {"source": "velro cli"}


@contextmanager
def connection(autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A connection to the operator's database; a database error becomes a message and exit 1."""
    try:
        with psycopg.connect(embedded.database_url(), autocommit=autocommit) as conn:
            yield conn
    except psycopg.Error as error:
        raise click.ClickException(error.diag.message_primary or str(error)) from error


@contextmanager
def transaction(role: str | None = None) -> Iterator[psycopg.Cursor]:
    """One transaction, as `role` when given; commits when the block ends without an error."""
    with connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        if role:
            cur.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        yield cur


def find_user(cur: psycopg.Cursor, email: str) -> dict:
    cur.execute(
        "select id, email, status from public.profiles where lower(email) = lower(%s)",
        (email.strip(),),
    )
    profile = cur.fetchone()
    if profile is None:
        raise click.ClickException(f"no user with email {email}")
    return profile


def audit(cur: psycopg.Cursor, event: str, user: dict) -> None:
    """An operator's action on a user; no actor id, since the operator is not a user."""
    rpc(
        cur,
        "private.audit",
        p_event=event,
        p_actor_id=None,
        p_subject_type="user",
        p_subject_id=str(user["id"]),
        p_team_id=None,
        p_details=Jsonb({"email": user["email"], **AUDIT_SOURCE}),
    )
