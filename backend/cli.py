"""The `velro` console script for operators: a click group, one subgroup per concern.

velro db url | apply [--seed] | stop | check-access
velro user create EMAIL [--password-stdin | --password P] [--display-name NAME]
velro user suspend EMAIL          velro user activate EMAIL
velro credits grant EMAIL AMOUNT [--kind grant|purchase] [--note TEXT]
velro analytics refresh

Every command works on $DATABASE_URL, else the embedded Postgres (like `velro db apply`).
Each write is one transaction that either commits whole or changes nothing, and leaves a
line in the audit log. It runs as service_role, the role the app uses for system work,
except `user create`, which writes auth.users as the URL's own role, as the local auth
provider does. Bad input exits with 2, a refusal by the database (unknown email, a user who
already exists) with 1; both print what to fix.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from backend import analytics, embedded, migrations
from backend.auth import local
from backend.auth.provider import AuthFailure
from backend.config import ConfigError, read_setting
from backend.db import rpc

MAX_CREDITS = 2**31 - 1  # public.grant_credits takes a Postgres integer
AUDIT_SOURCE = {"source": "velro cli"}


@click.group()
def main() -> None:
    """Velro backend commands."""


# the database ---------------------------------------------------------------------------


@main.group()
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


# users ----------------------------------------------------------------------------------


@main.group()
def user() -> None:
    """People: create accounts, suspend and reactivate them."""


@user.command("create")
@click.argument("email")
@click.option("--password", help="The password; visible to `ps`, so prefer --password-stdin.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line.")
@click.option("--display-name", help="Shown in the app (1 to 100 characters).")
def user_create(
    email: str, password: str | None, password_stdin: bool, display_name: str | None
) -> None:
    """Create a confirmed user who can sign in with EMAIL and the password.

    Without --password or --password-stdin, asks for the password twice.
    """
    password = read_password(password, password_stdin)
    try:
        email = local.validate_credentials(email, password, password_min_length())
    except AuthFailure as error:
        raise click.UsageError(error.description) from error
    data = {"display_name": checked_display_name(display_name)} if display_name is not None else {}
    with transaction() as cur:
        created = local.insert_user(cur, email, local.hash_password(password), data)
        if created is None:
            raise click.ClickException(f"a user with email {email} already exists")
        audit(cur, "user.created", created)
    click.echo(f"Created user {created['email']} ({created['id']}).")


@user.command("suspend")
@click.argument("email")
def user_suspend(email: str) -> None:
    """Suspend a user: from the next request on, they can only read their own profile."""
    set_status(email, "suspended", "user.suspended")


@user.command("activate")
@click.argument("email")
def user_activate(email: str) -> None:
    """Lift a suspension: the user's access comes back at once."""
    set_status(email, "active", "user.activated")


def read_password(password: str | None, from_stdin: bool) -> str:
    if password is not None and from_stdin:
        raise click.UsageError("give --password or --password-stdin, not both")
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if password is not None:
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def password_min_length() -> int:
    """The app's own rule (PASSWORD_MIN_LENGTH), so the CLI accepts what sign-up accepts."""
    try:
        return read_setting("PASSWORD_MIN_LENGTH")
    except ConfigError as error:
        raise click.ClickException(str(error)) from error


def checked_display_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise click.BadParameter("must be 1 to 100 characters", param_hint="'--display-name'")
    return name


def set_status(email: str, status: str, event: str) -> None:
    """Change a profile's status; its trigger tells every app instance to drop cached access."""
    with transaction("service_role") as cur:
        profile = find_user(cur, email)
        cur.execute(
            "update public.profiles set status = %s where id = %s and status <> %s returning id",
            (status, profile["id"], status),
        )
        if cur.fetchone() is None:
            click.echo(f"{profile['email']} is already {status}; nothing changed.")
            return
        audit(cur, event, profile)
    click.echo(f"{profile['email']} is now {status}.")


# credits --------------------------------------------------------------------------------


@main.group()
def credits() -> None:
    """Credit balances: grants and purchases made outside the app."""


# ignore_unknown_options lets "-5" reach AMOUNT (and its range check) instead of being
# taken for an option
@credits.command("grant", context_settings={"ignore_unknown_options": True})
@click.argument("email")
@click.argument("amount", type=click.IntRange(1, MAX_CREDITS))
@click.option(
    "--kind", type=click.Choice(["grant", "purchase"]), default="grant", show_default=True
)
@click.option("--note", help="Why, kept on the ledger line.")
def credits_grant(email: str, amount: int, kind: str, note: str | None) -> None:
    """Add AMOUNT credits to a user's balance, with a ledger line and an audit line."""
    with transaction("service_role") as cur:
        profile = find_user(cur, email)
        (line,) = rpc(
            cur,
            "public.grant_credits",
            p_user_id=profile["id"],
            p_amount=amount,
            p_kind=kind,
            p_note=note,
        )
    click.echo(
        f"Added {amount} credits ({kind}) to {profile['email']}: balance {line['balance_after']}."
    )


# analytics ------------------------------------------------------------------------------


@main.group("analytics")
def analytics_group() -> None:
    """The analytics views (the L3 cache)."""


@analytics_group.command("refresh")
def analytics_refresh() -> None:
    """Refresh every analytics view now, without blocking readers."""
    with connection(autocommit=True) as conn:
        refreshed = analytics.refresh_once(conn)
    if not refreshed:
        raise click.ClickException("another process is refreshing the views; try again shortly")
    click.echo("Analytics views refreshed.")


# helpers --------------------------------------------------------------------------------


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
