"""The Redis client for ``REDIS_URL``: one server, or a Redis Cluster.

``redis+cluster://[user:password@]host:port[,host:port...]`` names a cluster by some of its
nodes (the scheme the rate limiter's storage reads too); any other URL is one server, as
``redis.Redis.from_url`` reads it.

Two ways a cluster client differs that callers must know:

- redis-py's cluster client connects when it is built (it asks the nodes which of them
  serves which slot) and raises ``RedisClusterException``, which is not a ``RedisError``,
  when none answers. ``ERRORS`` names both; ``connect`` is what may raise them.
- Server-wide commands (PING, CONFIG GET, INFO, DBSIZE) go to one node of a cluster unless
  told otherwise, so a check must ask each primary: ``primaries`` gives a client of each.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from backend.config import REDIS_CLUSTER_SCHEME, redis_cluster_nodes

ERRORS = (redis.RedisError, RedisClusterException)

Client = redis.Redis | RedisCluster


def is_cluster(url: str) -> bool:
    return urlsplit(url).scheme == REDIS_CLUSTER_SCHEME


def connect(url: str, **options) -> Client:
    """A client for the server or cluster at url; a cluster's connects now (ERRORS)."""
    if not is_cluster(url):
        return redis.Redis.from_url(url, **options)
    parts = urlsplit(url)
    if parts.username:
        options.setdefault("username", unquote(parts.username))
    if parts.password:
        options.setdefault("password", unquote(parts.password))
    nodes = [ClusterNode(host, port) for host, port in redis_cluster_nodes(url)]
    return RedisCluster(startup_nodes=nodes, **options)


def primaries(client: Client) -> dict[str, redis.Redis]:
    """A client of each server that holds data, by name: the server itself, or each of a
    cluster's primaries as the cluster client last saw them."""
    if not isinstance(client, RedisCluster):
        return {"server": client}
    return {node.name: client.get_redis_connection(node) for node in client.get_primaries()}


def watch_restarts(client: Client, on_new_connection) -> None:
    """Call ``on_new_connection(connection)`` on every connection the client opens from now
    on, after it is set up (authenticated, its database selected) and before its first
    command; an exception there fails that command."""
    if isinstance(client, RedisCluster):
        client.user_on_connect_func = on_new_connection  # the cluster's on_connect calls it
        return

    def set_up_then_watch(connection) -> None:
        connection.on_connect()
        on_new_connection(connection)

    client.connection_pool.connection_kwargs["redis_connect_func"] = set_up_then_watch
    client.connection_pool.reset()  # connections made before have no hook: drop them
