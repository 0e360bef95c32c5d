"""Database fixtures: every test run builds its own databases from the migrations.

The server is the one at $DATABASE_URL (a URL), else postgresql://postgres@127.0.0.1:5432/postgres;
it is used only as an admin connection to create and drop this run's databases, which are
named velro_test_<pid>_... and dropped at the end of the run (leftovers of crashed runs are
dropped at the start). Postgres or Redis unreachable is a failure, never a skip.

Fixtures (all URLs are postgresql:// URLs a psycopg connection, psql or the Supabase CLI
accept):

- ``admin_url`` (session): the admin connection's URL, checked reachable.
- ``migrated_template`` (session): the *name* of a database holding the stand-in and every
  migration in supabase/migrations (no seed), applied by backend/cli/migrations.py. It accepts
  no connections; it exists to be cloned with ``create database x template <name>``.
- ``database_factory`` (session): ``database_factory(template=None) -> url`` creates a new
  database (empty, or a clone of ``template``) that lives until the end of the run. Use it
  for module-scoped databases or for cloning your own template.
- ``db_url`` (session): one migrated database shared by the whole run. Tests that write
  to it must clean up (or roll back) what they write.
- ``fresh_db_url`` (function): a migrated database of the test's own, dropped afterwards
  (a clone of the template, made with `create database ... template`).
- ``redis_url`` (session): $REDIS_URL, else redis://127.0.0.1:6379/0, checked reachable.
- ``redis_cluster`` (session): a Redis Cluster of this process's own (three primaries on
  free ports, ``tests/redis_cluster.py``), started when a test first asks for it.

`make test` runs pytest in several processes (pytest-xdist): every name above carries the
process id, so the processes never share a database.
"""

from __future__ import annotations

import itertools
import os
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from fakes.fal import reserve_queue_host
from psycopg import sql
from redis_cluster import LocalCluster

# fal_client reads its queue host when first imported: point it at this run's fake FAL
# before anything imports it
reserve_queue_host()

from backend.cli import migrations  # noqa: E402
from backend.jobs.engine import install_schema  # noqa: E402

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
RUN_PREFIX = f"velro_test_{os.getpid()}"
# bcrypt's minimum cost: a password hash takes ~1 ms instead of ~60 ms. Every app, command
# and server this run starts reads it, unless a test gives its own environment.
os.environ.setdefault("BCRYPT_COST", "4")


def with_database(url: str, name: str) -> str:
    """The same server URL, pointing at another database."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def admin_execute(admin_url: str, statement: sql.Composable) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)


def drop_database(admin_url: str, name: str) -> None:
    admin_execute(
        admin_url, sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
    )


def drop_leftovers(admin_url: str) -> None:
    """Drop test databases of earlier runs whose process is gone (a crash, a kill -9)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        names = conn.execute(
            "select datname from pg_database where datname ~ '^velro_test_[0-9]+_'"
        ).fetchall()
    for (name,) in names:
        pid = int(name.split("_")[2])
        if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            drop_database(admin_url, name)


@pytest.fixture(scope="session")
def admin_url() -> str:
    url = os.environ.get("DATABASE_URL") or DEFAULT_ADMIN_URL
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError as error:
        pytest.fail(
            f"Postgres is unreachable at {url}: {error}\n"
            "The tests need a real Postgres: start it (e.g. "
            "`pg_ctlcluster --skip-systemctl-redirect 15 main start`) or set DATABASE_URL.",
            pytrace=False,
        )
    drop_leftovers(url)
    return url


@pytest.fixture(scope="session")
def database_factory(admin_url):
    created: list[str] = []
    counter = itertools.count(1)

    def create(template: str | None = None) -> str:
        name = f"{RUN_PREFIX}_{next(counter)}"
        statement = sql.SQL("create database {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" template {}").format(sql.Identifier(template))
        admin_execute(admin_url, statement)
        created.append(name)
        return with_database(admin_url, name)

    yield create
    for name in created:
        drop_database(admin_url, name)


@pytest.fixture(scope="session")
def migrated_template(admin_url):
    name = f"{RUN_PREFIX}_template"
    admin_execute(admin_url, sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        migrations.apply_database(with_database(admin_url, name), log=lambda _message: None)
        install_schema(with_database(admin_url, name), lambda _message: None)
        # no connection may linger on a template, or `create database ... template` fails
        admin_execute(
            admin_url,
            sql.SQL("alter database {} allow_connections false").format(sql.Identifier(name)),
        )
        yield name
    finally:
        drop_database(admin_url, name)


@pytest.fixture(scope="session")
def db_url(database_factory, migrated_template) -> str:
    return database_factory(migrated_template)


@pytest.fixture
def fresh_db_url(admin_url, migrated_template):
    name = f"{RUN_PREFIX}_fresh"
    drop_database(admin_url, name)
    admin_execute(
        admin_url,
        sql.SQL("create database {} template {}").format(
            sql.Identifier(name), sql.Identifier(migrated_template)
        ),
    )
    yield with_database(admin_url, name)
    drop_database(admin_url, name)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(
            f"Redis is unreachable at {url}: {error}\n"
            "The tests need a real Redis: start it (e.g. `redis-server --daemonize yes "
            '--bind 127.0.0.1 --port 6379 --save "" --appendonly no`) or set REDIS_URL.',
            pytrace=False,
        )
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory) -> LocalCluster:
    with LocalCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


pytest_plugins = ["fixtures_app"]
