"""The benchmark database: created fresh, built from the migrations, filled set-based.

It lives next to the database DATABASE_URL names (default the local server), under its own
name; each run creates it fresh, so no state carries over, and drops it at the end unless
told to keep it (`--keep`), so a million generations do not stay on the server.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from backend.cli.migrations import apply_database
from bench.progress import say, step
from bench.scale import Scale

BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "velro_bench")
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
SQL_DIR = Path(__file__).resolve().parent / "sql"


def server_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_SERVER


def bench_url(server: str) -> str:
    return make_conninfo(server, dbname=BENCH_DATABASE)


def maintenance_url(server: str) -> str:
    """Where to issue create/drop database: the server's own database, never the bench one."""
    current = conninfo_to_dict(server).get("dbname")
    return make_conninfo(
        server, dbname="postgres" if current in (None, BENCH_DATABASE) else current
    )


def recreate(server: str) -> str:
    """Drop and create the bench database; return its URL."""
    with psycopg.connect(maintenance_url(server), autocommit=True) as conn:
        conn.execute(f"drop database if exists {BENCH_DATABASE} with (force)")
        conn.execute(f"create database {BENCH_DATABASE}")
    return bench_url(server)


def drop(server: str) -> None:
    with psycopg.connect(maintenance_url(server), autocommit=True) as conn:
        conn.execute(f"drop database if exists {BENCH_DATABASE} with (force)")


def build_schema(url: str) -> None:
    """Stand-in and migrations exactly as `make db` applies them, then the bench loaders."""
    with step("applying the stand-in and the migrations"):
        apply_database(url, log=lambda line: None)
    with psycopg.connect(url, autocommit=True) as conn:
        for name in ("dataset.sql", "samples.sql"):
            conn.execute((SQL_DIR / name).read_text(encoding="utf-8"))


def call(url: str, label: str, function: str, *arguments) -> None:
    """Run one loader function in its own transaction, with a progress line."""
    with step(label), psycopg.connect(url) as conn:
        _call(conn, function, arguments)


def call_in_slices(
    url: str, label: str, function: str, total: int, *extra, slices: int = 8
) -> None:
    """Run function(first, last, *extra) over 1..total in slices, one transaction each.

    `analyze` follows the first slice: the triggers plan their queries on the statistics,
    and the statistics of a table that was empty would make them pick sequential scans that
    get slower with every row loaded. Slices run one after the other: two at once contend
    on the foreign-key locks of the parent rows they share.
    """
    size = -(-total // slices)
    with step(label), psycopg.connect(url, autocommit=True) as conn:
        for index, first in enumerate(range(1, total + 1, size)):
            _call(conn, function, (first, min(first + size - 1, total), *extra))
            if index == 0:
                conn.execute("analyze")


def _call(conn: psycopg.Connection, function: str, arguments: tuple) -> None:
    placeholders = ", ".join(["%s"] * len(arguments))
    conn.execute(f"select {function}({placeholders})", arguments)


def analyze(url: str) -> None:
    """Fresh statistics, so the triggers of the next step plan on the real table sizes."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("analyze")


def load_people_and_projects(url: str, scale: Scale) -> None:
    """Users, teams, members, then projects and their team links."""
    call(
        url,
        f"loading {scale.users:,} users (profiles and signup grants by trigger)",
        "bench.load_users",
        scale.users,
    )
    call(
        url,
        f"loading {scale.teams:,} teams with their owners; planning ~{scale.teams_per_user} "
        "memberships per user",
        "bench.load_teams",
        scale.teams,
        scale.teams_per_user,
    )
    call_in_slices(url, "loading team members", "bench.load_members", scale.users)
    call(
        url,
        f"planning {scale.projects_per_user} projects per user and their team links",
        "bench.plan_projects",
        scale.projects_per_user,
    )
    analyze(url)
    projects = scale.users * scale.projects_per_user
    call_in_slices(
        url,
        f"loading {projects:,} projects and their team links",
        "bench.load_projects",
        projects,
        slices=16,
    )
    call(url, "finding each project's writers", "bench.find_writers")
    analyze(url)


def grow_generations(url: str, first: int, last: int, share_fraction: float) -> None:
    slices = max(1, min(16, (last - first + 1) // 20_000))
    label = f"loading generations {first:,}..{last:,} with {share_fraction:.0%} shared"
    if slices == 1:
        call(url, label, "bench.load_generations", first, last, share_fraction)
    else:
        size = last - first + 1
        call_in_slices(
            url,
            label,
            "bench.load_generations_slice",
            size,
            first - 1,
            share_fraction,
            slices=slices,
        )
    vacuum_analyze(url)


def vacuum_analyze(url: str) -> None:
    with step("vacuum analyze"), psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze")


def access_drift(url: str) -> int:
    """Rows of derived access state that differ from their definition (private.check_access)."""
    with psycopg.connect(url) as conn:
        return conn.execute("select bench.access_drift()").fetchone()[0]


def check_and_count(url: str) -> dict:
    """Dataset sizes, and proof that the derived access state is exact."""
    with psycopg.connect(url) as conn:
        counts = conn.execute("select bench.counts()").fetchone()[0]
    counts["access_drift"] = access_drift(url)
    say("dataset: " + ", ".join(f"{key} {value:,}" for key, value in counts.items()))
    if counts["access_drift"]:
        raise RuntimeError(
            f"{counts['access_drift']} rows of access state differ from their definition"
        )
    return counts
