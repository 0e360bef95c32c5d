-- A migration that changes the rules announces it to every app instance's cache.
--
-- Cached answers are evicted by the rows they were decided from; a migration that changes
-- how they are decided (a permission list, a policy, a helper) changes no such row, so
-- answers cached under the old rules were served until they expired (CACHE_L2_TTL, 300 s
-- by default). The notice ('cache', 'all') makes every instance forget every answer, in
-- L1 and in L2 (a new epoch), when the migration commits; the listener reads it as the tag
-- cache:all. A migration that changes the rules ends with this call.
--
-- This one also reaches answers still cached from before 20261202130000, which took
-- `share` from admins: an instance that kept running across that deploy served them until
-- they expired.

select private.notify_invalidation('cache', 'all');
