"""The splinter-like checks in sql/checks: each query returns what breaks its rule.

The migrated schema must pass every check; and every check must catch a planted breach,
so a check that silently matches nothing cannot pass for a clean schema.
"""

from __future__ import annotations

import psycopg
import pytest

from backend.cli.migrations import REPO_ROOT

CHECKS_DIR = REPO_ROOT / "sql" / "checks"
CHECKS = sorted(CHECKS_DIR.glob("*.sql"))

BREACHES = {
    "rls_disabled_in_exposed_schema": "create table public.breach (id int)",
    "function_search_path_mutable": (
        "create function private.breach() returns int language sql as $$ select 1 $$"
    ),
    "security_definer_executable_by_anon": (
        "create function public.breach() returns int language sql security definer "
        "set search_path = '' as $$ select 1 $$; "
        "grant execute on function public.breach() to anon"
    ),
    "unindexed_foreign_keys": (
        "create table private.breach_parent (id int primary key); "
        "create table private.breach (parent_id int references private.breach_parent (id))"
    ),
    # what a migration that forgets its revokes leaves on hosted Supabase
    "api_role_unintended_grants": (
        "create table public.breach (id int); "
        "grant all on public.breach to service_role; "
        "create function public.breach_rpc() returns int language sql "
        "set search_path = '' as $$ select 1 $$; "
        "grant execute on function public.breach_rpc() to authenticated, service_role"
    ),
    "materialized_view_readable_by_api_role": (
        "create materialized view analytics.breach as select 1 as id; "
        "grant select on analytics.breach to authenticated"
    ),
}


def run_check(url: str, check_name: str) -> list[dict]:
    query = (CHECKS_DIR / f"{check_name}.sql").read_text()
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(query)
        columns = [column.name for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def test_every_check_has_a_planted_breach():
    assert {path.stem for path in CHECKS} == set(BREACHES)


@pytest.mark.parametrize("check_name", [path.stem for path in CHECKS])
def test_the_migrated_schema_passes(db_url, check_name):
    offending = run_check(db_url, check_name)
    listing = "\n".join(str(row) for row in offending)
    assert not offending, f"{check_name} found {len(offending)}:\n{listing}"


@pytest.mark.parametrize("check_name", sorted(BREACHES))
def test_the_check_catches_a_breach(fresh_db_url, check_name):
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        conn.execute(BREACHES[check_name])
    offending = run_check(fresh_db_url, check_name)
    assert any("breach" in str(row) for row in offending), offending
