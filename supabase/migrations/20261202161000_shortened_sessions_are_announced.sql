-- A session whose not_after changes is announced, as one that is deleted.
--
-- The cache keeps a session's liveness until it is announced as ended, or until not_after
-- as read when the answer was loaded. Supabase Auth, or an operator, can end a session by
-- moving its not_after earlier instead of deleting it; nothing announced that, so the
-- session stayed live in every instance's cache for up to CACHE_L1_TTL. A second trigger
-- announces a change of not_after (only a value that differs: a write of the whole row that
-- leaves it as it was announces nothing). It is added where the deletions are announced
-- (sessions_invalidate), which is what the cache's liveness answers rely on; where this
-- role may not add triggers to auth.sessions (a hosted project), neither exists and
-- liveness is cached seconds only.

do $$
begin
    if exists (
        select 1 from pg_catalog.pg_trigger
        where tgrelid = 'auth.sessions'::regclass and tgname = 'sessions_invalidate'
    ) then
        create trigger sessions_not_after_invalidate
        after update of not_after on auth.sessions
        for each row
        when (old.not_after is distinct from new.not_after)
        execute function private.announce_change('session', 'id');
        comment on trigger sessions_not_after_invalidate on auth.sessions is
        'Announces a session whose not_after changed (ended early outside the app).';
    end if;
exception when insufficient_privilege then
    raise notice 'no trigger on auth.sessions: session ends are announced by the app';
end
$$;
