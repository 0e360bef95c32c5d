"""The cache, the rate limiter and the health checks on a real Redis Cluster: what only a
cluster can get wrong.

- every key a cache script is given, and every key it touches inside (the read script
  reads tag versions it was not given), lies in the slot of the cache's hash tag and is
  served by the primary that owns it; the limiter's scripts likewise keep each counter's
  keys in one slot. Each node's SLOWLOG records every command it ran, a script's inner ones
  included, and CLUSTER KEYSLOT names each key's slot;
- the eviction policy is asked of every primary, not only of the one L2 lives on, and the
  L2 figures add up every primary;
- two apps count one rate limit on the cluster;
- a cluster that does not answer when the app starts stops nothing: limits count in
  memory, the cache serves from L1 and Postgres, readiness says why;
- readiness asks every primary.

The L2 paths themselves (get, set, invalidate, versions, epoch) run on the cluster in
tests/test_cache.py, and two gunicorn instances on it in tests/test_two_instances.py.
"""

from __future__ import annotations

import uuid

import pytest
from api_support import assert_error
from redis_cluster import SLOWLOG_LENGTH, LocalCluster

from backend.cache import Cache
from backend.cache.redis_client import connect
from backend.observability.health import REDIS_PROBE
from harness.servers import free_port

READY = "/api/v1/health/ready"
STATUS = "/api/v1/health/status"


class Loader:
    def __init__(self, value, tags=("user:u1",)):
        self.value, self.tags = value, tags

    def __call__(self):
        return self.value, self.tags


def trusted_cache(**kwargs) -> Cache:
    cache = Cache(**kwargs)
    cache.trust_again()
    return cache


@pytest.fixture
def cluster_client(redis_cluster):
    client = connect(redis_cluster.url)
    yield client
    client.close()


@pytest.fixture
def namespace(cluster_client):
    ns = f"velro-test-{uuid.uuid4().hex[:8]}"
    yield ns
    for key in cluster_client.scan_iter(match=f"{{{ns}}}:*"):
        cluster_client.delete(key)


def commands_naming(cluster: LocalCluster, word: str) -> list[tuple[int, list[str]]]:
    """(node index, command words) of every command a node ran that names word."""
    found = []
    for index, node in enumerate(cluster.nodes):
        for entry in node.slowlog_get(SLOWLOG_LENGTH):
            command = entry["command"]
            words = (command.decode() if isinstance(command, bytes) else command).split()
            if any(word in w for w in words):
                found.append((index, words))
    return found


def keys_of(words: list[str]) -> list[str]:
    """The keys a command names: EVALSHA's declared keys, else its first argument."""
    if words[0].upper() in ("EVALSHA", "EVAL"):
        return words[3 : 3 + int(words[2])]
    return words[1:2]


def assert_one_slot_on_its_owner(cluster: LocalCluster, commands, slot: int) -> None:
    owner = cluster.nodes.index(cluster.node_serving(slot))
    for index, words in commands:
        assert index == owner, f"{words} ran on node {index}, slot {slot} lives on {owner}"
        for key in keys_of(words):
            assert cluster.nodes[owner].cluster("keyslot", key) == slot, words


def test_every_key_a_cache_script_touches_lies_in_the_namespace_slot(
    redis_cluster, cluster_client, namespace
):
    writer = trusted_cache(redis_client=cluster_client, namespace=namespace)
    reader = trusted_cache(redis_client=cluster_client, namespace=namespace)
    tags = ("user:u1", "generation:g1", "project:p1")
    assert writer.get_or_load("k", Loader("old", tags)) == ("old", "db")  # read, store
    assert reader.get_or_load("k", Loader("unused")) == ("old", "l2")  # versions read inside
    writer.invalidate_many(["user:u1", "project:p1"])  # bump
    assert reader.get_or_load("k2", Loader("new", tags)) == ("new", "db")

    commands = commands_naming(redis_cluster, namespace)
    slot = cluster_client.keyslot("{" + namespace + "}")
    assert_one_slot_on_its_owner(redis_cluster, commands, slot)
    scripts = [words for _, words in commands if words[0].upper() == "EVALSHA"]
    assert len({words[1] for words in scripts}) == 3, "read, store and bump each ran"
    # the store's keys: the entry, the epoch, the versions' lifetime, each tag's version
    assert max(int(words[2]) for words in scripts) == 3 + len(tags), "store declares versions"
    inner_version_reads = [
        words for _, words in commands if words[0] == "GET" and ":v:generation:g1" in words[1]
    ]
    assert inner_version_reads, "the read script's own reads of tag versions were seen"


def test_l2_is_refused_while_any_primary_may_evict(redis_cluster, cluster_client, namespace):
    """L2 lives on one shard, but a slot can move: every primary must evict nothing."""
    slot = cluster_client.keyslot("{" + namespace + "}")
    other = next(n for n in redis_cluster.nodes if n is not redis_cluster.node_serving(slot))
    other.config_set("maxmemory-policy", "allkeys-lru")
    try:
        cache = trusted_cache(redis_client=cluster_client, namespace=namespace)
        assert cache.get_or_load("k", Loader("v")) == ("v", "db")
        stats = cache.stats()["l2"]
        assert (stats["maxmemory_policy"], stats["trusted"]) == ("allkeys-lru", False)
    finally:
        other.config_set("maxmemory-policy", "noeviction")

    cache = trusted_cache(redis_client=cluster_client, namespace=namespace)
    cache.get_or_load("k", Loader("v"))
    stats = cache.stats()["l2"]
    assert (stats["maxmemory_policy"], stats["trusted"]) == ("noeviction", True)
    assert stats["size"] == sum(node.dbsize() for node in redis_cluster.nodes)


def test_two_apps_count_one_rate_limit_on_the_cluster(make_app, redis_cluster, cluster_client):
    prefix = f"velro-test-{uuid.uuid4().hex[:12]}"
    settings = {
        "RATE_LIMIT_ENABLED": True,
        "REDIS_URL": redis_cluster.url,
        "REDIS_NAMESPACE": prefix,
    }
    apps = [make_app(**settings, RATE_LIMIT_PER_IP="4/minute") for _ in range(2)]
    first, second = (app.test_client() for app in apps)
    for client in (first, second, first, second):
        assert client.get("/api/v1/models").status_code == 200
    for client in (first, second):
        assert_error(client.get("/api/v1/models"), 429, "too_many_requests")

    try:
        commands = commands_naming(redis_cluster, f"/{prefix}/")
        scripts = [(i, words) for i, words in commands if words[0].upper() == "EVALSHA"]
        assert scripts, "the limiter counted on the cluster"
        for index, words in scripts:
            (slot,) = {cluster_client.keyslot(key) for key in keys_of(words)}
            assert_one_slot_on_its_owner(redis_cluster, [(index, words)], slot)
    finally:
        for key in cluster_client.scan_iter(match=f"*/{prefix}/*"):
            cluster_client.delete(key)


def test_a_cluster_down_when_the_app_starts_stops_nothing(make_app):
    nowhere = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    app = make_app(
        REDIS_URL=nowhere,
        CACHE_ENABLED=True,
        RATE_LIMIT_ENABLED=True,
        RATE_LIMIT_PER_IP="2/minute",
    )
    client = app.test_client()
    for _ in range(2):
        assert client.get("/api/v1/models").status_code == 200  # counted in memory
    assert_error(client.get("/api/v1/models"), 429, "too_many_requests")

    assert client.get(READY).status_code == 200, "Redis is every instance's: not readiness"
    redis_state = client.get(STATUS).get_json()["dependencies"]["redis"]
    assert redis_state["state"] == "failing", redis_state
    assert redis_state["detail"].startswith("no answer (RedisClusterException)"), redis_state
    cache = app.extensions["velro.cache"].stats()["l2"]
    assert (cache["enabled"], cache["available"]) == (True, False)
    assert cache["errors"] >= 1


def test_status_asks_every_primary_of_the_cluster(make_app, tmp_path):
    with LocalCluster(tmp_path) as cluster:
        client = make_app(REDIS_URL=cluster.url).test_client()
        answer = client.get(STATUS)
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["dependencies"]["redis"]["state"] == "ok"

        # a primary the probe's client would not ask by default
        probe = client.application.extensions[REDIS_PROBE]
        default = probe.get_default_node().port
        cluster.stop(next(i for i, port in enumerate(cluster.ports) if port != default))

        redis_state = client.get(STATUS).get_json()["dependencies"]["redis"]
        assert redis_state["state"] == "failing", redis_state
        assert redis_state["detail"].startswith("no answer"), redis_state
