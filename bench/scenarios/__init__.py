"""One module per scenario. Each measures a subject and its baseline in the same run and
returns summaries, ratios and checks as plain data (see bench/report.py for the table)."""

SQL_SCENARIOS = ("authorize", "list_page")
