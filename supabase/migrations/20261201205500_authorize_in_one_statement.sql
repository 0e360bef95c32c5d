-- An authorization miss in one statement.
--
-- The app answers an uncached POST /generations/{id}/authorize the way PostgREST serves
-- the RPC: check the token's session, take the role authenticated with the caller's
-- claims, call public.authorize_generation, and read the answer's cache tags. Sent as a
-- preamble and a query in one pipeline that is two statements, and the pipeline's
-- bookkeeping was about a third of the app's CPU per miss. This function does the same
-- steps in one statement.
--
-- Statements after the switch run as authenticated, so public.authorize_generation is
-- called under the same grant as from a Supabase client. The function puts the role and
-- the claims back before it returns: the app's statement is its own transaction, but
-- called inside a longer one the caller's role would otherwise outlive the call.

create function private.authorize_generation_for(
    p_claims jsonb,
    p_generation_id uuid,
    out decision jsonb,
    out tags text[]
)
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_role text := pg_catalog.current_setting('role');
    v_claims text := pg_catalog.current_setting('request.jwt.claims', true);
begin
    if not exists (
        select 1 from private.live_sessions as s
        where s.id = (p_claims ->> 'session_id')::uuid and s.user_id = (p_claims ->> 'sub')::uuid
    ) then
        perform private.raise_error(401, 'This session has ended; sign in again.');
    end if;
    perform pg_catalog.set_config('role', 'authenticated', true);
    perform pg_catalog.set_config('request.jwt.claims', p_claims::text, true);
    decision := public.authorize_generation(p_generation_id);
    tags := private.generation_answer_tags(p_generation_id);
    perform pg_catalog.set_config('role', v_role, true);
    perform pg_catalog.set_config('request.jwt.claims', coalesce(v_claims, ''), true);
end;
$$;

comment on function private.authorize_generation_for(jsonb, uuid) is
'The app''s authorization miss in one statement: checks the session, then as the caller '
'(role authenticated, these claims) returns authorize_generation and its cache tags.';

-- the app calls it as the database owner with claims it has verified; no API role may,
-- since it trusts the claims it is given
revoke all on function private.authorize_generation_for(jsonb, uuid)
from public, anon, authenticated, service_role;
