"""Database access: one connection pool and a few ways to run a transaction.

Use exactly one of these per unit of work; each commits when it ends and rolls back on an
exception::

    from backend.db import user_query, user_transaction, service_transaction, rpc

    rows = user_query(                          # one statement as the caller: one round trip
        "select id, name from public.projects where id = %s", (project_id,)
    )

    with user_transaction() as cur:             # several statements as the caller, through RLS
        cur.execute("select id, name from public.projects order by created_at desc limit %s", (20,))
        rows = cur.fetchall()
        result = rpc(cur, "public.authorize_generation", p_generation_id=generation_id)

    with anon_transaction() as cur:             # public reads, as PostgREST serves the anon key
        cur.execute("select id, name from public.models")

    with service_transaction() as cur:          # system work only: webhooks, refunds, refreshes
        rpc(cur, "private.audit", p_event="fal.webhook", p_actor_id=None)

``user_query`` and ``user_transaction`` do what PostgREST does for each request: in one
transaction they set ``role`` to ``authenticated`` and ``request.jwt.claims`` to the
caller's verified claims, so ``auth.uid()`` and every RLS policy decide, never Python. The
same preamble statement checks that the token's session still exists: a logged-out session
gets 401 and the caller's statement never runs.

Round trips (psycopg's pipeline mode queues statements without waiting for their answers):
``user_query`` sends the preamble, the statement and the commit (the pipeline's Sync) in
one; a ``user_transaction`` block sends its opening (begin, preamble) with its first
statement, so N statements cost N + 1 with the commit. Inside a block, use the cursor it
yields, not the cursor's connection: the connection itself is in autocommit mode.
``caller_function_query`` runs one statement calling a SQL function that does the preamble's
work itself (``private.authorize_generation_for``): the cheapest form of the hottest miss.
``owner_transaction`` runs as the URL's own role and is for the local auth provider's writes
to ``auth.*`` and for operator tasks.

Here: ``connections`` (the pool, and the ``Caller`` the transactions ask who is signed
in), ``transactions``, ``rpc``, ``errors`` (SQLSTATEs as domain errors). The web app wires
its auth guard in as the ``Caller`` (``init_app(app, caller)``); this package reads no
request and raises no HTTP error. May import: config, errors.

The pool (``app.extensions["velro.db"]``) checks a connection that sat idle before lending
it and replaces dropped ones; every connection has the configured statement timeout.
"""

from backend.db.connections import (
    CHECK_AFTER_IDLE_SECONDS,
    EXTENSION,
    Caller,
    Database,
    NoCaller,
    connection_options,
    database,
    init_app,
    pool,
)
from backend.db.errors import SessionEnded
from backend.db.rpc import rpc
from backend.db.transactions import (
    anon_transaction,
    caller_function_query,
    owner_transaction,
    service_transaction,
    user_query,
    user_transaction,
)

__all__ = [
    "CHECK_AFTER_IDLE_SECONDS",
    "EXTENSION",
    "Caller",
    "Database",
    "NoCaller",
    "SessionEnded",
    "anon_transaction",
    "caller_function_query",
    "connection_options",
    "database",
    "init_app",
    "owner_transaction",
    "pool",
    "rpc",
    "service_transaction",
    "user_query",
    "user_transaction",
]
