"""Calling SQL functions by name: Python never builds their SQL by hand."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql


def rpc(cur: psycopg.Cursor, function: str, **arguments: Any) -> list[dict]:
    """Call a SQL function by its qualified name with named arguments; return its rows.

    ``rpc(cur, "public.grant_credits", p_user_id=uid, p_amount=10)`` runs
    ``select * from public.grant_credits(p_user_id => %s, p_amount => %s)``.
    """
    schema, name = function.split(".", 1)
    named = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(key), sql.Placeholder()) for key in arguments
    )
    query = sql.SQL("select * from {}.{}({})").format(
        sql.Identifier(schema), sql.Identifier(name), named
    )
    cur.execute(query, tuple(arguments.values()))
    return cur.fetchall()
