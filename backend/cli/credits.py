"""velro credits grant EMAIL AMOUNT."""

from __future__ import annotations

import click

from backend.cli.operator import find_user, transaction
from backend.db import rpc

MAX_CREDITS = 2**31 - 1  # public.grant_credits takes a Postgres integer


@click.group()
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
