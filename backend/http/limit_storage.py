"""The rate limiter's counters on a Redis Cluster: limits' own ``RedisClusterStorage``,
built when first used.

limits reads ``redis+cluster://host:port,host:port`` and keeps each counter's keys in one
slot: a sliding window's two keys, ``LIMITS:{<key>}`` and ``LIMITS:{<key>}/-1``, share
their hash tag, so its scripts run on one shard. But redis-py's cluster client connects
when it is built, and flask-limiter builds its storage when the app is built: a cluster
that does not answer at that moment would stop the app from starting, where a single
Redis only sends the counting to memory. ``LateClusterStorage`` builds limits' storage
on first use instead, and raises while it cannot: flask-limiter then counts in memory and
asks again after 1, 2, 4 ... 32 seconds, as it does when a single Redis fails.

Its scheme, ``velro+redis+cluster``, is registered with limits when this module is
imported; ``storage_uri`` turns a ``REDIS_URL`` into what flask-limiter should be given.
"""

from __future__ import annotations

import threading

import redis
from limits.storage import RedisClusterStorage, SlidingWindowCounterSupport, Storage
from redis.exceptions import RedisClusterException

from backend.config import REDIS_CLUSTER_SCHEME, Settings

SCHEME = "velro+" + REDIS_CLUSTER_SCHEME


def storage_uri(settings: Settings) -> str:
    if not settings.REDIS_URL:
        return "memory://"
    if settings.redis_is_cluster:
        return "velro+" + settings.REDIS_URL
    return settings.REDIS_URL


class LateClusterStorage(Storage, SlidingWindowCounterSupport):
    """limits' ``RedisClusterStorage``, built by the first call that needs it."""

    STORAGE_SCHEME = SCHEME  # registered with limits by its metaclass

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._uri = uri.removeprefix("velro+")
        self._options = options
        self._storage: RedisClusterStorage | None = None
        self._building = threading.Lock()

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return (redis.RedisError, RedisClusterException)

    def cluster(self) -> RedisClusterStorage:
        """limits' storage, built now if it was not (raises while the cluster is down)."""
        if self._storage is None:
            with self._building:
                if self._storage is None:
                    self._storage = RedisClusterStorage(self._uri, **self._options)
        return self._storage

    def check(self) -> bool:
        try:
            return self.cluster().check()
        except self.base_exceptions:
            return False

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.cluster().incr(key, expiry, amount)

    def get(self, key: str) -> int:
        return self.cluster().get(key)

    def get_expiry(self, key: str) -> float:
        return self.cluster().get_expiry(key)

    def clear(self, key: str) -> None:
        self.cluster().clear(key)

    def reset(self) -> int | None:
        return self.cluster().reset()

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        return self.cluster().acquire_sliding_window_entry(key, limit, expiry, amount)

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        return self.cluster().get_sliding_window(key, expiry)

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        self.cluster().clear_sliding_window(key, expiry)
