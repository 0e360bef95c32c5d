"""The measured statements, kept as .sql files in bench/queries/.

The files use PostgreSQL's own $1, $2 placeholders, so they lint and read as plain SQL;
`load` turns them into psycopg placeholders.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

QUERY_DIR = Path(__file__).resolve().parent / "queries"
POSITIONAL = re.compile(r"\$(\d+)")


@cache
def load(name: str) -> str:
    """bench/queries/<name>.sql with $n turned into %(pn)s, comments and trailing blanks dropped."""
    text = (QUERY_DIR / f"{name}.sql").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    body = "\n".join(lines).strip().rstrip(";").replace("%", "%%")
    return POSITIONAL.sub(lambda match: f"%(p{match.group(1)})s", body)


def params(*values) -> dict:
    """Positional values for a loaded query: params(a, b) fills $1 and $2."""
    return {f"p{index}": value for index, value in enumerate(values, start=1)}
