"""The measured statements, kept as .sql files in bench/queries/ with $1, $2 placeholders.

Each is prepared once per connection under its file name (`prepare list_page_rls as ...`)
and then run with `execute`, as PostgREST (prepared statements on by default) and the
app (psycopg prepares a statement after a few runs) do: the plan is cached per
connection, so a request pays for execution, not for planning.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

QUERY_DIR = Path(__file__).resolve().parent / "queries"


@cache
def load(name: str) -> str:
    """bench/queries/<name>.sql without its comments and trailing semicolon."""
    text = (QUERY_DIR / f"{name}.sql").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";")
