-- One definition of a live session, read by both places that ask.
--
-- A token's session is live while its row exists in auth.sessions for the token's user and
-- its not_after, if any, is ahead. The app asks in two places: the preamble of every user
-- transaction (one statement that refuses an ended session before the caller's statement
-- runs, in the same round trip) and session_liveness(), which the cached session check
-- reads with its tags. Both now read this view, so the rule is written once.
--
-- A view, not a function: the preamble is on the hottest path (every uncached request), and
-- the rewriter expands a view into the statement at no cost, where a function call costs a
-- call per request (a set-returning PL/pgSQL call several times the probe itself).

-- views ---------------------------------------------------------------------------------

create view private.live_sessions as
select
    s.id,
    s.user_id,
    s.not_after
from auth.sessions as s
where s.not_after is null or s.not_after > pg_catalog.now();

comment on view private.live_sessions is
'Sessions that still authenticate their tokens: the one rule the preamble and session_liveness read.';

-- read by the app's own role only (the preamble runs before its role switch; see
-- session_liveness below): no API role needs it
revoke all on private.live_sessions from public, anon, authenticated, service_role;

-- functions -----------------------------------------------------------------------------

-- The same answer as before (live, tags, announced, seconds_left), with liveness read from
-- the view.
create or replace function private.session_liveness(p_session_id uuid, p_user_id uuid)
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
    left join private.live_sessions as s
        on s.id = p_session_id and s.user_id = p_user_id;
end;
$$;
