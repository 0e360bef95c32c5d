"""Two ways to migrate, one result: `supabase db push` and backend/cli/migrations.py.

Both must leave the same schema and the same `supabase_migrations` history, skip what the
other already applied, and apply nothing the second time.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from backend.cli import embedded, migrations
from backend.cli.sql_split import split_statements

SUPABASE = migrations.REPO_ROOT / "node_modules" / ".bin" / "supabase"
CASES = Path(__file__).parent / "migration_cases"
QUIET = {"log": lambda _message: None}


def supabase_push(url: str, workdir: Path = migrations.REPO_ROOT, *extra: str) -> str:
    """Run the pinned Supabase CLI's `db push` against `url`; return its output."""
    if not SUPABASE.exists():
        pytest.fail("The Supabase CLI is not installed: run `npm ci`.", pytrace=False)
    command = [str(SUPABASE), "db", "push", "--workdir", str(workdir), "--yes"]
    command += ["--db-url", f"{url}?sslmode=disable", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"supabase db push failed:\n{output}"
    return output


def project_with(tmp_path: Path, files: list[Path]) -> Path:
    """A Supabase project directory holding only `files` as its migrations."""
    workdir = tmp_path / "project"
    (workdir / "supabase" / "migrations").mkdir(parents=True)
    shutil.copy(migrations.REPO_ROOT / "supabase" / "config.toml", workdir / "supabase")
    for path in files:
        shutil.copy(path, workdir / "supabase" / "migrations")
    return workdir


def apply_stand_in(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        migrations.run_script(conn, migrations.STAND_IN)


def schema_dump(url: str) -> list[str]:
    """pg_dump --schema-only without comments, blank lines and the per-run \\restrict keys."""
    dump = subprocess.run(
        ["pg_dump", "--schema-only", "--dbname", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    skipped = ("--", "\\restrict", "\\unrestrict")
    return [line for line in dump.splitlines() if line.strip() and not line.startswith(skipped)]


def history(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select version, name, statements from supabase_migrations.schema_migrations "
            "order by version"
        ).fetchall()


def seed_history(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select path, hash from supabase_migrations.seed_files order by path"
        ).fetchall()


@pytest.fixture(scope="module")
def by_cli(database_factory) -> str:
    """A database migrated by the Supabase CLI, after the stand-in."""
    url = database_factory()
    apply_stand_in(url)
    supabase_push(url)
    return url


@pytest.fixture(scope="module")
def by_runner(database_factory) -> str:
    """A database migrated by backend/cli/migrations.py, as `make run` does."""
    url = database_factory()
    migrations.apply_database(url, **QUIET)
    return url


def test_there_are_migrations_to_apply():
    assert migrations.local_migrations(), "supabase/migrations holds no <version>_<name>.sql"


def test_both_tools_produce_the_same_schema(by_cli, by_runner):
    assert schema_dump(by_runner) == schema_dump(by_cli)


def test_both_tools_record_the_same_history(by_cli, by_runner):
    local = migrations.local_migrations()
    expected = [(m.version, m.name, m.statements()) for m in local]
    assert history(by_cli) == expected
    assert history(by_runner) == expected


def test_applying_twice_is_a_no_op(by_runner):
    before = schema_dump(by_runner), history(by_runner)
    assert migrations.apply_database(by_runner, **QUIET) == []
    assert (schema_dump(by_runner), history(by_runner)) == before


def test_the_runner_sees_what_the_cli_applied(by_cli):
    before = history(by_cli)
    assert migrations.apply_database(by_cli, **QUIET) == []
    assert history(by_cli) == before


def test_the_cli_sees_what_the_runner_applied(by_runner):
    before = history(by_runner)
    output = supabase_push(by_runner)
    assert "Applying migration" not in output
    assert history(by_runner) == before


def test_each_tool_continues_where_the_other_stopped(database_factory, by_cli, tmp_path):
    local = migrations.local_migrations()
    first_half = [m.path for m in local[: len(local) // 2]]
    runner_first = database_factory()
    migrations.apply_database(
        runner_first,
        migrations_dir=project_with(tmp_path / "a", first_half) / "supabase" / "migrations",
        **QUIET,
    )
    supabase_push(runner_first)
    cli_first = database_factory()
    apply_stand_in(cli_first)
    supabase_push(cli_first, project_with(tmp_path / "b", first_half))
    migrations.apply_database(cli_first, **QUIET)
    for url in (runner_first, cli_first):
        assert history(url) == history(by_cli)
        assert schema_dump(url) == schema_dump(by_cli)


def test_both_tools_seed_once_and_record_it_alike(database_factory):
    assert migrations.SEED.exists(), "supabase/seed.sql is missing"
    by_cli, by_runner = database_factory(), database_factory()
    apply_stand_in(by_cli)
    supabase_push(by_cli, migrations.REPO_ROOT, "--include-seed")
    migrations.apply_database(by_runner, seed=migrations.SEED, **QUIET)
    assert seed_history(by_runner) == seed_history(by_cli)
    assert seed_history(by_cli) and seed_history(by_cli)[0][0] == "supabase/seed.sql"
    with psycopg.connect(by_cli, autocommit=True) as conn:
        assert not migrations.apply_seed(conn, **QUIET)


def test_statements_are_split_as_the_cli_splits_them(database_factory, tmp_path):
    cases = sorted(CASES.glob("*.sql"))
    by_cli, by_runner = database_factory(), database_factory()
    apply_stand_in(by_cli)
    supabase_push(by_cli, project_with(tmp_path, cases))
    migrations.apply_database(by_runner, migrations_dir=CASES, **QUIET)
    assert history(by_runner) == history(by_cli)
    assert schema_dump(by_runner) == schema_dump(by_cli)
    assert [row[2] for row in history(by_cli)] == [
        split_statements(path.read_text()) for path in cases
    ]


def write_migration(directory: Path, filename: str, body: str = "select 1;") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / filename).write_text(body)


def test_a_recorded_version_without_its_file_is_refused(database_factory, tmp_path):
    url = database_factory()
    write_migration(tmp_path / "m", "20260101000000_first.sql")
    migrations.apply_database(url, migrations_dir=tmp_path / "m", **QUIET)
    write_migration(tmp_path / "other", "20260101000001_second.sql")
    with pytest.raises(migrations.MigrationError, match="20260101000000"):
        migrations.apply_database(url, migrations_dir=tmp_path / "other", **QUIET)


def test_an_unapplied_file_older_than_the_history_is_refused(database_factory, tmp_path):
    url = database_factory()
    write_migration(tmp_path / "m", "20260101000002_later.sql")
    migrations.apply_database(url, migrations_dir=tmp_path / "m", **QUIET)
    write_migration(tmp_path / "m", "20260101000001_earlier.sql")
    with pytest.raises(migrations.MigrationError, match="earlier"):
        migrations.apply_database(url, migrations_dir=tmp_path / "m", **QUIET)


def test_a_failing_migration_leaves_nothing_behind(database_factory, tmp_path):
    url = database_factory()
    write_migration(tmp_path / "m", "20260101000000_ok.sql", "create table public.kept (id int);")
    write_migration(
        tmp_path / "m",
        "20260101000001_broken.sql",
        "create table public.half (id int);\nselect no_such_function();",
    )
    with pytest.raises(migrations.MigrationError, match=r"broken\.sql, statement 1"):
        migrations.apply_database(url, migrations_dir=tmp_path / "m", **QUIET)
    assert [row[0] for row in history(url)] == ["20260101000000"]
    with psycopg.connect(url) as conn:
        assert conn.execute("select to_regclass('public.half')").fetchone()[0] is None


def test_two_sessions_apply_the_stand_in_at_once_on_a_new_server(tmp_path):
    """The suite's processes each build a database on a server where the API roles may not
    exist yet: the later one's create role waits for the earlier one's commit and must then
    find the role there, not fail as a duplicate."""
    url = embedded.start(tmp_path / "pgdata")
    try:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("create database second")
        second_url = psycopg.conninfo.make_conninfo(url, dbname="second")
        with psycopg.connect(url) as first, ThreadPoolExecutor(1) as pool:
            first.execute(migrations.STAND_IN.read_text(encoding="utf-8"))  # not committed
            with psycopg.connect(second_url, autocommit=True) as second:
                later = pool.submit(migrations.run_script, second, migrations.STAND_IN)
                wait_for_a_lock_wait(url)
                first.commit()
                later.result(timeout=30)
                roles = second.execute(
                    "select count(*) from pg_roles where rolname = any(%s)",
                    (["anon", "authenticated", "service_role", "authenticator"],),
                ).fetchone()[0]
        assert roles == 4
    finally:
        embedded.stop(tmp_path / "pgdata")


def wait_for_a_lock_wait(url: str, seconds: float = 10) -> None:
    """Until a session of the server waits for a lock. Each look is its own transaction:
    a transaction sees pg_stat_activity as it was at its first look."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
            ).fetchone()[0]
            if waiting:
                return
            time.sleep(0.05)
    pytest.fail("the second session never waited for the first one's roles")


def test_the_migrations_apply_on_the_embedded_server(tmp_path):
    """The embedded Postgres of `make run` (pgserver, PG16, no pgcrypto/pg_cron) takes them."""
    url = embedded.start(tmp_path / "pgdata")
    try:
        migrations.apply_database(url, seed=migrations.SEED, **QUIET)
        assert [row[0] for row in history(url)] == [
            m.version for m in migrations.local_migrations()
        ]
        assert migrations.apply_database(url, seed=migrations.SEED, **QUIET) == []
    finally:
        embedded.stop(tmp_path / "pgdata")
