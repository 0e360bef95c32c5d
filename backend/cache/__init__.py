"""The read cache and what keeps it exact.

- ``store``: the L1 (in-process) and L2 (Redis) cache, ``Cache.get_or_load``;
- ``redis_client``: the client for ``REDIS_URL``, one server or a Redis Cluster (the
  health checks use it too);
- ``listener``: the process's one LISTEN connection: it feeds the database's invalidation
  notices to any ``InvalidationTarget`` (the cache), and other channels to their consumers
  (live status); ``create_app`` connects them;
- ``authorization``: authorization answers, cached and tagged with what they depend on;
- ``denials``: denials served from the cache, counted and written to the audit in batches.

May import: config, db. Nothing here knows Flask requests or HTTP errors.
"""

from backend.cache.store import EXTENSION, Cache, cache, close, init_app

__all__ = ["EXTENSION", "Cache", "cache", "close", "init_app"]
