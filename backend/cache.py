"""The read cache: L1 in this process (cachetools), L2 in Redis shared by every instance.

Hot reads go L1 -> L2 -> database through ``Cache.get_or_load``. Every entry carries tags
naming what its answer depends on (``user:<id>``, ``generation:<id>``, ``project:<id>``,
``team:<id>``, ``session:<id>``, ``models:catalog``); ``invalidate(tag)`` is called by the
NOTIFY listener (``backend.invalidation``) on every instance when such a thing changes.

Staleness is ruled out with tombstones rather than by deleting keys: invalidating a tag
records *when* it was invalidated, locally and in Redis, and an entry is only served when
it was loaded after every one of its tags was last invalidated. So an instance that read
the database just before a change commits cannot plant the old answer afterwards, in L1
or in L2, whichever order the writes and the notifications arrive in.

When the listener is disconnected the cache is not trusted: every read goes to the
database and nothing is stored (fail closed). When Redis fails, L2 is skipped for
``L2_RETRY_SECONDS`` and then tried again; requests never fail because of it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from cachetools import TTLCache
from flask import Flask, current_app

from backend.invalidation import InvalidationListener

log = logging.getLogger(__name__)

EXTENSION = "velro.cache"
LISTENER = "velro.invalidation"

# entries loaded this close before an invalidation are treated as stale too: it absorbs
# clock skew between instances, which stamp loads and tombstones with their own clocks
# (the same clock always orders load < commit <= tombstone)
SKEW_SECONDS = 0.1
L2_RETRY_SECONDS = 5.0

# Served only if no tag of the entry was invalidated at or after its load time.
_L2_GET = """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local entry = cjson.decode(raw)
for _, tag in ipairs(entry.t) do
    local invalidated = redis.call('GET', ARGV[1] .. tag)
    if invalidated and tonumber(invalidated) >= entry.at - tonumber(ARGV[2]) then
        return false
    end
end
return raw
"""


class _CountingTTLCache(TTLCache):
    """A TTLCache that counts what it drops on its own (LRU evictions and expiries)."""

    evicted = 0

    def popitem(self):
        self.evicted += 1
        return super().popitem()

    def expire(self, time=None):
        expired = super().expire(time)
        self.evicted += len(expired)
        return expired


class LayerStats:
    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.errors = 0

    def as_dict(self) -> dict[str, Any]:
        total = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / total, 4) if total else None,
            "errors": self.errors,
        }


class Cache:
    """Two-level cache with tag invalidation; thread-safe; one per app instance."""

    def __init__(
        self,
        *,
        l1_size: int = 10_000,
        l1_ttl: float = 300.0,
        l2_ttl: int = 300,
        redis_client: redis.Redis | None = None,
        namespace: str = "velro",
    ) -> None:
        self._l1 = _CountingTTLCache(maxsize=l1_size, ttl=l1_ttl)
        self._lock = threading.Lock()
        self._tombstones: dict[str, float] = {}
        self._tombstone_ttl = max(l1_ttl, l2_ttl) + SKEW_SECONDS
        self._redis = redis_client
        self._l2_ttl = l2_ttl
        self._l2_down_until = 0.0
        self._l2_missed_invalidations = False
        self._ns = namespace
        self._l2_get = redis_client.register_script(_L2_GET) if redis_client else None
        self.trusted = False
        self._trusted_since = float("inf")
        self.l1_stats = LayerStats()
        self.l2_stats = LayerStats()
        self.invalidations_received = 0
        self.bypassed = 0

    # reading ---------------------------------------------------------------------------

    def get_or_load(
        self, key: str, load: Callable[[], tuple[Any, Iterable[str]]]
    ) -> tuple[Any, str]:
        """The value for key and where it came from: "l1", "l2" or "db".

        ``load`` reads the database and returns ``(value, tags)``; its answer is stored
        only while the cache is trusted and none of the tags was invalidated meanwhile.
        """
        if not self.trusted:
            self.bypassed += 1
            value, _ = load()
            return value, "db"
        found, value = self._l1_get(key)
        if found:
            return value, "l1"
        entry = self._l2_read(key)
        if entry is not None:
            self._l1_put(key, entry["v"], entry["t"], entry["at"])
            return entry["v"], "l2"
        loaded_at = time.time()
        value, tags = load()
        tags = list(tags)
        # an answer loaded before the channel last came back may have missed a notice
        if loaded_at >= self._trusted_since and self._l1_put(key, value, tags, loaded_at):
            self._l2_write(key, value, tags, loaded_at)
        return value, "db"

    def _l1_get(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            try:
                # not .get(): TTLCache raises KeyError when the entry expires between the
                # membership test and the read that .get() makes
                entry = self._l1[key]
            except KeyError:
                entry = None
        if entry is None:
            self.l1_stats.misses += 1
            return False, None
        self.l1_stats.hits += 1
        return True, entry[0]

    def _l1_put(self, key: str, value: Any, tags: list[str], loaded_at: float) -> bool:
        """Store an answer unless it may be stale; whether it was stored."""
        with self._lock:
            if not self._is_fresh(tags, loaded_at):
                return False
            self._l1[key] = (value, frozenset(tags))
            return True

    def _is_fresh(self, tags: Iterable[str], loaded_at: float) -> bool:
        if not self.trusted:
            return False  # the channel dropped meanwhile
        return all(
            self._tombstones.get(tag, float("-inf")) < loaded_at - SKEW_SECONDS for tag in tags
        )

    # L2 --------------------------------------------------------------------------------

    def _l2_available(self) -> bool:
        return self._redis is not None and time.monotonic() >= self._l2_down_until

    def _l2_failed(self, error: Exception) -> None:
        self.l2_stats.errors += 1
        self._l2_down_until = time.monotonic() + L2_RETRY_SECONDS
        log.warning("redis unavailable, serving from L1 and the database: %s", error)

    def _l2_read(self, key: str) -> dict | None:
        if not self._l2_available():
            return None
        try:
            self._l2_recover_if_needed()
            raw = self._l2_get(keys=[self._key(key)], args=[self._tomb_prefix(), SKEW_SECONDS])
        except redis.RedisError as error:
            self._l2_failed(error)
            return None
        if raw is None:
            self.l2_stats.misses += 1
            return None
        self.l2_stats.hits += 1
        return json.loads(raw)

    def _l2_write(self, key: str, value: Any, tags: list[str], loaded_at: float) -> None:
        if not self._l2_available():
            return
        entry = json.dumps({"v": value, "t": tags, "at": loaded_at}, separators=(",", ":"))
        try:
            self._redis.set(self._key(key), entry, ex=self._l2_ttl)
        except redis.RedisError as error:
            self._l2_failed(error)

    def _l2_recover_if_needed(self) -> None:
        # invalidations that could not reach Redis may have left stale entries there
        if self._l2_missed_invalidations:
            self._l2_flush()
            self._l2_missed_invalidations = False

    def _l2_flush(self) -> None:
        # in batches: one round trip per key would keep a large cache distrusted for seconds
        batch = []
        for name in self._redis.scan_iter(match=f"{self._ns}:c:*", count=1000):
            batch.append(name)
            if len(batch) == 1000:
                self._redis.unlink(*batch)
                batch.clear()
        if batch:
            self._redis.unlink(*batch)

    def _key(self, key: str) -> str:
        return f"{self._ns}:c:{key}"

    def _tomb_prefix(self) -> str:
        return f"{self._ns}:inv:"

    # invalidation ----------------------------------------------------------------------

    def invalidate(self, tag: str) -> None:
        """Forget every answer that depends on tag, here and in Redis."""
        now = time.time()
        self.invalidations_received += 1
        with self._lock:
            self._tombstones[tag] = now
            self._l1_drop_tagged(tag)
            self._prune_tombstones(now)
        if self._redis is None:
            return
        if not self._l2_available():
            # no waiting on a Redis known to be down: the listener must keep up
            self._l2_missed_invalidations = True
            return
        try:
            self._redis.set(self._tomb_prefix() + tag, repr(now), ex=int(self._tombstone_ttl) + 1)
        except redis.RedisError as error:
            self._l2_missed_invalidations = True
            self._l2_failed(error)

    def _l1_drop_tagged(self, tag: str) -> None:
        for key in list(self._l1.keys()):
            try:
                if tag in self._l1[key][1]:
                    del self._l1[key]
            except KeyError:
                pass  # expired since the snapshot (TTLCache raises then): gone either way

    def _prune_tombstones(self, now: float) -> None:
        if len(self._tombstones) < 10_000:
            return
        horizon = now - self._tombstone_ttl
        for tag in [t for t, at in self._tombstones.items() if at < horizon]:
            del self._tombstones[tag]

    def distrust(self) -> None:
        """The invalidation channel is down: serve nothing from the cache until it is back."""
        self.trusted = False

    def trust_again(self) -> None:
        """The channel is back: drop what may have missed an invalidation, then trust."""
        with self._lock:
            self._trusted_since = time.time()
            self._l1.clear()
        if self._l2_available():
            try:
                self._l2_flush()
            except redis.RedisError as error:
                self._l2_missed_invalidations = True
                self._l2_failed(error)
        self.trusted = True

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()

    # reporting -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            size, evicted = len(self._l1), self._l1.evicted
        return {
            "trusted": self.trusted,
            "invalidations_received": self.invalidations_received,
            "bypassed": self.bypassed,
            "l1": {
                **self.l1_stats.as_dict(),
                "size": size,
                "max_size": self._l1.maxsize,
                "evictions": evicted,
            },
            "l2": {
                **self.l2_stats.as_dict(),
                **self._l2_server_stats(),
                "enabled": self._redis is not None,
                "available": self._l2_available(),
            },
        }

    def _l2_server_stats(self) -> dict[str, int | None]:
        """Redis's own figures: keys in its database (entries, tombstones and anything else
        sharing it) and keys it evicted under its memory limit; None when unknown."""
        if not self._l2_available():
            return {"size": None, "evictions": None}
        try:
            return {
                "size": self._redis.dbsize(),
                "evictions": self._redis.info("stats")["evicted_keys"],
            }
        except redis.RedisError as error:
            self._l2_failed(error)
            return {"size": None, "evictions": None}


def init_app(app: Flask) -> None:
    """One cache per process, trusted once its invalidation listener is connected."""
    settings = app.config["SETTINGS"]
    client = None
    if settings.REDIS_URL:
        client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            health_check_interval=30,
        )
    cache = Cache(
        l1_size=settings.CACHE_L1_SIZE,
        l1_ttl=settings.CACHE_L1_TTL,
        l2_ttl=settings.CACHE_L2_TTL,
        redis_client=client,
    )
    app.extensions[EXTENSION] = cache
    if settings.CACHE_ENABLED:
        listener = InvalidationListener(settings.DATABASE_URL, cache)
        listener.start()
        app.extensions[LISTENER] = listener


def close(app: Flask) -> None:
    listener = app.extensions.get(LISTENER)
    if listener is not None:
        listener.stop()
    app.extensions[EXTENSION].close()


def cache() -> Cache:
    return current_app.extensions[EXTENSION]
