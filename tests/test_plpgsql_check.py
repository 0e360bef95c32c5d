"""The database lint: plpgsql_check over every PL/pgSQL function of ours, as `supabase db lint`
does. Errors and warnings fail the test, each listed with its function and line.

Trigger functions are checked against each table they are attached to (their NEW and OLD
have that table's row type; a statement trigger's transition tables are named). The job
engine's own functions (schema procrastinate) are its maintainers' to check; everything in
the schemas our migrations write is ours.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

OUR_SCHEMAS = ["public", "private", "analytics", "auth"]
FAILING_LEVELS = ("error", "warning")
INSTALL = (
    "plpgsql_check is not installed on the test Postgres server. Install it with: "
    "apt-get install -y postgresql-15-plpgsql-check (or run `make test`, which installs it "
    "when it can)"
)

# one (function, relation) per check: a function with relid 0, a trigger function once per
# table it fires on; a trigger function attached nowhere cannot be checked and is listed
CHECK_TARGETS = """
select p.oid as function_oid, p.oid::regprocedure::text as function_name,
    p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype as is_trigger,
    coalesce(t.relid, 0) as relid, t.relid::regclass::text as relation,
    t.oldtable, t.newtable
from pg_catalog.pg_proc as p
join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
join pg_catalog.pg_language as l on p.prolang = l.oid
left join lateral (
    select distinct tg.tgrelid as relid, tg.tgoldtable as oldtable, tg.tgnewtable as newtable
    from pg_catalog.pg_trigger as tg
    where tg.tgfoid = p.oid and not tg.tgisinternal
) as t on p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype
where l.lanname = 'plpgsql' and n.nspname = any(%s)
order by 2, 4
"""

FINDINGS = """
select level, lineno, statement, sqlstate, message, detail, hint, query
from public.plpgsql_check_function_tb(
    %s, %s, fatal_errors => false, oldtable => %s, newtable => %s
)
"""


@pytest.fixture(scope="module")
def lint_url(database_factory, migrated_template) -> str:
    """A clone of the migrated template of its own: the extension stays out of other tests."""
    url = database_factory(migrated_template)
    with psycopg.connect(url, autocommit=True) as conn:
        available = conn.execute(
            "select count(*) from pg_available_extensions where name = 'plpgsql_check'"
        ).fetchone()[0]
        if not available:
            pytest.fail(INSTALL, pytrace=False)
        conn.execute("create extension plpgsql_check with schema public")
    return url


def findings(url: str) -> tuple[list[dict], list[str]]:
    """Every failing finding, and every trigger function that has no table to check it on."""
    failing, unattached = [], []
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
        targets = cur.execute(CHECK_TARGETS, (OUR_SCHEMAS,)).fetchall()
        assert targets, "no PL/pgSQL function found: the schemas are not migrated"
        for target in targets:
            if target["is_trigger"] and target["relid"] == 0:
                unattached.append(target["function_name"])
                continue
            for row in cur.execute(FINDINGS, target_arguments(target)).fetchall():
                if row["level"] in FAILING_LEVELS:
                    failing.append({"function": target["function_name"], **target, **row})
    return failing, unattached


def target_arguments(target: dict) -> tuple:
    relation = (target["function_oid"], target["relid"])
    return (*relation, target["oldtable"], target["newtable"])


def describe(finding: dict) -> str:
    on = f" on {finding['relation']}" if finding["relation"] else ""
    return (
        f"{finding['function']}{on} line {finding['lineno']} ({finding['statement']}): "
        f"{finding['level']} {finding['sqlstate']} {finding['message']}"
        + (f" | {finding['detail']}" if finding["detail"] else "")
        + (f" | {finding['query']}" if finding["query"] else "")
    )


def test_every_plpgsql_function_passes_plpgsql_check(lint_url):
    failing, unattached = findings(lint_url)
    assert not failing, f"plpgsql_check found {len(failing)}:\n" + "\n".join(map(describe, failing))
    assert not unattached, f"trigger functions attached to no table cannot be checked: {unattached}"


BROKEN_FUNCTIONS = {
    "a missing column": (
        "create function private.breach() returns int language plpgsql set search_path = ''"
        " as $$ begin return (select no_such_column from public.profiles limit 1); end $$"
    ),
    "a missing table in a trigger": (
        "create function private.breach() returns trigger language plpgsql"
        " set search_path = '' as $$ begin"
        " insert into public.no_such_table values (new.id); return new; end $$;"
        " create trigger breach after insert on public.models"
        " for each row execute function private.breach()"
    ),
    "a trigger reading a column its table lacks": (
        "create function private.breach() returns trigger language plpgsql"
        " set search_path = '' as $$ begin"
        " perform new.no_such_column; return new; end $$;"
        " create trigger breach after insert on public.models"
        " for each row execute function private.breach()"
    ),
    "an unused variable": (
        "create function private.breach() returns int language plpgsql set search_path = ''"
        " as $$ declare v_unused int; begin return 1; end $$"
    ),
}


@pytest.mark.parametrize("breach", sorted(BROKEN_FUNCTIONS))
def test_the_lint_catches_a_broken_function(lint_url, breach):
    with psycopg.connect(lint_url) as conn:  # rolled back on leaving: the clone stays clean
        conn.execute(BROKEN_FUNCTIONS[breach])
        failing = []
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(CHECK_TARGETS, (OUR_SCHEMAS,))
            for target in cur.fetchall():
                if "breach" not in target["function_name"]:
                    continue
                rows = cur.execute(FINDINGS, target_arguments(target)).fetchall()
                failing += [row for row in rows if row["level"] in FAILING_LEVELS]
        conn.rollback()
    assert failing, f"plpgsql_check missed {breach}"
