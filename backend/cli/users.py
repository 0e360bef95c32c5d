"""velro user create | suspend | activate."""

from __future__ import annotations

import sys

import click

from backend.auth import accounts
from backend.auth.providers.base import AuthFailure
from backend.cli.operator import audit, find_user, transaction
from backend.config import ConfigError, read_setting


@click.group()
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
        email = accounts.validate_credentials(email, password, password_min_length())
    except AuthFailure as error:
        raise click.UsageError(error.description) from error
    data = {"display_name": checked_display_name(display_name)} if display_name is not None else {}
    with transaction() as cur:
        created = accounts.insert_user(
            cur, email, accounts.hash_password(password, bcrypt_cost()), data
        )
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


def bcrypt_cost() -> int:
    """The app's own cost (BCRYPT_COST), so both hash alike."""
    try:
        return read_setting("BCRYPT_COST")
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
