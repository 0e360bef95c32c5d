"""Apply the database: the local stand-in, the migrations, the seed.

This is the embedded path of `make run` / `make db`, the twin of `supabase db push`. It
leaves the same history behind as the Supabase CLI (2.117.0), so either tool sees what the
other applied:

- `supabase_migrations.schema_migrations (version, statements, name)`, created with the
  CLI's own statements (sql/migration_history.sql). Each file
  `supabase/migrations/<version>_<name>.sql` runs in one transaction, statement by
  statement as the CLI splits it (backend/cli/sql_split.py), and its row is inserted in that
  same transaction: version = the digits before the first `_`, name = the rest without
  `.sql`, statements = the split statements (an empty file records `{}`).
- Versions already recorded are skipped. Like the CLI, it refuses a history it cannot
  extend: a recorded version with no local file, or an unapplied local file older than the
  newest recorded version.
- The seed is recorded in `supabase_migrations.seed_files (path, hash)` with the path
  relative to the repository (`supabase/seed.sql`) and the sha256 of the file; a recorded
  seed is not run again (a changed one only gets its hash updated), as the CLI does.

The stand-in (sql/local_supabase.sql) is applied only when the target is not a Supabase
project. The rule: a database whose cluster has the role `supabase_admin` is Supabase
(hosted or `supabase start`); that role exists nowhere else. Anything without it is a
vanilla Postgres and gets the stand-in first. The stand-in is idempotent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from backend.cli.sql_split import split_statements

REPO_ROOT = Path(__file__).resolve().parents[2]
STAND_IN = REPO_ROOT / "sql" / "local_supabase.sql"
MIGRATION_HISTORY = REPO_ROOT / "sql" / "migration_history.sql"
SEED_HISTORY = REPO_ROOT / "sql" / "seed_history.sql"
MIGRATIONS_DIR = REPO_ROOT / "supabase" / "migrations"
SEED = REPO_ROOT / "supabase" / "seed.sql"

# The CLI's file name rule; files that do not match are skipped, as the CLI skips them.
MIGRATION_FILE = re.compile(r"^([0-9]+)_(.*)\.sql$")

Log = Callable[[str], None]


class MigrationError(RuntimeError):
    """A migration could not be applied; the message names the file and the statement."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    def statements(self) -> list[str]:
        return split_statements(self.path.read_text(encoding="utf-8"))


def local_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in `directory`, in file name order (the CLI's order)."""
    found = []
    for path in sorted(Path(directory).glob("*.sql"), key=lambda p: p.name):
        match = MIGRATION_FILE.match(path.name)
        if match:
            found.append(Migration(match.group(1), match.group(2), path))
    return found


def is_supabase_project(conn: psycopg.Connection) -> bool:
    """True on hosted Supabase or `supabase start`: only they have the `supabase_admin` role."""
    row = conn.execute("select exists (select from pg_roles where rolname = 'supabase_admin')")
    return bool(row.fetchone()[0])


def run_script(conn: psycopg.Connection, path: Path) -> None:
    """Run a whole .sql file in one transaction."""
    with conn.transaction():
        conn.execute(path.read_text(encoding="utf-8"))


def recorded_versions(conn: psycopg.Connection) -> list[str]:
    """Versions in the history table, oldest first; none when the table does not exist yet."""
    exists = conn.execute("select to_regclass('supabase_migrations.schema_migrations')")
    if exists.fetchone()[0] is None:
        return []
    rows = conn.execute("select version from supabase_migrations.schema_migrations order by 1")
    return [version for (version,) in rows]


def pending_migrations(local: list[Migration], recorded: list[str]) -> list[Migration]:
    """The local migrations still to apply, refusing histories the CLI would refuse too."""
    local_versions = {migration.version for migration in local}
    missing = [version for version in recorded if version not in local_versions]
    if missing:
        raise MigrationError(
            f"versions {missing} are recorded in supabase_migrations.schema_migrations but have "
            "no file in the migrations directory; restore the files (or repair the history "
            "with `supabase migration repair`) before applying"
        )
    newest = max(recorded, default="")
    pending = [migration for migration in local if migration.version not in set(recorded)]
    out_of_order = [migration.path.name for migration in pending if migration.version < newest]
    if out_of_order:
        raise MigrationError(
            f"{out_of_order} are older than the newest applied version {newest}; give them a "
            "newer timestamp (`supabase migration new`) so every database applies them in order"
        )
    return pending


def apply_migration(conn: psycopg.Connection, migration: Migration) -> None:
    """Run one file and record it, all in one transaction, as `supabase db push` does."""
    statements = migration.statements()
    conn.execute("reset all")
    with conn.transaction():
        for index, statement in enumerate(statements):
            try:
                conn.execute(statement)
            except psycopg.Error as error:
                raise MigrationError(
                    f"{migration.path.name}, statement {index}: {error}\n{statement}"
                ) from error
        conn.execute(
            "insert into supabase_migrations.schema_migrations (version, name, statements) "
            "values (%s, %s, %s)",
            (migration.version, migration.name, statements),
        )


def apply_migrations(
    conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR, log: Log = print
) -> list[str]:
    """Apply every pending migration in order; return the versions applied."""
    pending = pending_migrations(local_migrations(directory), recorded_versions(conn))
    if pending:
        run_script(conn, MIGRATION_HISTORY)
    for migration in pending:
        log(f"Applying migration {migration.path.name}...")
        apply_migration(conn, migration)
    return [migration.version for migration in pending]


def seed_key(path: Path) -> str:
    """The path the CLI records for a seed file: relative to the project root."""
    try:
        return Path(path).resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()


def apply_seed(conn: psycopg.Connection, path: Path = SEED, log: Log = print) -> bool:
    """Run the seed once, recorded like the CLI's seed history; return whether it ran."""
    path = Path(path)
    if not path.exists():
        return False
    run_script(conn, SEED_HISTORY)
    key, digest = seed_key(path), hashlib.sha256(path.read_bytes()).hexdigest()
    row = conn.execute("select hash from supabase_migrations.seed_files where path = %s", (key,))
    recorded = row.fetchone()
    with conn.transaction():
        if recorded is None:
            log(f"Seeding data from {key}...")
            for statement in split_statements(path.read_text(encoding="utf-8")):
                conn.execute(statement)
        conn.execute(
            "insert into supabase_migrations.seed_files (path, hash) values (%s, %s) "
            "on conflict (path) do update set hash = excluded.hash",
            (key, digest),
        )
    return recorded is None


def apply_database(
    url: str,
    *,
    migrations_dir: Path = MIGRATIONS_DIR,
    seed: Path | None = None,
    log: Log = print,
) -> list[str]:
    """Stand-in when the target is not Supabase, then the migrations, then the seed if given."""
    with psycopg.connect(url, autocommit=True) as conn:
        if not is_supabase_project(conn):
            log("Not a Supabase project (no supabase_admin role): applying the local stand-in")
            run_script(conn, STAND_IN)
        applied = apply_migrations(conn, migrations_dir, log)
        if seed is not None:
            apply_seed(conn, seed, log)
    return applied
