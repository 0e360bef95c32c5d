"""The `velro` command for operators, one module per subcommand group, and the dev tooling
that is not the running service (``migrations``, ``sql_split``, ``embedded``).

velro db url | apply [--seed] | stop
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

May import: config, db, auth.accounts, analytics; never the web app (``backend.app``,
``backend.http``, ``backend.api``), so that an operator's command starts fast and works
where the app's secrets are not set.
"""

from __future__ import annotations

import click

from backend.cli import analytics, credits, database, users


@click.group()
def main() -> None:
    """Velro backend commands."""


main.add_command(database.db)
main.add_command(users.user)
main.add_command(credits.credits)
main.add_command(analytics.analytics_group)
