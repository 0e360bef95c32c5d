"""The two-level cache against a real Redis, and its invalidation listener against a real
Postgres NOTIFY channel."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from backend.cache import Cache
from backend.cache import store as cache_module
from backend.cache.listener import CHANNEL, InvalidationListener
from backend.cache.redis_client import connect
from harness.servers import free_port


@pytest.fixture(params=["server", "cluster"])
def redis_client(request, redis_url):
    """A client of the shared Redis, or of this run's Redis Cluster: every L2 test runs on
    both."""
    if request.param == "cluster":
        client = connect(request.getfixturevalue("redis_cluster").url)
    else:
        client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def namespace(redis_client):
    ns = f"velro-test-{uuid.uuid4().hex[:8]}"
    yield ns
    for key in redis_client.scan_iter(match=f"{{{ns}}}:*"):
        redis_client.delete(key)


def trusted_cache(**kwargs) -> Cache:
    cache = Cache(**kwargs)
    cache.trust_again()
    return cache


class Loader:
    """Stands in for a database read and counts how often it ran."""

    def __init__(self, value, tags=("user:u1",)):
        self.value, self.tags, self.calls = value, tags, 0

    def __call__(self):
        self.calls += 1
        return self.value, self.tags


def test_second_read_is_an_l1_hit():
    cache = trusted_cache()
    load = Loader({"granted": True})
    assert cache.get_or_load("k", load) == ({"granted": True}, "db")
    assert cache.get_or_load("k", load) == ({"granted": True}, "l1")
    assert load.calls == 1
    assert cache.stats()["l1"]["hits"] == 1


def test_another_instance_reads_l2(redis_client, namespace):
    first = trusted_cache(redis_client=redis_client, namespace=namespace)
    second = trusted_cache(redis_client=redis_client, namespace=namespace)
    first.get_or_load("k", Loader([1, 2]))
    load = Loader("never used")
    assert second.get_or_load("k", load) == ([1, 2], "l2")
    assert second.get_or_load("k", load) == ([1, 2], "l1")
    assert load.calls == 0


def test_invalidating_a_tag_evicts_both_layers_everywhere(redis_client, namespace):
    writer = trusted_cache(redis_client=redis_client, namespace=namespace)
    reader = trusted_cache(redis_client=redis_client, namespace=namespace)
    writer.get_or_load("k", Loader("old", tags=("user:u1", "generation:g1")))
    writer.invalidate("generation:g1")

    load = Loader("new", tags=("user:u1", "generation:g1"))
    assert reader.get_or_load("k", load) == ("new", "db")
    assert writer.get_or_load("k", Loader("unused")) == ("new", "l2")


def test_unrelated_tags_stay_cached():
    cache = trusted_cache()
    cache.get_or_load("a", Loader("a", tags=("user:u1",)))
    cache.get_or_load("b", Loader("b", tags=("user:u2",)))
    cache.invalidate("user:u1")
    assert cache.get_or_load("b", Loader("b2"))[1] == "l1"
    assert cache.get_or_load("a", Loader("a2")) == ("a2", "db")


def test_a_notice_drops_exactly_the_entries_it_names():
    cache = trusted_cache()
    for i in range(5):
        cache.get_or_load(f"p{i}", Loader(i, tags=("project:p", f"generation:g{i}")))
    cache.get_or_load("other", Loader("o", tags=("project:q",)))
    assert cache.stats()["l1"]["tags_indexed"] == 7

    cache.invalidate("project:p")

    stats = cache.stats()["l1"]
    assert stats["size"] == 1
    assert stats["tags_indexed"] == 1, "the index kept tags of evicted entries"
    assert cache.get_or_load("other", Loader("unused"))[1] == "l1"


def test_a_load_that_raced_an_invalidation_is_not_stored(redis_client, namespace):
    cache = trusted_cache(redis_client=redis_client, namespace=namespace)
    other = trusted_cache(redis_client=redis_client, namespace=namespace)

    def load_then_change_commits():
        cache.invalidate("user:u1")  # the notice arrives while the old answer is in hand
        return "old", ["user:u1"]

    assert cache.get_or_load("k", load_then_change_commits) == ("old", "db")
    assert other.get_or_load("k", Loader("new")) == ("new", "db"), "L2 kept the raced answer"
    fresh = Loader("newer")
    assert cache.get_or_load("k", fresh) == ("new", "l2")
    assert fresh.calls == 0


def test_an_old_answer_written_to_l2_after_the_notice_is_never_served(redis_client, namespace):
    """Instance A reads the database just before a change commits; instance B hears the
    notice first; A's write of the old answer lands afterwards. The version of the tag
    is newer than A's count, so the write is refused: no clock is compared."""
    late_writer = trusted_cache(redis_client=redis_client, namespace=namespace)
    reader = trusted_cache(redis_client=redis_client, namespace=namespace)
    found, ticket = late_writer._l2_read("k")  # the miss, with the count before its load
    assert found is None
    reader.invalidate("user:u1")  # the change commits, B hears it first
    late_writer._l2_write("k", "old", ["user:u1"], None, ticket)

    assert reader.get_or_load("k", Loader("new")) == ("new", "db")


def test_an_old_answer_written_to_l2_before_the_notice_is_not_served_after_it(
    redis_client, namespace
):
    writer = trusted_cache(redis_client=redis_client, namespace=namespace)
    reader = trusted_cache(redis_client=redis_client, namespace=namespace)
    writer.get_or_load("k", Loader("old", tags=("user:u1",)))
    reader.invalidate("user:u1")  # only the reader heard it so far; the writer's L1 lags
    assert reader.get_or_load("k", Loader("new")) == ("new", "db")


def test_a_read_between_the_l1_eviction_and_the_l2_bump_is_not_kept(
    redis_client, namespace, monkeypatch
):
    """A notice evicts L1, then bumps the tag's version in Redis. A request thread that
    misses L1 in between still finds the old entry valid in L2; what it puts back in L1
    must not outlive the notice."""
    cache = trusted_cache(redis_client=redis_client, namespace=namespace)
    cache.get_or_load("k", Loader("old"))  # in L1 and L2
    bump = cache._l2_bump

    def request_in_between_then_bump(tags):
        assert cache.get_or_load("k", Loader("unused")) == ("old", "l2")  # L2 not bumped yet
        bump(tags)

    monkeypatch.setattr(cache, "_l2_bump", request_in_between_then_bump)
    cache.invalidate("user:u1")
    assert cache.get_or_load("k", Loader("new")) == ("new", "db")


def test_l2_forgets_everything_when_its_state_is_lost(redis_client, namespace):
    writer = trusted_cache(redis_client=redis_client, namespace=namespace)
    writer.get_or_load("k", Loader("old", tags=("user:u1",)))
    # e.g. a restart without persistence that kept the entry but not the count and epoch
    redis_client.delete("{" + namespace + "}:clock", "{" + namespace + "}:epoch")

    reader = trusted_cache(redis_client=redis_client, namespace=namespace)
    redis_client.delete("{" + namespace + "}:epoch")
    assert reader.get_or_load("k", Loader("new")) == ("new", "db")


def test_an_instance_that_regains_trust_invalidates_l2(redis_client, namespace):
    """It may have missed notices while its listener was down, and so may every other
    instance: the entries written before are dropped at once, without a scan."""
    first = trusted_cache(redis_client=redis_client, namespace=namespace)
    second = trusted_cache(redis_client=redis_client, namespace=namespace)
    first.get_or_load("k", Loader("old", tags=("user:u1",)))
    second.distrust()
    second.trust_again()
    assert second.get_or_load("k", Loader("new")) == ("new", "db")


def test_an_answer_loaded_across_a_listener_outage_is_kept_in_neither_layer(
    redis_client, namespace
):
    """The listener is cut and back while a load runs: a notice lost in the outage may be
    about this answer, and no count can tell, so an answer begun before trust was regained
    is served to its caller only, never stored."""
    cache = trusted_cache(redis_client=redis_client, namespace=namespace)
    other = trusted_cache(redis_client=redis_client, namespace=namespace)

    def load_across_an_outage():
        cache.distrust()  # the listener is cut while the database answers
        cache.trust_again()  # and is back before the answer is
        return "old", ["user:u1"]

    assert cache.get_or_load("k", load_across_an_outage) == ("old", "db")
    assert other.get_or_load("k", Loader("new")) == ("new", "db"), "L2 kept the answer"
    assert cache.get_or_load("k", Loader("unused")) == ("new", "l2"), "L1 kept the answer"


def test_concurrent_misses_of_one_key_load_once():
    cache = trusted_cache()
    release = threading.Event()
    calls = []

    def slow_load():
        calls.append(1)
        assert release.wait(10), "the test never released the load"
        return "v", ["user:u1"]

    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(cache.get_or_load, "k", slow_load) for _ in range(8)]
        assert wait_for(lambda: cache.stats()["l1"]["misses"] == 8), "not all threads missed"
        release.set()
        values = [answer.result(timeout=10) for answer in answers]

    assert len(calls) == 1
    assert [value for value, _ in values] == ["v"] * 8
    assert cache.stats()["coalesced"] == 7


def test_waiters_load_themselves_when_the_shared_load_raced_a_notice():
    cache = trusted_cache()
    release = threading.Event()
    loads = []

    def load():
        loads.append(1)
        if len(loads) == 1:
            assert release.wait(10)
            cache.invalidate("user:u1")  # the change commits while the first load runs
            return "old", ["user:u1"]
        return "new", ["user:u1"]

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cache.get_or_load, "k", load)
        assert wait_for(lambda: cache.stats()["l1"]["misses"] == 1)
        second = pool.submit(cache.get_or_load, "k", load)
        assert wait_for(lambda: cache.stats()["l1"]["misses"] == 2)
        release.set()
        assert first.result(timeout=10) == ("old", "db")
        assert second.result(timeout=10) == ("new", "db")
    assert cache.stats()["coalesced"] == 0


def test_a_short_lived_answer_expires_on_its_own():
    cache = trusted_cache()
    cache.get_or_load("k", lambda: ("v", ["session:s1"], 0))
    assert cache.get_or_load("k", Loader("w")) == ("w", "db")


def test_distrusted_cache_reads_the_database_and_stores_nothing():
    cache = trusted_cache()
    cache.distrust()
    load = Loader("v")
    cache.get_or_load("k", load)
    cache.get_or_load("k", load)
    assert load.calls == 2
    assert cache.stats()["l1"]["size"] == 0
    assert cache.stats()["bypassed"] == 2


def test_l1_is_bounded_and_counts_evictions():
    cache = trusted_cache(l1_size=3)
    for i in range(5):
        cache.get_or_load(f"k{i}", Loader(i))
    stats = cache.stats()["l1"]
    assert stats["size"] == 3
    assert stats["evictions"] == 2


def start_redis(port: int, directory: str = ".") -> subprocess.Popen:
    """A private redis-server; with its own directory, it loads the snapshot left there."""
    server = shutil.which("redis-server")
    assert server, "redis-server is needed on PATH for the Redis outage tests"
    options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory]
    process = subprocess.Popen([server, "--port", str(port), *options], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    pytest.fail("a private redis-server did not start")


def test_redis_down_serves_from_l1_and_database_then_l2_comes_back(monkeypatch):
    monkeypatch.setattr(cache_module, "L2_RETRY_SECONDS", 0.2)
    port = free_port()
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    cache = trusted_cache(redis_client=client)

    assert cache.get_or_load("k", Loader("v")) == ("v", "db")  # no Redis at all yet
    assert cache.get_or_load("k", Loader("v")) == ("v", "l1")
    assert cache.stats()["l2"]["errors"] >= 1

    process = start_redis(port)
    try:
        time.sleep(0.3)
        other = trusted_cache(redis_client=redis.Redis(port=port))
        cache.get_or_load("k2", Loader("w"))
        assert other.get_or_load("k2", Loader("unused")) == ("w", "l2")
    finally:
        process.kill()
        process.wait()


def test_a_redis_back_with_older_data_serves_nothing_it_held(tmp_path):
    """Redis restarts from a snapshot taken before a revocation: the revoked answer, its
    epoch and the versions before the bump all come back. Each instance sees a server it
    has not seen (a new run id) on its next connection and starts a new epoch first."""
    port = free_port()
    process = start_redis(port, str(tmp_path))
    try:
        first = redis.Redis(port=port, socket_timeout=0.5)
        second = redis.Redis(port=port, socket_timeout=0.5)
        a = trusted_cache(redis_client=first)
        b = trusted_cache(redis_client=second, l1_ttl=0.05)  # its reads reach L2
        assert a.get_or_load("k", Loader("grant")) == ("grant", "db")
        first.save()  # the snapshot a restart will load
        for instance in (a, b):  # the revocation's notice reaches both instances
            instance.invalidate("user:u1")
        assert b.get_or_load("k", Loader("denied")) == ("denied", "db")
        process.kill()
        process.wait()
        process = start_redis(port, str(tmp_path))
        assert redis.Redis(port=port).exists("{velro}:c:k"), "the revoked answer is back"
        served = []
        for _ in range(5):  # the first call may meet the dead connection
            time.sleep(0.1)
            served.append(b.get_or_load("k", Loader("denied")))
        assert ("grant", "l2") not in served
        assert {value for value, _ in served} == {"denied"}
    finally:
        process.kill()
        process.wait()


def test_a_redis_that_will_not_say_its_run_id_still_serves_l2(tmp_path):
    """An ACL that refuses INFO (common on hardened and managed Redis): each new connection
    starts a new epoch instead, and L2 works."""
    port = free_port()
    process = start_redis(port, str(tmp_path))
    try:
        admin = redis.Redis(port=port)
        admin.execute_command(
            "ACL", "SETUSER", "app", "on", ">app-password", "~*", "&*", "+@all", "-info"
        )
        admin.config_set("maxmemory-policy", "noeviction")

        def app_client():
            return redis.Redis(port=port, username="app", password="app-password")

        with pytest.raises(redis.exceptions.NoPermissionError):
            app_client().info("server")
        first = trusted_cache(redis_client=app_client(), assume_noeviction=True)
        second = trusted_cache(redis_client=app_client(), assume_noeviction=True)
        assert first.check_l2()
        assert first.get_or_load("k", Loader("v")) == ("v", "db")
        assert second.get_or_load("k", Loader("unused")) == ("v", "l2")
    finally:
        process.kill()
        process.wait()


class CuttableProxy:
    """Forwards loopback TCP to a server until ``cut()``: then every connection through it
    is closed, with whatever was in flight, and new ones are refused, as a network partition
    does; ``restore()`` listens on the same port again. The server behind it runs on: it
    comes back with the same data and the same run id (no restart announces the outage)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listening = socket.create_server(("127.0.0.1", 0))
        self.port = self._listening.getsockname()[1]
        threading.Thread(target=self._accept, args=(self._listening,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            doomed, self._sockets = [self._listening, *self._sockets], []
            self._listening = None
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked on it
            sock.close()

    def restore(self) -> None:
        listening = socket.create_server(("127.0.0.1", self.port))
        with self._lock:
            self._listening = listening
        threading.Thread(target=self._accept, args=(listening,), daemon=True).start()

    def close(self) -> None:
        if self._listening is not None:
            self.cut()

    def move(self, port: int) -> None:
        """Lead to another server on this host, as a failover moves an address: the
        connections through the proxy are closed, new ones reach the other server."""
        self.cut()
        self._target = (self._target[0], port)
        self.restore()

    def _accept(self, listening: socket.socket) -> None:
        while True:
            try:
                client, _ = listening.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(self._target)
            with self._lock:
                if self._listening is not listening:  # cut meanwhile: this one is cut too
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def read_through_moves(cache: Cache, key: str, load: Loader) -> tuple:
    """The first read after the address moved may meet a connection the move closed."""
    for _ in range(5):
        errors = cache.l2_stats.errors
        served = cache.get_or_load(key, load)
        if cache.l2_stats.errors == errors:
            return served
        time.sleep(0.05)
    return served


def test_a_failback_to_a_server_promoted_again_serves_nothing_it_missed(tmp_path, monkeypatch):
    """A is primary and B its replica. Failover: B is promoted and the address leads to it;
    an answer is stored there and reaches A. A loses its link before the revocation's bump
    lands on B (asynchronous replication), is promoted again, and the address leads back to
    it. The instance has seen A's run id before, but A's replication id is new: a new epoch,
    so the answer stored before the bump is not served."""
    monkeypatch.setattr(cache_module, "L2_RETRY_SECONDS", 0.0)
    ports = free_port(), free_port()
    directories = [tmp_path / name for name in ("a", "b")]  # no snapshot shared
    for directory in directories:
        directory.mkdir()
    processes = [start_redis(port, str(d)) for port, d in zip(ports, directories, strict=True)]
    try:
        a, b = (redis.Redis(port=port) for port in ports)
        b.replicaof("127.0.0.1", ports[0])
        proxy = CuttableProxy("127.0.0.1", ports[0])
        cache = trusted_cache(
            redis_client=redis.Redis(port=proxy.port, socket_timeout=0.5), l1_ttl=0.01
        )
        assert cache.get_or_load("warm", Loader("w")) == ("w", "db")  # A is seen

        b.replicaof("no", "one")
        a.replicaof("127.0.0.1", ports[1])
        proxy.move(ports[1])
        assert read_through_moves(cache, "k", Loader("grant")) == ("grant", "db")
        deadline = time.monotonic() + 10
        while not a.exists("{velro}:c:k"):
            assert time.monotonic() < deadline, "A never received the answer from B"
            time.sleep(0.05)

        a.replicaof("no", "one")  # the link is lost before the bump reaches A
        cache.invalidate("user:u1")
        assert a.get("{velro}:v:user:u1") is None, "the bump reached A after all"
        proxy.move(ports[0])
        served = [read_through_moves(cache, "k", Loader("denied")) for _ in range(3)]
        assert {value for value, _ in served} == {"denied"}, served
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_a_version_outlives_entries_stored_by_an_instance_with_a_longer_ttl(redis_url):
    """During a rolling deploy that shortens CACHE_L2_TTL, an old instance stores an answer
    for 300 s and a new one, configured for 1 s, bumps its tag last: the version still lives
    as long as the answer could, so the answer never looks fresh again."""
    namespace = f"velro-test-{uuid.uuid4().hex[:8]}"
    direct = redis.Redis.from_url(redis_url)
    old = trusted_cache(redis_client=redis.Redis.from_url(redis_url), namespace=namespace)
    new = trusted_cache(redis_client=redis.Redis.from_url(redis_url), namespace=namespace, l2_ttl=1)
    try:
        assert old.get_or_load("k", Loader("grant")) == ("grant", "db")
        entry_ttl = direct.ttl(f"{{{namespace}}}:c:k")
        old.invalidate("user:u1")
        new.invalidate("user:u1")  # the revocation's notice, handled last by the new one
        assert direct.ttl(f"{{{namespace}}}:v:user:u1") > entry_ttl
    finally:
        keys = list(direct.scan_iter(f"{{{namespace}}}*"))
        if keys:
            direct.delete(*keys)


def test_a_notice_that_could_not_reach_redis_leaves_no_l2_entry_usable(redis_url, monkeypatch):
    """Redis is cut off exactly when a revocation's notice arrives and comes back with the
    same data and run id (a partition, not a restart): the revoked entry is still there and
    its tag's version was never bumped, so only a new epoch, started before L2 is used
    again, keeps it from being served."""
    monkeypatch.setattr(cache_module, "L2_RETRY_SECONDS", 0.0)  # try Redis again at once
    parts = urlsplit(redis_url)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    userinfo = parts.netloc.rpartition("@")[0]
    proxied = parts._replace(netloc=f"{userinfo}@127.0.0.1:{proxy.port}".lstrip("@"))
    client = redis.Redis.from_url(proxied.geturl())
    direct = redis.Redis.from_url(redis_url)
    namespace = f"velro-test-{uuid.uuid4().hex[:8]}"
    try:
        cache = trusted_cache(redis_client=client, namespace=namespace)
        assert cache.get_or_load("k", Loader("granted")) == ("granted", "db")  # L1 and L2

        proxy.cut()
        cache.invalidate("user:u1")
        assert cache.l2_stats.errors == 1, "the bump was not the command that failed"
        proxy.restore()

        assert direct.exists(f"{{{namespace}}}:c:k"), "the revoked entry is still in Redis"
        assert direct.get(f"{{{namespace}}}:v:user:u1") is None, "the bump landed after all"
        assert cache.get_or_load("k", Loader("denied")) == ("denied", "db")
    finally:
        proxy.close()
        client.close()
        for key in direct.scan_iter(match=f"{{{namespace}}}:*"):
            direct.delete(key)
        direct.close()


def test_a_new_epoch_asked_for_while_one_is_being_started_is_not_lost(redis_url):
    """A notice whose bump fails while another thread is starting an epoch asks for one
    more: the epoch being set may already be older than the missed bump."""
    client = redis.Redis.from_url(redis_url)
    namespace = f"velro-test-{uuid.uuid4().hex[:8]}"
    cache = trusted_cache(redis_client=client, namespace=namespace)
    epochs = []
    real_set = client.set

    def set_while_a_bump_fails(key, value, *args, **kwargs):
        if not epochs:
            cache._l2_down_until = time.monotonic() + 60  # Redis unreachable for the bump
            cache.invalidate("user:u1")
            cache._l2_down_until = 0.0
        epochs.append(value)
        return real_set(key, value, *args, **kwargs)

    try:
        client.set = set_while_a_bump_fails
        cache.distrust()
        cache.trust_again()  # as a reconnected listener does: starts a new epoch
        assert len(epochs) == 1
        assert cache.get_or_load("k", Loader("v")) == ("v", "db")
        assert len(epochs) == 2, "the epoch asked for meanwhile is started before L2 is used"
    finally:
        for key in client.scan_iter(match=f"{{{namespace}}}:*"):
            client.delete(key)
        client.close()


def test_an_answer_lives_in_l2_no_longer_than_it_may(redis_client, namespace):
    """Seconds to live are whole in Redis: rounded down, so a session with half a second
    left is not kept there at all, and one with 2.5 s left keeps 2 s."""
    a = trusted_cache(redis_client=redis_client, namespace=namespace)
    b = trusted_cache(redis_client=redis_client, namespace=namespace)
    a.get_or_load("short", lambda: ("live", ["session:s1"], 0.5))
    assert b.get_or_load("short", Loader("checked again")) == ("checked again", "db")
    a.get_or_load("longer", lambda: ("live", ["session:s2"], 2.5))
    assert 0 < redis_client.ttl(f"{{{namespace}}}:c:longer") <= 2


def test_a_tag_version_outlives_every_entry_it_may_be_checked_against(redis_client, namespace):
    """Versions expire (Redis would otherwise keep one for every tag ever named), and one
    that expired while an older entry of its tag lived would make that entry look current.
    Such an entry was stored before the notice and lives l2_ttl at most; an answer loaded
    before the notice is written within MAX_L2_LOAD_SECONDS of it: the version outlives
    both. The change count and the epoch never expire: a count that restarted would let old
    entries' counts look recent again."""
    cache = trusted_cache(redis_client=redis_client, namespace=namespace, l2_ttl=30)
    cache.get_or_load("k", Loader("v"))
    cache.invalidate("user:u1")
    key = "{" + namespace + "}:"
    assert 0 < redis_client.ttl(key + "c:k") <= 30
    outlives = (30 + cache_module.MAX_L2_LOAD_SECONDS) * 1000
    assert redis_client.pttl(key + "v:user:u1") > outlives
    assert redis_client.ttl(key + "clock") == -1
    assert redis_client.ttl(key + "epoch") == -1


def test_an_answer_slower_to_load_than_a_version_is_sure_to_live_is_not_written_to_l2(
    redis_client, namespace, monkeypatch
):
    """The other half of the rule above: a version is kept MAX_L2_LOAD_SECONDS past its
    notice, so a load that took longer could meet an expired version and store an answer
    the notice revoked. The cache reads only the monotonic clock: this one is moved on."""
    now = [time.monotonic()]
    monkeypatch.setattr(cache_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    slow = trusted_cache(redis_client=redis_client, namespace=namespace)
    other = trusted_cache(redis_client=redis_client, namespace=namespace)

    def slow_load():
        now[0] += cache_module.MAX_L2_LOAD_SECONDS + 1
        return "v", ["user:u1"]

    assert slow.get_or_load("k", slow_load) == ("v", "db")
    assert other.get_or_load("k", Loader("read again")) == ("read again", "db")


def notify(url: str, scope: str, ident: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "select pg_notify(%s, %s)", (CHANNEL, json.dumps({"scope": scope, "id": ident}))
        )


def wait_for(condition, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_listener_evicts_on_notify_and_fails_closed_when_cut(db_url):
    cache = Cache()
    listener = InvalidationListener(db_url, cache, bound_seconds=1.0)
    listener.start()
    try:
        assert listener.connected.wait(5), "the listener never connected"
        assert cache.trusted
        cache.get_or_load("k", Loader("old", tags=("team:t1",)))

        notify(db_url, "team", "t1")
        assert wait_for(lambda: cache.stats()["invalidations_received"] == 1)
        assert cache.stats()["l1"]["size"] == 0

        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where application_name = 'velro-listener' and datname = current_database()"
            )
        assert wait_for(lambda: not cache.trusted), "the cache kept trusting a dead channel"
        assert wait_for(lambda: cache.trusted), "the listener did not come back"
    finally:
        listener.stop()


def test_a_rule_change_announced_by_a_migration_drops_every_answer(db_url, redis_url):
    """Answers under several tags, in L1 and in L2; a migration that changes the rules
    sends ('cache', 'all'): every one is loaded again, from this instance and from another
    that reads L2, and a notice for one tag still evicts only that tag afterwards."""
    namespace = f"velro-test-{uuid.uuid4().hex[:8]}"
    cache = trusted_cache(redis_client=redis.Redis.from_url(redis_url), namespace=namespace)
    listener = InvalidationListener(db_url, cache, bound_seconds=1.0)
    listener.start()
    try:
        assert listener.connected.wait(5), "the listener never connected"
        for key, tag in (("a", "user:u1"), ("b", "team:t1"), ("c", "generation:g1")):
            assert cache.get_or_load(key, Loader("old", tags=(tag,)))[1] == "db"

        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("select private.notify_invalidation('cache', 'all')")
        assert wait_for(lambda: cache.stats()["l1"]["size"] == 0), "L1 kept its answers"

        other = trusted_cache(redis_client=redis.Redis.from_url(redis_url), namespace=namespace)
        for key in ("a", "b", "c"):
            assert other.get_or_load(key, Loader("new")) == ("new", "db"), f"L2 kept {key}"
            assert cache.get_or_load(key, Loader("new")) == ("new", "l2")
        notify(db_url, "team", "t1")
        assert wait_for(lambda: cache.stats()["invalidations_received"] >= 1)
        assert cache.get_or_load("a", Loader("unused"))[0] == "new"
    finally:
        listener.stop()
        direct = redis.Redis.from_url(redis_url)
        keys = list(direct.scan_iter(f"{{{namespace}}}*"))
        if keys:
            direct.delete(*keys)


def policy_redis(*options: str) -> tuple[subprocess.Popen, redis.Redis]:
    port = free_port()
    server = shutil.which("redis-server")
    assert server, "redis-server is needed on PATH for the eviction-policy tests"
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *options],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    if not wait_for(lambda: _pings(client)):
        process.kill()
        pytest.fail("a private redis-server did not start")
    return process, client


def _pings(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


@pytest.mark.parametrize(
    ("options", "assume", "policy", "trusted"),
    [
        (("--maxmemory-policy", "noeviction"), False, "noeviction", True),
        (("--maxmemory-policy", "allkeys-lru"), False, "allkeys-lru", False),
        (("--maxmemory-policy", "volatile-lru"), False, "volatile-lru", False),
        (("--rename-command", "CONFIG", ""), False, None, False),
        (("--rename-command", "CONFIG", ""), True, None, True),
    ],
)
def test_l2_is_used_only_where_redis_evicts_nothing(options, assume, policy, trusted):
    """A version that Redis evicts would make a stale entry look fresh."""
    process, client = policy_redis(*options)
    try:
        writer = trusted_cache(redis_client=client, assume_noeviction=assume)
        reader = trusted_cache(redis_client=client, assume_noeviction=assume)
        writer.get_or_load("k", Loader("v"))
        stats = reader.stats()["l2"]
        assert (stats["maxmemory_policy"], stats["trusted"]) == (policy, trusted)
        assert reader.get_or_load("k", Loader("from db"))[1] == ("l2" if trusted else "db")
    finally:
        client.close()
        process.kill()
        process.wait()


def test_notices_a_load_in_progress_depends_on_are_kept_when_old_ones_are_pruned(monkeypatch):
    monkeypatch.setattr(cache_module, "PRUNE_CHANGED_AT", 10)
    cache = trusted_cache()

    def load_during_a_storm():
        cache.invalidate("user:u1")  # the change this answer predates
        cache.invalidate_many(f"generation:g{i}" for i in range(50))  # enough to prune
        return "old", ["user:u1"]

    assert cache.get_or_load("k", load_during_a_storm) == ("old", "db")
    assert cache.get_or_load("k", Loader("new")) == ("new", "db")


def test_no_wall_clock_is_read(redis_client, namespace, monkeypatch):
    """Hosts' clocks may disagree: nothing in the cache may depend on them. The cache
    module sees a time module with the monotonic clock only (for its TTLs and bounds)."""
    monkeypatch.setattr(cache_module, "time", SimpleNamespace(monotonic=time.monotonic))
    writer = trusted_cache(redis_client=redis_client, namespace=namespace)
    reader = trusted_cache(redis_client=redis_client, namespace=namespace)
    writer.get_or_load("k", Loader("old", tags=("user:u1",)))
    assert reader.get_or_load("k", Loader("unused")) == ("old", "l2")
    writer.invalidate("user:u1")  # the notice, as one instance hears it first
    third = trusted_cache(redis_client=redis_client, namespace=namespace)
    assert third.get_or_load("k", Loader("new")) == ("new", "db")
