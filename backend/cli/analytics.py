"""velro analytics refresh."""

from __future__ import annotations

import click

from backend import analytics
from backend.cli.operator import connection


@click.group("analytics")
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
