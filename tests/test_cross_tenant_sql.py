"""The cross-tenant matrix in SQL, as PostgREST runs a request: every exposed table and RPC,
tried as every actor.

A client with a Supabase SDK skips this app and reaches Postgres through PostgREST, which
runs each request in a transaction with ``role`` set to the token's role claim and
``request.jwt.claims`` set to its claims. So the same world as the HTTP matrix
(``matrix_world``) is tried here directly: the tables in ``public`` that anon or
authenticated hold any privilege on, and the functions in ``public`` they may execute,
are read from the catalog (a new one is covered without a word here), then each actor
selects from every table, inserts a copy of a world row into it (with fresh ids and
themselves as its user, and where ``FORGED`` says), updates and deletes every row they
can, and calls every RPC with the world's ids. Each probe runs in a transaction that is
rolled back.

Expected, from the same rule table as the HTTP matrix:

- reads: a member sees the world's project, generations and team exactly when their role
  grants ``read``, and the generations' stored outputs (``generation_media``) exactly when
  it grants reading them; a generation's webhook and its deliveries are its owner's alone;
  ``profiles``, ``credit_ledger`` and the webhook tables show a caller only their own rows;
  outsiders find no trace of the world in any row of any table or any RPC's answer, nobody
  finds a trace of the other tenant, and nobody, not even its owner, a stored webhook
  signing secret;
- writes: the world rows a table write touches are exactly those the table's rule
  (``TABLE_RULES``) allows the actor's role; a write granted to the API roles without a
  rule here fails the run. An outsider's RPC call changes no world row; a viewer's changes
  only rows of their own (leaving the team is theirs to do).

A token PostgREST would refuse (expired, unknown key, ``alg: none``) never reaches SQL;
what matters here is that the claims such a token carries cannot be forged into effect:
``role: service_role`` in the claims of an ``authenticated`` session is a stranger, an
``anon`` session carrying the owner's claims sees nothing private.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

import psycopg
import pytest
from api_support import MODEL, Api
from fixtures_app import TestUser, app_settings
from matrix_world import ARTIFACTS, TEAM_ROLES, World
from psycopg import sql
from psycopg.types.json import Jsonb

from backend import close_app, create_app

# Writes the API roles are granted on tables, and the rule each follows. ``self``: only the
# caller's own row; ``own_new``: creates the caller's own rows, never a world row.
TABLE_RULES = {
    ("generations", "UPDATE"): ("generation", "write"),
    ("generations", "DELETE"): ("generation", "delete"),
    ("projects", "INSERT"): ("account", "own_new"),
    ("projects", "UPDATE"): ("project", "owner"),
    ("projects", "DELETE"): ("project", "owner"),
    ("teams", "UPDATE"): ("team", "admin"),
    ("profiles", "UPDATE"): ("account", "self"),
}
# the world's resource rows, by table: the resource they belong to, and what a member's role
# on it must grant to read them (a generation's outputs are its readers', its webhook and
# deliveries its owner's)
RESOURCE_TABLES = {
    "projects": ("project", "read"),
    "generations": ("generation", "read"),
    "teams": ("team", "read"),
    "generation_media": ("generation", "read"),
    "generation_webhooks": ("generation", "owner"),
    "webhook_deliveries": ("generation", "owner"),
}
SELF_ONLY_TABLES = ("profiles", "credit_ledger", "generation_webhooks", "webhook_deliveries")
# a forged copy of a world row of these tables goes to the shared generation, which has no
# webhook, no delivery and no output at position 1 (``SqlWorld``), with these columns too: so
# that only a grant or a policy refuses it, not a key
FORGED = {
    "generation_media": {"position": 1},
    "generation_webhooks": {},
    "webhook_deliveries": {},
}


@dataclass
class SqlActor:
    name: str
    role: str  # the database role PostgREST would set
    claims: dict
    user_id: str | None = None
    world_role_of: str | None = None  # whose standing in the world this actor has
    outsider: bool = True


@dataclass
class Probe:
    table: str | None
    command: str
    statement: sql.Composable
    params: tuple = ()


@dataclass
class Change:
    """The world rows before and after a probe (by table and key)."""

    before: dict
    after: dict

    @property
    def keys(self) -> set:
        return {
            k
            for k in self.before.keys() | self.after.keys()
            if self.before.get(k) != self.after.get(k)
        }

    def text(self, key) -> str:
        return f"{self.before.get(key, '')} {self.after.get(key, '')}"


@dataclass
class Tally:
    cases: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)

    def count(self, kind: str) -> None:
        self.cases[kind] = self.cases.get(kind, 0) + 1


def user_claims(user_id: str, **extra) -> dict:
    return {"sub": user_id, "role": "authenticated", "aud": "authenticated", **extra}


def sql_actors(world: World) -> list[SqlActor]:
    users = world.users
    actors = [
        SqlActor(
            "owner",
            "authenticated",
            user_claims(users["owner"].id),
            users["owner"].id,
            "owner",
            outsider=False,
        ),
    ]
    for role in TEAM_ROLES:
        actors.append(
            SqlActor(
                role,
                "authenticated",
                user_claims(users[role].id),
                users[role].id,
                role,
                outsider=False,
            )
        )
    for name in ("other_member", "stranger", "suspended", "deleted"):
        actors.append(SqlActor(name, "authenticated", user_claims(users[name].id), users[name].id))
    stranger = users["stranger"].id
    actors += [
        SqlActor("anon", "anon", {"role": "anon"}),
        SqlActor(
            "service_role_claim",
            "authenticated",
            user_claims(stranger, role="service_role"),
            stranger,
        ),
        SqlActor("service_role_claim_no_sub", "authenticated", {"role": "service_role"}),
        SqlActor(
            "anon_with_owner_claims", "anon", user_claims(users["owner"].id, role="service_role")
        ),
    ]
    return actors


# the catalog ---------------------------------------------------------------------------------

EXPOSED_TABLES = """
select c.relname as name,
       array(select a.attname::text from pg_index as i
             join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
             where i.indrelid = c.oid and i.indisprimary order by a.attnum) as key
from pg_class as c
where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm')
  and exists (select 1 from unnest(array['anon', 'authenticated']) as r(role)
              where has_any_column_privilege(r.role, c.oid, 'select, insert, update')
                 or has_table_privilege(r.role, c.oid, 'delete, truncate'))
order by 1
"""
TABLE_GRANTS = """
select table_name as name, privilege_type as command from information_schema.table_privileges
where table_schema = 'public' and grantee in ('anon', 'authenticated')
  and privilege_type in ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
union
select table_name, privilege_type from information_schema.column_privileges
where table_schema = 'public' and grantee in ('anon', 'authenticated')
  and privilege_type in ('INSERT', 'UPDATE')
"""
GRANTED_COLUMNS = """
select column_name from information_schema.column_privileges
where table_schema = 'public' and table_name = %s and grantee = 'authenticated'
  and privilege_type = %s order by 1
"""
EXPOSED_FUNCTIONS = """
select p.oid::regprocedure::text as signature, p.proname as name,
       coalesce(p.proargnames, array[]::text[]) as arg_names,
       array(select format_type(t, null) from unnest(p.proargtypes) as t) as arg_types
from pg_proc as p
where p.pronamespace = 'public'::regnamespace and p.prokind = 'f'
  and (has_function_privilege('anon', p.oid, 'execute')
       or has_function_privilege('authenticated', p.oid, 'execute'))
order by 1
"""


class Catalog:
    def __init__(self, conn: psycopg.Connection):
        self.tables = {row[0]: row[1] for row in conn.execute(EXPOSED_TABLES)}
        self.writes = {(row[0], row[1]) for row in conn.execute(TABLE_GRANTS)}
        self.functions = conn.execute(EXPOSED_FUNCTIONS).fetchall()
        self.updatable = self.granted_columns(conn, "UPDATE")
        self.insertable = self.granted_columns(conn, "INSERT")

    def granted_columns(self, conn: psycopg.Connection, privilege: str) -> dict[str, list[str]]:
        return {
            name: [row[0] for row in conn.execute(GRANTED_COLUMNS, (name, privilege))]
            for name in self.tables
        }


# the runner ------------------------------------------------------------------------------------


class Matrix:
    def __init__(self, world: World, conn: psycopg.Connection):
        self.world = world
        self.conn = conn
        self.catalog = Catalog(conn)
        self.tally = Tally()
        self.world_ids = [s for s in world.secrets() if is_uuid(s)]
        self.rows_statement = sql.SQL(" union all ").join(
            sql.SQL("select {}, ({})::text, row_to_json(t)::text from public.{} as t").format(
                sql.Literal(name),
                sql.SQL(" || ',' || ").join(
                    sql.SQL("t.{}::text").format(sql.Identifier(k)) for k in key
                )
                if key
                else sql.SQL("''"),
                sql.Identifier(name),
            )
            for name, key in self.catalog.tables.items()
        )

    def fail(self, message: str) -> None:
        self.tally.failures.append(message)

    def world_rows(self) -> dict[tuple[str, str], str]:
        """Every row of an exposed table that names a world id, by (table, key): as the owner
        of the database, inside the probe's transaction (so it sees what the probe did)."""
        rows = self.conn.execute(self.rows_statement).fetchall()
        return {
            (table, key): text
            for table, key, text in rows
            if any(world_id in text for world_id in self.world_ids)
        }

    def as_actor(self, actor: SqlActor, probe: Probe):
        """Run a probe as the actor; (rows or the error, world rows it changed), rolled back."""
        with self.conn.transaction(force_rollback=True):
            before = self.world_rows()
            self.conn.execute(
                "select set_config('request.jwt.claims', %s, true), set_config('role', %s, true)",
                (json.dumps(actor.claims), actor.role),
            )
            try:
                with self.conn.transaction():
                    cur = self.conn.execute(probe.statement, probe.params)
                    result = cur.fetchall() if cur.description else []
            except psycopg.Error as error:
                result = error
            self.conn.execute("reset role")
            after = self.world_rows()
        return result, Change(before, after)

    # reads

    def reads(self, actor: SqlActor) -> None:
        for table in self.catalog.tables:
            statement = sql.SQL("select row_to_json(t)::text from public.{} as t").format(
                sql.Identifier(table)
            )
            result, _ = self.as_actor(actor, Probe(table, "SELECT", statement))
            self.tally.count("select")
            texts = [] if isinstance(result, psycopg.Error) else [row[0] for row in result]
            self.check_traces(actor, f"select {table}", "\n".join(texts))
            if table in SELF_ONLY_TABLES:
                foreign = [t for t in texts if not actor.user_id or actor.user_id not in t]
                if foreign:
                    self.fail(f"{actor.name} reads {len(foreign)} {table} rows not their own")
            if table in RESOURCE_TABLES:
                self.check_resources(actor, table, "\n".join(texts))

    def check_resources(self, actor: SqlActor, table: str, seen: str) -> None:
        world = self.world
        resource, requires = RESOURCE_TABLES[table]
        role = world.role(actor.world_role_of, resource) if not actor.outsider else None
        may = world.rules.allows(role, requires)
        for resource_id in self.resource_ids(table):
            if (resource_id in seen) != may:
                self.fail(f"{actor.name} {'cannot' if may else 'can'} read {table} {resource_id}")

    def check_traces(self, actor: SqlActor, what: str, text: str) -> None:
        if actor.outsider:
            leaked = [s for s in self.world.secrets() if s in text]
            if leaked:
                self.fail(f"{actor.name}: {what} shows the world's {leaked}")
        if actor.name != "other_member":
            leaked = [s for s in self.world.other_secrets() if s in text]
            if leaked:
                self.fail(f"{actor.name}: {what} shows the other tenant's {leaked}")
        if any(s in text for s in self.world.signing_secrets):
            self.fail(f"{actor.name}: {what} shows a stored webhook signing secret")

    # table writes

    def table_writes(self, actor: SqlActor) -> None:
        for table, key in self.catalog.tables.items():
            for command in ("INSERT", "UPDATE", "DELETE"):
                probe = self.write_probe(table, key, command, actor)
                result, change = self.as_actor(actor, probe)
                self.tally.count(command.lower())
                touched = change.keys
                if not isinstance(result, psycopg.Error) and command != "INSERT":
                    returned = {(table, ",".join(map(str, row))) for row in result}
                    touched |= returned & change.before.keys()
                if (table, command) in TABLE_RULES and TABLE_RULES[(table, command)][
                    1
                ] == "own_new":
                    # a row the actor creates for themself may name them (the owner is a
                    # world person): it must be new, and theirs
                    touched = {
                        k
                        for k in touched
                        if k in change.before
                        or not actor.user_id
                        or actor.user_id not in change.text(k)
                    }
                allowed = self.allowed_changes(actor, table, command)
                while command == "DELETE":
                    # rows that belong to a deleted row go with it (shares, links, generations),
                    # and theirs with them (a generation's media, webhook and deliveries)
                    ids = {key for _, key in allowed}
                    gone = {k for k in touched - allowed if any(i in change.text(k) for i in ids)}
                    if not gone:
                        break
                    allowed |= gone
                if not touched <= allowed or (allowed and not touched):
                    self.fail(
                        f"{actor.name}: {command} on {table} touched {sorted(touched)},"
                        f" allowed {sorted(allowed)}"
                    )

    def write_probe(self, table: str, key: list, command: str, actor: SqlActor) -> Probe:
        name = sql.Identifier(table)
        returning = sql.SQL(", ").join(map(sql.Identifier, key)) if key else sql.SQL("1")
        if command == "DELETE":
            return Probe(
                table,
                command,
                sql.SQL("delete from public.{} returning {}").format(name, returning),
            )
        if command == "UPDATE":
            columns = self.catalog.updatable[table] or [key[0] if key else "ctid"]
            assignments = sql.SQL(", ").join(
                sql.SQL("{0} = {0}").format(sql.Identifier(c)) for c in columns
            )
            # each row touched is written again (an audit or a trigger may change it)
            return Probe(
                table,
                command,
                sql.SQL("update public.{} set {} returning {}").format(
                    name, assignments, returning
                ),
            )
        row = self.world_copy(table, key, actor)
        columns = self.catalog.insertable[table] or list(row) or [key[0]]
        return Probe(
            table,
            command,
            sql.SQL(
                "insert into public.{0} ({1})"
                " select {1} from jsonb_populate_record(null::public.{0}, %s)"
            ).format(name, sql.SQL(", ").join(map(sql.Identifier, columns))),
            (Jsonb(row),),
        )

    def world_copy(self, table: str, key: list, actor: SqlActor) -> dict:
        """A world row of the table with fresh keys and the actor as its user: "let me in"."""
        rows = self.conn.execute(
            sql.SQL("select row_to_json(t) from public.{} as t").format(sql.Identifier(table))
        ).fetchall()
        world_rows = [r[0] for r in rows if any(i in json.dumps(r[0]) for i in self.world_ids)]
        row = dict(world_rows[0]) if world_rows else {}
        for column in key:
            if is_uuid(str(row.get(column, ""))):
                row[column] = str(uuid.uuid4())
        for column in ("user_id", "owner_id", "invited_by"):
            if column in row and actor.user_id:
                row[column] = actor.user_id
        if table in FORGED:
            row.update(FORGED[table], generation_id=self.world.shared["id"])
        return row

    def allowed_changes(self, actor: SqlActor, table: str, command: str) -> set:
        if (table, command) not in self.catalog.writes:
            return set()
        rule = TABLE_RULES.get((table, command))
        if rule is None:
            self.fail(f"{command} on {table} is granted to an API role but has no rule here")
            return set()
        resource, requires = rule
        if actor.role != "authenticated" or actor.name in ("suspended", "deleted"):
            return set()
        if requires == "own_new":
            return set()
        if requires == "self":
            # only the world's people have a profile among the world's rows
            return set() if actor.outsider else {(table, actor.user_id)}
        role = None if actor.outsider else self.world.role(actor.world_role_of, resource)
        if not self.world.rules.allows(role, requires):
            return set()
        return {(table, i) for i in self.resource_ids(table)}

    def resource_ids(self, table: str) -> list[str]:
        """The resources the world's rows of a table belong to (the rows' keys, for the
        resources' own tables)."""
        world = self.world
        return {
            "projects": [world.project["id"]],
            "generations": [world.generation["id"], world.shared["id"]],
            "teams": [world.team["id"]],
            "generation_media": [world.generation["id"], world.shared["id"]],
            "generation_webhooks": [world.generation["id"]],
            "webhook_deliveries": [world.generation["id"]],
        }[table]

    # RPCs

    def rpcs(self, actor: SqlActor) -> None:
        for signature, name, arg_names, arg_types in self.catalog.functions:
            args = [self.argument(n, t) for n, t in zip(arg_names, arg_types, strict=False)]
            statement = sql.SQL("select r::text from public.{}({}) as r").format(
                sql.Identifier(name),
                sql.SQL(", ").join(
                    sql.SQL("{} => {}").format(sql.Identifier(n), sql.Literal(v))
                    for n, v in zip(arg_names, args, strict=False)
                    if v is not None
                ),
            )
            result, change = self.as_actor(actor, Probe(None, "RPC", statement))
            self.tally.count("rpc")
            text = (
                "" if isinstance(result, psycopg.Error) else "\n".join(r[0] or "" for r in result)
            )
            self.check_traces(actor, signature, text)
            if actor.outsider and change.keys:
                self.fail(f"{actor.name}: {signature} changed world rows {sorted(change.keys)}")
            if actor.name == "viewer":
                foreign = [k for k in change.keys if actor.user_id not in change.text(k)]
                if foreign:
                    self.fail(f"viewer: {signature} changed rows not their own: {foreign}")

    def argument(self, name: str, type_name: str):
        world = self.world
        by_name = {
            "p_project_id": world.project["id"],
            "p_generation_id": world.shared["id"],
            "p_team_id": world.team["id"],
            "p_user_id": world.target.id,
            "p_new_owner_id": world.target.id,
            "p_invitation_id": world.invitation["invitation_id"],
            # valid values, so that a call is refused for who makes it, not for its input
            "p_email": f"invitee-{uuid.uuid4().hex[:12]}@example.com",
            "p_model_id": MODEL,
            "p_url": "https://hooks.example.com/velro",
        }
        if name in by_name:
            return by_name[name]
        return {
            "text": "x",
            "public.team_role": "admin",
            "team_role": "admin",
            "integer": 7,
            "bigint": 7,
            "jsonb": "{}",
        }.get(type_name)


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


# the test ---------------------------------------------------------------------------------------


class SqlWorld(World):
    """The matrix's world with what only SQL shows of it (the HTTP matrix's world has none
    of it), written as the worker writes it: both generations' stored outputs, the owner's
    webhook on the project's generation with a failed delivery of its completion, and the
    owner's signing secret; the other tenant has the same of its own. The shared generation
    has no webhook or delivery, and one output (``FORGED``)."""

    def __init__(self, api: Api):
        super().__init__(api, warm=False)
        self.signing_secrets: list[str] = []
        self.stored = self.outputs_and_webhook(self.owner, [self.generation, self.shared])
        self.other_stored = self.outputs_and_webhook(self.other, [self.other_generation])

    def outputs_and_webhook(self, user: TestUser, generations: list[dict]) -> list[str]:
        """Writes them; returns what an outsider must not see of them."""
        tag = uuid.uuid4().hex
        sources = [f"https://v3.fal.media/files/{tag}/{g['id']}.png" for g in generations]
        for generation, source in zip(generations, sources, strict=True):
            self.api.sql(
                "select public.record_generation_media(%s, 0, %s, 'image/png', 4096, 64, 64, %s)",
                (generation["id"], f"{generation['id']}/0-{tag}.png", source),
            )
        url = f"https://hooks.example.com/{tag}"
        row = (generations[0]["id"], user.id, url)
        self.api.sql(
            "insert into public.generation_webhooks (generation_id, owner_id, url, events)"
            " values (%s, %s, %s, '{completed}')",
            row,
        )
        self.api.sql(
            "insert into public.webhook_deliveries (generation_id, owner_id, event, url, status,"
            " attempts, response_status, last_error)"
            " values (%s, %s, 'completed', %s, 'failed', 3, 500, 'HTTP 500')",
            row,
        )
        self.signing_secrets += [
            r["secret"]
            for r in self.api.sql(
                "insert into private.webhook_secrets (user_id, secret)"
                " values (%s, private.new_webhook_secret()) returning secret",
                (user.id,),
            )
        ]
        return [*sources, url]

    def secrets(self) -> list[str]:
        return [*super().secrets(), *self.stored]

    def other_secrets(self) -> list[str]:
        return [*super().other_secrets(), *self.other_stored]


@pytest.fixture(scope="module")
def world(database_factory, migrated_template):
    database = database_factory(migrated_template)
    app = create_app(app_settings(database))
    try:
        yield SqlWorld(Api(app, database))
    finally:
        close_app(app)


def test_matrix_in_sql(world):
    with psycopg.connect(world.api.db_url, autocommit=True) as conn:
        matrix = Matrix(world, conn)
        assert len(matrix.catalog.tables) >= 10 and len(matrix.catalog.functions) >= 20
        actors = sql_actors(world)
        for actor in actors:
            matrix.reads(actor)
            matrix.table_writes(actor)
            matrix.rpcs(actor)
    tally = matrix.tally
    counts = {
        "path": "sql",
        "tables": len(matrix.catalog.tables),
        "functions": len(matrix.catalog.functions),
        "actors": len(actors),
        "cases": sum(tally.cases.values()),
        "by_kind": tally.cases,
        "failures": len(tally.failures),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "matrix-sql.json").write_text(json.dumps(counts, indent=2) + "\n")
    print(f"cross-tenant matrix, SQL: {counts}")
    assert not tally.failures, "\n".join(tally.failures)
    expected = len(actors) * (4 * len(matrix.catalog.tables) + len(matrix.catalog.functions))
    assert counts["cases"] == expected
