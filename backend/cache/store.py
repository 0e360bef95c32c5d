"""The read cache: L1 in this process, L2 in Redis shared by every instance.

Hot reads go L1 -> L2 -> database through ``Cache.get_or_load``. The loader returns the
answer with the tags it depends on (``user:<id>``, ``generation:<id>``, ``project:<id>``,
``session:<id>``, ...), which the database computes with the answer; the NOTIFY listener
(``backend.cache.listener``) calls ``invalidate_many(tags)`` on every instance when those
rows change.

Staleness is ruled out by counting changes, not by reading clocks:

- L1: a local change counter is bumped by every notice, and each tag remembers the count at
  its last notice. A load notes the count before it starts; its answer is stored only if
  none of its tags changed since. A tag -> keys index drops exactly the entries a notice
  names, so a notice costs O(entries tagged).
- L2: one Redis counter (``{ns}:clock``) is the shared change count. A notice increments
  it and sets each named tag's version (``{ns}:v:<tag>``) to the new count. A miss reads
  the count before loading (the same script that found no entry); the answer is stored,
  and later served, only while no tag's version is newer than that count. An answer read
  before a change committed therefore loses, whatever order the load, the store and the
  notices take on whichever instances: the notice comes after the commit, the count was
  read before the load. An epoch id (``{ns}:epoch``) changes whenever L2 could have missed
  a notice (an instance's listener reconnected, Redis lost its data or was unreachable
  during a notice) and invalidates every entry at once. A Redis that comes back with older
  data (restarted from a snapshot, or a failover to a replica that lagged) still holds its
  epoch, entries and the versions before the lost bumps, all consistent with each other: so
  every new connection asks who the server is, its run id (new at every start) and its
  replication id (new at every promotion), and one this instance has not seen yet (a
  restart, another server, or a failback to a server promoted again) gets a new epoch
  before the connection's first command.
- A version lives as long as any entry stored against it could: each store raises a
  shared lifetime (``{ns}:version_ttl``) to its entry's, and each bump gives versions that
  lifetime at least. Instances configured with different ``CACHE_L2_TTL`` (a rolling
  deploy that shortens it) cannot let a version expire under an entry that outlives it.

A version that Redis evicts would make a stale entry look fresh, so L2 is used only when
the server's ``maxmemory-policy`` is ``noeviction`` (checked at start and every minute;
``CACHE_L2_ASSUME_NOEVICTION`` vouches for it where ``CONFIG GET`` is refused).

On Redis Cluster (``backend.cache.redis_client``) every cache key carries the hash tag
``{<namespace>}``, so an entry, the counter, the epoch and every tag version share one
slot, and so one shard: each script runs where all its keys are, and nothing ever needs a
scan or a flush across shards (the epoch drops every entry at once). The store and bump
scripts declare every key they touch; the read script learns an entry's tags only from
the entry, so it reads their versions by name, which Redis allows for keys of the slot the
script runs in. The eviction policy is asked of every primary, since a slot can move.

Concurrent misses of one key in a process load once (single flight). While the listener
is down, or has completed no round trip within its bound, the cache is not trusted: every
read goes to the database and nothing is stored (fail closed). When Redis fails, L2 is
skipped for ``L2_RETRY_SECONDS`` and tried again; requests never fail because of it.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Flask, current_app
from prometheus_client import Counter as MetricCounter
from redis.utils import str_if_bytes

from backend.cache import denials
from backend.cache.redis_client import ERRORS, Client, connect, primaries, watch_restarts

log = logging.getLogger(__name__)

EXTENSION = "velro.cache"

# Prometheus's view of every process's cache (the stats below are this process's only)
LOOKUPS = MetricCounter(
    "velro_cache_lookups", "Cache lookups by layer (l1, l2) and result (hit, miss).",
    ["layer", "result"],
)  # fmt: skip
L1_HITS, L1_MISSES = LOOKUPS.labels("l1", "hit"), LOOKUPS.labels("l1", "miss")
L2_HITS, L2_MISSES = LOOKUPS.labels("l2", "hit"), LOOKUPS.labels("l2", "miss")
INVALIDATIONS = MetricCounter(
    "velro_cache_invalidations", "Tags invalidated (the database's notifications, mostly)."
)

L2_RETRY_SECONDS = 5.0
# lines of INFO: the server's run id (new at every start), its replication id (new when it
# is promoted, and a replica's is its primary's)
SERVER_IDENTITY = re.compile(r"^(run_id|master_replid):(\w+)", re.MULTILINE)
# a cluster's client leaves health_check_interval out (redis-py keeps only what it supports)
REDIS_OPTIONS = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, "health_check_interval": 30}
POLICY_RECHECK_SECONDS = 60.0
SAFE_EVICTION_POLICIES = ("noeviction",)
# a load slower than this is not written to L2: a tag version outlives every entry that
# could still be stored against it by this margin (see _version_ttl)
MAX_L2_LOAD_SECONDS = 60.0
NOTICES_PER_LOCK = 256  # a notice storm releases the lock between batches of this size
PRUNE_CHANGED_AT = 10_000

# KEYS: entry, clock, epoch. ARGV: tag version prefix, an epoch id for a store that lost
# its state. Returns {clock, epoch} on a miss, {clock, epoch, entry, ms to live} on a hit.
_L2_READ = """
local clock = tonumber(redis.call('GET', KEYS[2]))
local epoch = redis.call('GET', KEYS[3])
if not clock or not epoch then
    epoch = ARGV[2]
    redis.call('SET', KEYS[3], epoch)
    clock = redis.call('INCR', KEYS[2])
    return {clock, epoch}
end
local raw = redis.call('GET', KEYS[1])
if not raw then return {clock, epoch} end
local entry = cjson.decode(raw)
if entry.e ~= epoch or entry.at > clock then return {clock, epoch} end
for _, tag in ipairs(entry.t) do
    local changed = tonumber(redis.call('GET', ARGV[1] .. tag))
    if changed and changed > entry.at then return {clock, epoch} end
end
return {clock, epoch, raw, redis.call('PTTL', KEYS[1])}
"""

# KEYS: entry, epoch, version lifetime, the version of each tag. ARGV: entry, seconds to
# live, epoch, count, the seconds a version must live to outlive this entry.
_L2_STORE = """
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
local at = tonumber(ARGV[4])
for i = 4, #KEYS do
    local changed = tonumber(redis.call('GET', KEYS[i]))
    if changed and changed > at then return 0 end
end
if (tonumber(redis.call('GET', KEYS[3])) or 0) < tonumber(ARGV[5]) then
    redis.call('SET', KEYS[3], ARGV[5])
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# KEYS: clock, version lifetime, the version of each tag. ARGV: this instance's seconds a
# version lives; the longest any instance's stores asked for wins.
_L2_BUMP = """
local clock = redis.call('INCR', KEYS[1])
local ttl = math.max(tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[2])) or 0)
for i = 3, #KEYS do
    redis.call('SET', KEYS[i], clock, 'EX', ttl)
end
return clock
"""


@dataclass(slots=True)
class _Entry:
    value: Any
    tags: frozenset[str]
    expires: float  # time.monotonic() deadline


@dataclass
class _Flight:
    """A load in progress; concurrent misses of the same key wait for it."""

    started: int  # the local change count when it began
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    layer: str = "db"
    fresh: bool = False  # stored: no tag of its answer changed while it loaded


@dataclass(frozen=True)
class _Ticket:
    """The L2 change count and epoch read before a load: what its answer is valid as of."""

    clock: int
    epoch: str
    began: float


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
        redis_client: Client | None = None,
        redis_connect: Callable[[], Client] | None = None,
        namespace: str = "velro",
        assume_noeviction: bool = False,
    ) -> None:
        """``redis_client`` is a client to use; ``redis_connect`` builds one when L2 is
        first used, and again after a failed attempt (a cluster's client connects when
        built, and a Redis down at start must not stop the app)."""
        self._lock = threading.Lock()
        self._l1: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._tagged: dict[str, set[str]] = {}  # tag -> L1 keys whose answer depends on it
        self._l1_size = l1_size
        self._l1_ttl = l1_ttl
        self._l1_evicted = 0
        self._changes = 0  # local change count: one per batch of notices
        self._changed: dict[str, int] = {}  # tag -> change count at its last notice
        self._prune_above = PRUNE_CHANGED_AT
        self._flights: dict[str, _Flight] = {}
        self._loading: Counter[int] = Counter()  # change count at the start of each load
        self._trusted = False
        self._trusted_from = 0
        self._alive_until = math.inf
        self._liveness_bound: float | None = None
        self._last_round_trip = math.nan

        self._redis = redis_client
        self._connect = redis_connect
        self._connecting = threading.Lock()
        self._scripts: dict[str, Any] = {}  # registered with the client when L2 is first used
        self._l2_ttl = l2_ttl
        self._l2_down_until = 0.0
        # a new epoch is owed while more were asked for than started: a count, not a flag, so
        # one asked for while another is being started is not lost
        self._l2_epochs_asked = 0
        self._l2_epochs_started = 0
        self._servers_seen: set[str] = set()  # identities of the Redis servers connected to
        self._assume_noeviction = assume_noeviction
        self._policy: str | None = None
        self._policy_checked_at = -math.inf
        self._l2_trusted = False
        self._namespace = namespace
        base = "{" + namespace + "}"
        self._keys = {
            "entry": f"{base}:c:",
            "clock": f"{base}:clock",
            "epoch": f"{base}:epoch",
            "version_ttl": f"{base}:version_ttl",
            "version": f"{base}:v:",
        }
        self.l1_stats = LayerStats()
        self.l2_stats = LayerStats()
        self.invalidations_received = 0
        self.bypassed = 0
        self.coalesced = 0

    # trust -----------------------------------------------------------------------------

    @property
    def trusted(self) -> bool:
        """The listener is connected and completed a round trip within its bound."""
        return self._trusted and time.monotonic() < self._alive_until

    def expect_heartbeats(self, bound_seconds: float) -> None:
        """Distrust the cache whenever ``heartbeat`` has not been called for this long."""
        self._liveness_bound = bound_seconds
        self.heartbeat()

    def heartbeat(self) -> None:
        """The invalidation channel just completed a round trip: notices are flowing."""
        now = time.monotonic()
        self._last_round_trip = now
        if self._liveness_bound is not None:
            self._alive_until = now + self._liveness_bound

    def distrust(self) -> None:
        """The invalidation channel is down: serve nothing from the cache until it is back."""
        self._trusted = False

    def trust_again(self) -> None:
        """The channel is back: drop what may have missed a notice, then trust."""
        self.forget_everything()
        self.heartbeat()
        self._trusted = True

    def forget_everything(self) -> None:
        """Drop every answer, in L1 and in L2 (a new epoch), and keep no load in flight:
        whatever decided them may have changed (a notice was missed, the rules changed)."""
        with self._lock:
            self._changes += 1
            self._trusted_from = self._changes
            self._l1.clear()
            self._tagged.clear()
        self._l2_epochs_asked += 1
        if self._l2_usable():
            self._l2_start_epoch_if_needed()

    def check_l2(self) -> bool:
        """Whether L2 can be used now (Redis reachable, its eviction policy safe)."""
        return self._l2_configured and self._l2_usable()

    @property
    def _l2_configured(self) -> bool:
        return self._redis is not None or self._connect is not None

    # reading ---------------------------------------------------------------------------

    def get_or_load(self, key: str, load: Callable[[], tuple]) -> tuple[Any, str]:
        """The value for key and where it came from: "l1", "l2" or "db".

        ``load`` reads the database and returns ``(value, tags)`` or
        ``(value, tags, seconds_to_live)``; its answer is stored only while the cache is
        trusted and none of the tags was invalidated meanwhile.
        """
        if not self.trusted:
            self.bypassed += 1
            return load()[0], "db"
        now = time.monotonic()
        with self._lock:
            entry = self._l1_lookup(key, now)
            flight = leader = None
            if entry is None:
                flight = self._flights.get(key)
                if flight is None:
                    flight = leader = self._flights[key] = _Flight(started=self._changes)
                    self._loading[flight.started] += 1
        if entry is not None:
            self.l1_stats.hits += 1
            L1_HITS.inc()
            return entry.value, "l1"
        self.l1_stats.misses += 1
        L1_MISSES.inc()
        if leader is None:
            return self._follow(flight, key, load)
        try:
            flight.value, flight.layer, flight.fresh = self._fill(key, load, flight.started)
            return flight.value, flight.layer
        finally:
            with self._lock:
                del self._flights[key]
                self._done_loading(flight.started)
            flight.done.set()

    def _follow(self, flight: _Flight, key: str, load: Callable[[], tuple]) -> tuple[Any, str]:
        """Wait for another thread's load of the same key and share its answer."""
        flight.done.wait()
        if flight.fresh:
            self.coalesced += 1
            return flight.value, flight.layer
        # it failed, or a notice overtook it: that answer may predate this request's start
        with self._lock:
            started = self._changes
            self._loading[started] += 1
        try:
            value, layer, _ = self._fill(key, load, started)
        finally:
            with self._lock:
                self._done_loading(started)
        return value, layer

    def _done_loading(self, started: int) -> None:
        self._loading[started] -= 1
        if not self._loading[started]:
            del self._loading[started]

    def _fill(self, key: str, load: Callable[[], tuple], started: int) -> tuple[Any, str, bool]:
        ticket = None
        if self._l2_usable():
            found, ticket = self._l2_read(key)
            if found is not None:
                value, tags, seconds = found
                return value, "l2", self._l1_store(key, value, tags, seconds, started)
        loading = time.monotonic()
        value, tags, *rest = load()
        tags = list(tags)
        seconds = rest[0] if rest else None
        if seconds is not None:  # its seconds to live count from when the database read it
            seconds -= time.monotonic() - loading
        fresh = self._l1_store(key, value, tags, seconds, started)
        if fresh and ticket is not None:
            self._l2_write(key, value, tags, seconds, ticket)
        return value, "db", fresh

    # L1 --------------------------------------------------------------------------------

    def _l1_lookup(self, key: str, now: float) -> _Entry | None:
        entry = self._l1.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            self._l1_remove(key)
            self._l1_evicted += 1
            return None
        self._l1.move_to_end(key)
        return entry

    def _l1_store(
        self, key: str, value: Any, tags: list[str], seconds: float | None, started: int
    ) -> bool:
        """Store an answer unless a notice may have overtaken it; whether it was stored."""
        lifetime = self._l1_ttl if seconds is None else min(self._l1_ttl, seconds)
        with self._lock:
            if not self.trusted or started < self._trusted_from:
                return False
            if any(self._changed.get(tag, -1) > started for tag in tags):
                return False
            if lifetime <= 0:
                return True  # fresh, but already at the end of its life
            if key in self._l1:
                self._l1_remove(key)
            self._l1[key] = _Entry(value, frozenset(tags), time.monotonic() + lifetime)
            for tag in tags:
                self._tagged.setdefault(tag, set()).add(key)
            while len(self._l1) > self._l1_size:
                self._l1_remove(next(iter(self._l1)))
                self._l1_evicted += 1
            return True

    def _l1_remove(self, key: str) -> None:
        entry = self._l1.pop(key)
        for tag in entry.tags:
            keys = self._tagged.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tagged[tag]

    # invalidation ----------------------------------------------------------------------

    def invalidate(self, tag: str) -> None:
        """Forget every answer that depends on tag, here and in Redis."""
        self.invalidate_many((tag,))

    def invalidate_many(self, tags: Iterable[str]) -> None:
        """Forget every answer that depends on any of tags: O(entries tagged) here, and
        one Redis round trip for the batch."""
        tags = list(dict.fromkeys(tags))
        self.invalidations_received += len(tags)
        INVALIDATIONS.inc(len(tags))
        self._l1_evict(tags)
        if self._l2_configured:
            self._l2_bump(tags)
            # A miss between the eviction and the bump still found the old entry valid in
            # L2 and may have put it back in L1: evict again, so that it cannot stay, and
            # so that a store still in flight counts as overtaken.
            self._l1_evict(tags)

    def _l1_evict(self, tags: list[str]) -> None:
        for start in range(0, len(tags), NOTICES_PER_LOCK):
            with self._lock:
                self._changes += 1
                for tag in tags[start : start + NOTICES_PER_LOCK]:
                    self._changed[tag] = self._changes
                    for key in self._tagged.pop(tag, ()):
                        if key in self._l1:
                            self._l1_remove(key)
                self._prune_changed()

    def _prune_changed(self) -> None:
        """Forget notices no load in progress can be affected by (called under the lock)."""
        if len(self._changed) <= self._prune_above:
            return
        oldest = min(self._loading, default=self._changes)
        for tag in [t for t, at in self._changed.items() if at <= oldest]:
            del self._changed[tag]
        self._prune_above = max(PRUNE_CHANGED_AT, 2 * len(self._changed))

    # L2 --------------------------------------------------------------------------------

    def _l2_usable(self) -> bool:
        if not self._l2_configured or time.monotonic() < self._l2_down_until:
            return False
        if not self._l2_connected():
            return False
        if time.monotonic() - self._policy_checked_at >= POLICY_RECHECK_SECONDS:
            self._check_eviction_policy()
        return self._l2_trusted

    def _l2_connected(self) -> bool:
        """Whether there is a client with its scripts, building them if there are none yet."""
        if self._scripts:
            return True
        with self._connecting:
            if self._scripts:
                return True
            client = self._redis
            if client is None:
                try:
                    client = self._connect()
                except ERRORS as error:
                    self._l2_failed(error)
                    return False
            watch_restarts(client, self._on_new_connection)
            self._redis = client  # before the scripts, which say that it is there
            self._scripts = {
                name: client.register_script(source)
                for name, source in (("read", _L2_READ), ("store", _L2_STORE), ("bump", _L2_BUMP))
            }
        return True

    def _check_eviction_policy(self) -> None:
        """Use L2 only if Redis evicts no version: an evicted one could make a stale entry
        look fresh."""
        self._policy_checked_at = time.monotonic()
        try:
            policy = self._eviction_policy()
        except ERRORS as error:
            self._policy_checked_at = -math.inf  # ask again when Redis is tried again
            self._l2_failed(error)
            return
        safe = policy in SAFE_EVICTION_POLICIES or (policy is None and self._assume_noeviction)
        if policy != self._policy or safe != self._l2_trusted:
            if safe:
                log.info("L2 in use: Redis maxmemory-policy is %s", policy or "vouched for")
            else:
                log.warning(
                    "L2 not used: Redis maxmemory-policy is %s, so it may evict tag versions;"
                    " set it to noeviction (or CACHE_L2_ASSUME_NOEVICTION=true if CONFIG is"
                    " refused and you know it is)",
                    policy or "unknown",
                )
        if safe and not self._l2_trusted:
            self._l2_epochs_asked += 1  # versions may have been evicted meanwhile
        self._policy, self._l2_trusted = policy, safe

    def _eviction_policy(self) -> str | None:
        """The policy of every primary (a cluster's slots can move between them): the
        first unsafe one, else None if one refuses CONFIG, else the one they share."""
        policies = []
        for server in primaries(self._redis).values():
            try:
                policies.append(server.config_get("maxmemory-policy").get("maxmemory-policy"))
            except redis.ResponseError:
                policies.append(None)  # CONFIG is refused on many managed services
        unsafe = [p for p in policies if p is not None and p not in SAFE_EVICTION_POLICIES]
        if unsafe:
            return unsafe[0]
        return None if None in policies else policies[0]

    def _on_new_connection(self, connection) -> None:
        """On a server this instance has not seen yet, start a new epoch before the
        connection's first command: what a restarted, other or re-promoted server holds may
        predate notices this instance already heard. A server that will not say who it is
        (INFO refused by an ACL or a proxy) counts as unseen on every new connection."""
        identity = _server_identity(connection)
        if identity is not None and identity in self._servers_seen:
            return
        connection.send_command("SET", self._keys["epoch"], secrets.token_hex(8))
        try:
            connection.read_response()
        except (redis.exceptions.MovedError, redis.exceptions.AskError):
            pass  # a cluster node that does not hold the cache's slot holds none of its keys
        except redis.ResponseError as error:
            # no new epoch, so no command may run here: the caller's fails, L2 is retried
            raise redis.ConnectionError(f"could not start a new epoch: {error}") from error
        if identity is not None:
            self._servers_seen.add(identity)

    def _l2_failed(self, error: Exception) -> None:
        self.l2_stats.errors += 1
        self._l2_down_until = time.monotonic() + L2_RETRY_SECONDS
        log.warning("redis unavailable, serving from L1 and the database: %s", error)

    def _l2_start_epoch_if_needed(self) -> bool:
        """Invalidate every L2 entry at once when L2 may have missed a notice; whether L2
        can be used now."""
        asked = self._l2_epochs_asked
        if asked == self._l2_epochs_started:
            return True
        try:
            self._redis.set(self._keys["epoch"], secrets.token_hex(8))
        except ERRORS as error:
            self._l2_failed(error)
            return False
        self._l2_epochs_started = asked
        return True

    def _l2_read(self, key: str) -> tuple[tuple | None, _Ticket | None]:
        """(value, tags, seconds left) or None, and the ticket for a load on a miss."""
        if not self._l2_start_epoch_if_needed():
            return None, None
        began = time.monotonic()
        try:
            reply = self._scripts["read"](
                keys=[self._keys["entry"] + key, self._keys["clock"], self._keys["epoch"]],
                args=[self._keys["version"], secrets.token_hex(8)],
            )
        except ERRORS as error:
            self._l2_failed(error)
            return None, None
        ticket = _Ticket(int(reply[0]), reply[1].decode(), began)
        if len(reply) < 3:
            self.l2_stats.misses += 1
            L2_MISSES.inc()
            return None, ticket
        self.l2_stats.hits += 1
        L2_HITS.inc()
        entry = json.loads(reply[2])
        return (entry["v"], entry["t"], max(int(reply[3]), 0) / 1000), None

    def _l2_write(
        self, key: str, value: Any, tags: list[str], seconds: float | None, ticket: _Ticket
    ) -> None:
        # whole seconds in Redis, rounded down: an entry never outlives its answer
        lifetime = self._l2_ttl if seconds is None else min(self._l2_ttl, math.floor(seconds))
        if lifetime < 1 or time.monotonic() - ticket.began > MAX_L2_LOAD_SECONDS:
            return
        if not self._l2_usable() or self._l2_epochs_asked != self._l2_epochs_started:
            return
        entry = json.dumps(
            {"v": value, "t": tags, "at": ticket.clock, "e": ticket.epoch}, separators=(",", ":")
        )
        try:
            self._scripts["store"](
                keys=[
                    self._keys["entry"] + key,
                    self._keys["epoch"],
                    self._keys["version_ttl"],
                    *self._versions(tags),
                ],
                args=[entry, lifetime, ticket.epoch, ticket.clock, _version_ttl(lifetime)],
            )
        except ERRORS as error:
            self._l2_failed(error)

    def _versions(self, tags: Iterable[str]) -> list[str]:
        return [self._keys["version"] + tag for tag in tags]

    def _l2_bump(self, tags: list[str]) -> None:
        if not self._l2_configured or not tags:
            return
        if time.monotonic() < self._l2_down_until or not self._l2_connected():
            # no waiting on a Redis known to be down: the listener must keep up
            self._l2_epochs_asked += 1
            return
        try:
            for start in range(0, len(tags), 1000):
                self._scripts["bump"](
                    keys=[
                        self._keys["clock"],
                        self._keys["version_ttl"],
                        *self._versions(tags[start : start + 1000]),
                    ],
                    args=[_version_ttl(self._l2_ttl)],
                )
        except ERRORS as error:
            self._l2_epochs_asked += 1
            self._l2_failed(error)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()

    # reporting -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            size, evicted, tags = len(self._l1), self._l1_evicted, len(self._tagged)
        since = time.monotonic() - self._last_round_trip
        return {
            "trusted": self.trusted,
            "invalidations_received": self.invalidations_received,
            "bypassed": self.bypassed,
            "coalesced": self.coalesced,
            "seconds_since_listener_round_trip": None if math.isnan(since) else round(since, 3),
            "listener_bound_seconds": self._liveness_bound,
            "l1": {
                **self.l1_stats.as_dict(),
                "size": size,
                "max_size": self._l1_size,
                "evictions": evicted,
                "tags_indexed": tags,
            },
            "l2": {
                **self.l2_stats.as_dict(),
                **self._l2_server_stats(),
                "enabled": self._l2_configured,
                "available": self._l2_configured and self._l2_usable(),
                "trusted": self._l2_trusted,
                "maxmemory_policy": self._policy,
                "namespace": self._namespace,
            },
        }

    def _l2_server_stats(self) -> dict[str, int | None]:
        """Redis's own figures, summed over a cluster's primaries: keys in its database
        (entries, versions and anything else sharing it) and keys it evicted under its
        memory limit; None when unknown."""
        if self._redis is None or time.monotonic() < self._l2_down_until:
            return {"size": None, "evictions": None}
        try:
            servers = primaries(self._redis).values()
            return {
                "size": sum(server.dbsize() for server in servers),
                "evictions": sum(server.info("stats")["evicted_keys"] for server in servers),
            }
        except ERRORS as error:
            self._l2_failed(error)
            return {"size": None, "evictions": None}


def _version_ttl(entry_seconds: int) -> int:
    """How long a tag version must live to outlive an entry of entry_seconds stored against
    it: an entry stored before the version's bump lives that long at most; one stored after
    it was checked against the version, by a load no slower than MAX_L2_LOAD_SECONDS."""
    return entry_seconds + int(MAX_L2_LOAD_SECONDS) + 1


def _server_identity(connection) -> str | None:
    """The server's run id and replication id, or None where it will not say. INFO with
    no section (one named section would leave the other out; several need Redis 7)."""
    connection.send_command("INFO")
    try:
        info = str_if_bytes(connection.read_response())
    except redis.ResponseError:  # NOPERM and the like: the connection stays usable
        return None
    found = dict(SERVER_IDENTITY.findall(info)) if isinstance(info, str) else {}
    if "run_id" not in found:
        return None
    return f"{found['run_id']}:{found.get('master_replid', '')}"


def init_app(app: Flask) -> None:
    """One cache per process. It starts distrusted when enabled: ``create_app`` connects the
    invalidation listener that feeds it, and the listener trusts it once connected."""
    settings = app.config["SETTINGS"]
    url = settings.REDIS_URL
    cache = Cache(
        l1_size=settings.CACHE_L1_SIZE,
        l1_ttl=settings.CACHE_L1_TTL,
        l2_ttl=settings.CACHE_L2_TTL,
        redis_connect=(lambda: connect(url, **REDIS_OPTIONS)) if url else None,
        namespace=settings.redis_namespace,
        assume_noeviction=settings.CACHE_L2_ASSUME_NOEVICTION,
    )
    app.extensions[EXTENSION] = cache
    denials.init_app(app)
    if settings.CACHE_ENABLED:
        cache.check_l2()  # the eviction policy, now, so that the log says it at start


def close(app: Flask) -> None:
    denials.close(app)  # while the pool is open
    app.extensions[EXTENSION].close()


def cache() -> Cache:
    return current_app.extensions[EXTENSION]
