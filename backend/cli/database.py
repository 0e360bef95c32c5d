"""velro db url | apply [--seed] | stop | check-access | audit: where the database is, bringing
it up to date, and checking its derived state and invariants."""

from __future__ import annotations

from pathlib import Path

import click
from psycopg.rows import dict_row

from backend.cli import embedded, migrations
from backend.cli.operator import connection
from backend.jobs.engine import install_schema


@click.group()
def db() -> None:
    """The database: where it is, and bringing it up to date."""


@db.command("url")
def db_url() -> None:
    """Print $DATABASE_URL, or start the embedded Postgres and print its URL."""
    click.echo(embedded.database_url())


@db.command("apply")
@click.option(
    "--migrations-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=migrations.MIGRATIONS_DIR,
    show_default=True,
    help="Directory of <version>_<name>.sql files.",
)
@click.option("--seed/--no-seed", default=False, help="Also run supabase/seed.sql (once).")
def db_apply(migrations_dir: Path, seed: bool) -> None:
    """Bring the database at $DATABASE_URL (else the embedded one) up to date."""
    url = embedded.database_url()
    try:
        applied = migrations.apply_database(
            url,
            migrations_dir=migrations_dir,
            seed=migrations.SEED if seed else None,
            log=click.echo,
        )
    except migrations.MigrationError as error:
        raise click.ClickException(str(error)) from error
    # the job engine's tables, through its own schema tooling (new generations need it)
    install_schema(url, click.echo)
    click.echo(f"Database up to date ({len(applied)} migration(s) applied).")


@db.command("stop")
def db_stop() -> None:
    """Stop the embedded Postgres started by `velro db url` / `make run`."""
    stopped = embedded.stop()
    click.echo("Embedded Postgres stopped." if stopped else "Embedded Postgres was not running.")


@db.command("check-access")
def db_check_access() -> None:
    """Compare derived access state with its definition; exit 1 and list the rows that differ.

    Runs private.check_access() as the URL's own role: no API role may call it.
    """
    with connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from private.check_access()")
        drift = cur.fetchall()
    if not drift:
        click.echo("Access state is consistent: no drift.")
        return
    for row in drift:
        click.echo(
            f"{row['problem']}: generation {row['generation_id']} (project {row['project_id']})"
            f" holds {row['stored']}, should hold {row['expected']}",
            err=True,
        )
    raise click.ClickException(f"{len(drift)} row(s) of access state differ from their definition")


@db.command("audit")
def db_audit() -> None:
    """Check the data's invariants; exit 1 and list every violation, 0 when all hold.

    Runs private.integrity_audit() as the URL's own role: no API role may call it.
    """
    with connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from private.integrity_audit()")
        violations = cur.fetchall()
    if not violations:
        click.echo("Integrity audit: every invariant holds.")
        return
    for row in violations:
        click.echo(
            f"{row['invariant']}: {row['subject_type']} {row['subject_id']} {row['details']}",
            err=True,
        )
    raise click.ClickException(f"{len(violations)} invariant violation(s)")
