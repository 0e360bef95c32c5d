"""EXPLAIN ANALYZE of the measured statements, run once, exactly as they are timed.

The plans say why the numbers are what they are: which indexes serve the policy, how many
rows are read to return fifty, whether the helpers run once (InitPlan) or per row.
"""

from __future__ import annotations

import re

from bench.postgrest import Caller

COST = re.compile(r"\s*\(cost=[^)]*\)")


def analyze_plan(
    caller: Caller, role: str, claims: str, name: str, values: tuple = ()
) -> list[str]:
    """The EXPLAIN (ANALYZE, BUFFERS) lines of one prepared statement in its request transaction."""
    batch = caller.batch(role, claims, caller.statement(name, values, explain=True))
    rows, _ = caller.run(batch)
    return [row[0] for row in rows]


def outline(plan: list[str], depth: int = 6) -> list[str]:
    """The plan's node lines without estimates, up to `depth` levels, plus the timings."""
    kept = []
    for line in plan:
        stripped = line.strip()
        if stripped.startswith(("Planning Time", "Execution Time")):
            kept.append(stripped)
            continue
        is_node = stripped.startswith("->") or line is plan[0]
        indent = (len(line) - len(line.lstrip())) // 6
        if (is_node and indent <= depth) or stripped.startswith(
            ("Index Cond", "Filter", "Recheck Cond")
        ):
            kept.append(COST.sub("", line.rstrip()))
    return kept


def execution_ms(plan: list[str]) -> float | None:
    for line in plan:
        if line.strip().startswith("Execution Time"):
            return float(line.split(":")[1].split()[0])
    return None


def nested_plans(caller: Caller, batch: str) -> list[str]:
    """Plans of every statement a batch runs, functions' inner statements included.

    EXPLAIN of `select public.authorize_generation(...)` shows one Result node; the work
    is inside the function. auto_explain (a contrib module; loading it needs a superuser
    connection) logs each nested statement's plan, which arrives here as notices.
    """
    notices: list[str] = []

    def collect(diagnostic) -> None:
        notices.append(diagnostic.message_primary or "")

    conn = caller.conn
    for setting in (
        "load 'auto_explain'",
        "set auto_explain.log_min_duration = 0",
        "set auto_explain.log_analyze = on",
        "set auto_explain.log_buffers = on",
        "set auto_explain.log_nested_statements = on",
        "set client_min_messages = log",
    ):
        conn.execute(setting)
    conn.add_notice_handler(collect)
    try:
        caller.run(batch)
    finally:
        conn.remove_notice_handler(collect)
        conn.execute("reset client_min_messages")
        conn.execute("set auto_explain.log_min_duration = -1")
    return notices
