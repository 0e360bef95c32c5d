"""The invalidation listener on a connection that goes silently stale, and under a storm.

A local TCP proxy sits between the listener and Postgres. It forwards until told to
blackhole; then it keeps both sockets open and forwards nothing, as a NAT or a load
balancer that lost the connection's state does. No error reaches the listener: only its
watchdog can notice. The cache must stop trusting itself within the listener's bound.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from urllib.parse import urlsplit

import psycopg
import pytest
from fault_support import BlackholeProxy

from backend.cache import Cache
from backend.cache.listener import CHANNEL, InvalidationListener, listen_connection_options
from backend.cache.listener import EXTENSION as LISTENER
from backend.config import ConfigError, load_settings
from backend.db import connection_options
from backend.db.connections import Database, NoCaller

BOUND_SECONDS = 1.0
# generous: the watchdog looks every bound / 4; a loaded machine may delay it more
SLACK_SECONDS = 5.0
STORM_BOUND_SECONDS = 30.0


def via_proxy(url: str, proxy: BlackholeProxy) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"
    return parts._replace(netloc=netloc).geturl()


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture
def proxy(db_url):
    parts = urlsplit(db_url)
    proxy = BlackholeProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    yield proxy
    proxy.close()


def test_a_blackholed_listener_distrusts_the_cache_within_its_bound(db_url, proxy):
    cache = Cache()
    listener = InvalidationListener(via_proxy(db_url, proxy), cache, bound_seconds=BOUND_SECONDS)
    listener.start()
    try:
        assert listener.connected.wait(10), "the listener never connected through the proxy"
        assert cache.trusted
        cache.get_or_load("k", lambda: ("v", ["team:t1"]))

        proxy.blackhole()
        assert wait_for(lambda: not cache.trusted, BOUND_SECONDS + SLACK_SECONDS), (
            "the cache kept trusting a listener that stopped answering"
        )
        assert cache.get_or_load("k", lambda: ("from db", ["team:t1"])) == ("from db", "db")
        assert wait_for(lambda: listener.stalls >= 1, SLACK_SECONDS), "the watchdog never acted"

        proxy.restore()
        assert wait_for(lambda: cache.trusted, 20), "the listener did not come back"
        # what was cached before the silence is gone: notices may have been lost
        assert cache.get_or_load("k", lambda: ("after", ["team:t1"])) == ("after", "db")
    finally:
        listener.stop()


def test_the_cache_is_untrusted_exactly_while_no_round_trip_is_recent():
    cache = Cache()
    cache.expect_heartbeats(0.05)
    cache.trust_again()
    assert cache.trusted
    assert wait_for(lambda: not cache.trusted, 5)
    cache.heartbeat()
    assert cache.trusted


def test_the_listen_connection_has_keepalives_and_timeouts():
    options = listen_connection_options(5.0)
    assert options["keepalives"] == 1
    assert options["connect_timeout"] == 5
    assert options["tcp_user_timeout"] == 5000
    assert options["keepalives_idle"] * 1 + options["keepalives_interval"] * 3 <= 10


@pytest.mark.parametrize(("statement_timeout_ms", "bound_ms"), [(3000, 3000), (0, 5000)])
def test_pooled_connections_fail_when_the_network_loses_them(
    db_url, statement_timeout_ms, bound_ms
):
    """The kernel of each pooled connection's socket gives up on a lost peer within about
    DB_STATEMENT_TIMEOUT_MS, or 5 s where statements have no timeout (keepalives while
    waiting for an answer, a bound on unanswered sends), instead of retransmitting for a
    quarter of an hour."""
    settings = load_settings(
        {"DATABASE_URL": db_url, "DB_STATEMENT_TIMEOUT_MS": statement_timeout_ms},
        environ={"APP_ENV": "test"},
    )
    database = Database(settings, NoCaller())
    database.pool.open(wait=True)
    try:
        with database.pool.connection() as conn:
            tcp = socket.socket(fileno=os.dup(conn.fileno()))
            try:
                assert tcp.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                idle = tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
                interval = tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
                probes = tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
                assert (idle + interval * probes) * 1000 <= bound_ms * 2
                assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == bound_ms
            finally:
                tcp.close()
    finally:
        database.close()


# settings checks below are about the pool and listener, not the production rules
LOCAL = {"APP_ENV": "development"}


def test_listen_and_leadership_use_the_direct_url():
    base = {"DATABASE_URL": "postgresql://app@pooler:6543/db"}
    settings = load_settings(base, environ=LOCAL)
    assert settings.direct_database_url == base["DATABASE_URL"]
    direct = load_settings(
        {**base, "DATABASE_DIRECT_URL": "postgresql://app@db:5432/db"}, environ=LOCAL
    )
    assert direct.direct_database_url == "postgresql://app@db:5432/db"


def test_a_storm_of_notices_is_applied_in_batches_while_reads_go_on(db_url):
    """10,000 notices in one commit, as deleting a project with 10,000 generations sends:
    reads in other threads are served while the listener works through them."""
    cache = Cache()
    # the listener is held mid-storm on purpose: a short bound would distrust the cache
    # while the reads run, which is the blackhole test's subject, not this one's
    listener = InvalidationListener(db_url, cache, bound_seconds=STORM_BOUND_SECONDS)
    batches = []
    paused = threading.Event()
    resume = threading.Event()
    real_invalidate = cache.invalidate_many

    def invalidate_many(tags):
        tags = list(tags)
        real_invalidate(tags)
        batches.append(len(tags))
        if len(batches) == 1:
            paused.set()  # the storm is in progress: hold it here until reads went through
            assert resume.wait(10), "reads did not get through during the storm"

    cache.invalidate_many = invalidate_many
    listener.start()
    try:
        assert listener.connected.wait(10)
        for i in range(10_000):
            cache.get_or_load(f"g{i}", lambda i=i: (i, [f"generation:{i}"]))
        cache.get_or_load("hot", lambda: ("hot", ["user:u1"]))
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "select pg_notify(%s, json_build_object('scope', 'generation', 'id', i)::text)"
                " from generate_series(0, 9999) as i",
                (CHANNEL,),
            )
        assert paused.wait(10), "the storm never reached the cache"
        served = [cache.get_or_load("hot", lambda: ("db", ["user:u1"])) for _ in range(100)]
        resume.set()
        assert served == [("hot", "l1")] * 100
        assert wait_for(lambda: sum(batches) == 10_000, 30), batches
    finally:
        resume.set()
        listener.stop()
    assert len(batches) > 1, "the storm was not split into batches"
    assert cache.stats()["l1"]["size"] == 1  # only "hot" is left
    assert json.dumps(cache.stats())  # the report stays serialisable


def test_behind_a_transaction_pooler_nothing_is_prepared_and_listen_needs_a_direct_url():
    pooled = {"DATABASE_URL": "postgresql://app@pooler:6543/db", "DATABASE_POOLER": "transaction"}
    with pytest.raises(ConfigError, match="DATABASE_DIRECT_URL"):
        load_settings(pooled, environ=LOCAL)
    settings = load_settings({**pooled, "DATABASE_DIRECT_URL": "postgresql://app@db/db"}, LOCAL)
    assert connection_options(settings)["prepare_threshold"] is None
    direct = load_settings({"DATABASE_URL": "postgresql://app@db/db"}, environ=LOCAL)
    assert "prepare_threshold" not in connection_options(direct)


def test_the_pool_follows_the_request_threads_unless_sized_explicitly():
    url = {"DATABASE_URL": "postgresql://app@db/db"}
    assert load_settings({**url, "GUNICORN_THREADS": 16}, environ=LOCAL).pool_max_size == 18
    assert load_settings(url, environ={**LOCAL, "GUNICORN_THREADS": "8"}).pool_max_size == 10
    sized = load_settings({**url, "GUNICORN_THREADS": 16, "DB_POOL_MAX_SIZE": 5}, environ=LOCAL)
    assert sized.pool_max_size == 5


def test_listen_connects_to_the_direct_url(make_app, db_url):
    direct = f"{db_url}?application_name=velro-direct"
    app = make_app(DATABASE_DIRECT_URL=direct, CACHE_ENABLED=True)
    assert app.extensions[LISTENER]._url == direct
    assert app.extensions[LISTENER].connected.wait(10), "the listener never connected"
