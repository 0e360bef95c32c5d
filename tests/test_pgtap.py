"""The pgTAP suite in supabase/tests, every file in one pg_prove call.

The files run on one clone of a template that holds the migrations, pgTAP (in schema
`extensions`) and the `tests` helpers of 000-setup-tests-hooks.sql, as `supabase test db`
would have them. Each file begins and rolls back, so one leaves nothing for the next. A
failure shows pg_prove's TAP output and its summary, which names every file that failed.
"""

from __future__ import annotations

import shutil
import subprocess

import psycopg
import pytest
from psycopg import sql

from backend.cli.migrations import REPO_ROOT

TESTS_DIR = REPO_ROOT / "supabase" / "tests"
SETUP = TESTS_DIR / "000-setup-tests-hooks.sql"
PGTAP_FILES = sorted(TESTS_DIR.glob("*.sql"))
SEARCH_PATH = sql.SQL('alter database {} set search_path = "$user", public, extensions')


def require(command: str) -> str:
    path = shutil.which(command)
    if path is None:
        pytest.fail(
            f"{command} is not installed. Install pgTAP and pg_prove: apt-get install -y "
            "postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl (or run `make test`, "
            "which installs them when it can)",
            pytrace=False,
        )
    return path


def database_name(url: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute("select current_database()").fetchone()[0]


def set_search_path(admin_url: str, url: str) -> None:
    """Database settings are not copied to clones: give each clone the Supabase search_path."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(SEARCH_PATH.format(sql.Identifier(database_name(url))))


@pytest.fixture(scope="module")
def pgtap_template(admin_url, database_factory, migrated_template) -> str:
    """A clone of the migrated template with pgTAP and the tests helpers, closed for cloning."""
    url = database_factory(migrated_template)
    setup = subprocess.run(
        [
            *(require("psql"), "--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1"),
            *("--dbname", url, "--file", str(SETUP)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert setup.returncode == 0, f"{SETUP.name} failed:\n{setup.stdout}{setup.stderr}"
    name = database_name(url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("alter database {} allow_connections false").format(sql.Identifier(name))
        )
    return name


def test_every_pgtap_file_rolls_back():
    """One clone serves them all only while no file leaves its changes behind: each one's
    last statement is a rollback (a word in a comment does not count)."""
    kept = [
        path.name
        for path in PGTAP_FILES
        if path.read_text().rstrip().lower().splitlines()[-1].strip() != "rollback;"
    ]
    assert kept == [], f"these pgTAP files do not roll back: {kept}"


def test_pgtap_files(admin_url, database_factory, pgtap_template):
    url = database_factory(pgtap_template)
    set_search_path(admin_url, url)
    result = subprocess.run(
        [require("pg_prove"), "--failures", "--dbname", url, *map(str, PGTAP_FILES)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"pg_prove:\n{result.stdout}{result.stderr}"
    assert f"Files={len(PGTAP_FILES)}," in result.stdout, result.stdout
