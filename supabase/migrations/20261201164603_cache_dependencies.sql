-- Cache dependencies: what a cached answer depends on comes from SQL, with the answer.
--
-- The app caches authorization answers and session liveness. Each cached entry carries
-- tags naming the rows its answer was read from; the invalidation triggers announce the
-- same tags when those rows change. Deriving the tags here, next to the rules they
-- describe, keeps the app from holding a second copy of the access model.
--
-- A correction to the cache invalidation migration: its note on auth.sessions said the app
-- announced the logouts it performs and that session checks relied on a short TTL where
-- the trigger is missing. Neither was true before this migration. From here on both
-- providers announce every session end they cause (sign-out, refresh-token reuse) through
-- private.notify_invalidation, and session_liveness() tells the app whether the trigger
-- exists, so that without it cached liveness lives seconds (CACHE_SESSION_TTL).

-- functions -----------------------------------------------------------------------------

-- The tags of the caller's authorization answer on a generation: the caller (membership,
-- role, suspension), the generation (owner, project, shares) and its project (owner,
-- visibility, team links). The project is looked up without RLS because a denial depends
-- on it too: linking the project to the caller's team, or making it public, turns the
-- denial into a grant.
create function private.generation_answer_tags(p_generation_id uuid)
returns text[]
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
    v_project_id uuid;
begin
    select g.project_id into v_project_id from public.generations as g where g.id = p_generation_id;
    return array['user:' || auth.uid()::text, 'generation:' || p_generation_id::text]
        || case when v_project_id is null then '{}'::text[] else array['project:' || v_project_id::text] end;
end;
$$;

comment on function private.generation_answer_tags(uuid) is
'Cache tags of the caller''s authorize_generation answer, read with the answer in one statement.';

-- The app asks in the caller's own transaction (as authenticated), in the same statement as
-- the decision, so a miss stays one round trip. That is safe: private is not an API schema
-- (PostgREST and pg_graphql never call into it), so no client can call this; the app, the
-- only other holder of a connection, reads every row anyway. The project id it returns is
-- used as a cache key and never sent to the caller.
revoke all on function private.generation_answer_tags(uuid) from public, anon, service_role;
grant execute on function private.generation_answer_tags(uuid) to authenticated;

-- Whether a token's session still exists, with what that answer depends on. `announced`
-- says whether auth.sessions announces its deletions (the trigger below, which a hosted
-- project may refuse): without it the app caches the answer for seconds only. A session
-- with not_after expires on its own; seconds_left tells the cache, from the database's
-- clock, so no host's clock is compared with another's.
create function private.session_liveness(p_session_id uuid, p_user_id uuid)
returns table (live boolean, tags text[], announced boolean, seconds_left double precision)
language plpgsql
stable
set search_path = ''
as $$
begin
    return query
    select
        s.id is not null,
        array['session:' || p_session_id::text, 'user:' || p_user_id::text],
        exists (
            select 1 from pg_catalog.pg_trigger as t
            where t.tgrelid = 'auth.sessions'::regclass
                and t.tgname = 'sessions_invalidate'
                and t.tgenabled <> 'D'
        ),
        extract(epoch from s.not_after - pg_catalog.now())::double precision
    from (select 1) as one
    left join auth.sessions as s
        on s.id = p_session_id and s.user_id = p_user_id
        and (s.not_after is null or s.not_after > pg_catalog.now());
end;
$$;

comment on function private.session_liveness(uuid, uuid) is
'Whether a session lives, its cache tags, whether its end is announced, and seconds until not_after.';

-- the app calls it as the database owner, before any role is set; no API role needs it
revoke all on function private.session_liveness(uuid, uuid) from public, anon, authenticated, service_role;

comment on function private.notify_invalidation(text, text) is
'Tells every app instance, at commit, to evict cached answers that depend on (scope, id). '
'Triggers call it, and so do both auth providers when they end a session.';

-- the note the cache invalidation migration should have left on the sessions trigger
do $$
begin
    if exists (
        select 1 from pg_catalog.pg_trigger
        where tgrelid = 'auth.sessions'::regclass and tgname = 'sessions_invalidate'
    ) then
        comment on trigger sessions_invalidate on auth.sessions is
        'Announces sessions ended outside the app (e.g. by an operator). The app announces '
        'the sign-outs and revocations it performs itself, so it does not depend on this.';
    end if;
end
$$;
