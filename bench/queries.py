"""The measured statements, kept as .sql files in bench/queries/ with $1, $2 placeholders.

Each is prepared once per connection under its file name (`prepare list_page_explicit as
...`) and then run with `execute`, as PostgREST (prepared statements on by default) and the
app (psycopg prepares a statement after a few runs) do: the plan is cached per connection,
so a request pays for execution, not for planning.

The two list pages through RLS are not files: they are the list route's own statements
(backend/api/generation_feeds.py) for a default first page (20 rows), so the benchmark measures what
the API sends.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from backend.api.generation_feeds import statement
from backend.api.generations import COLUMNS
from backend.http.pagination import DEFAULT_LIMIT, NEWEST_FIRST, Page

QUERY_DIR = Path(__file__).resolve().parent / "queries"
PAGE_SIZE = DEFAULT_LIMIT  # a first page as GET /api/v1/generations returns it; the
# explicit baselines (bench/queries/*_page_explicit.sql) fetch as many rows, 21
ROUTE_STATEMENTS = {"list_page_rls": "mine", "public_page_rls": "public"}


@cache
def load(name: str) -> str:
    """bench/queries/<name>.sql without its comments and trailing semicolon."""
    if name in ROUTE_STATEMENTS:
        return first_page(ROUTE_STATEMENTS[name])
    text = (QUERY_DIR / f"{name}.sql").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";")


def first_page(scope: str) -> str:
    """The list route's statement for the first page of a feed, its parameters inlined (a
    first page has no cursor and no filter: its only values are a page size and nulls)."""
    sql, params = statement(scope, COLUMNS, Page(key=NEWEST_FIRST, limit=PAGE_SIZE), {})
    return (sql % tuple("null" if value is None else int(value) for value in params)).strip()
