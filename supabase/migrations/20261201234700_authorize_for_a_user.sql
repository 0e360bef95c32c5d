-- The app's authorization miss without a role switch.
--
-- private.authorize_generation_for took the role authenticated and the caller's claims
-- for its body, only so that public.authorize_generation and
-- private.generation_answer_tags could read the caller from auth.uid(). It now passes the
-- user id instead, to private.authorize_generation_as(user, generation) and to the tags.
-- The miss's statement then makes the same decision with four set_config calls, two
-- auth.uid() parses and two security definer switches fewer.

-- The decision for one user, recorded when it denies: the three steps of
-- public.authorize_generation (20261201203002) with the user passed in. The rule itself
-- stays in one place, private.generation_access. public.authorize_generation keeps its own
-- copy of these steps rather than calling this function: the extra call cost a client's
-- PostgREST transaction about 14 µs (6%) in pgbench here. supabase/tests/070 checks that
-- both answer alike for every user, generation and access path.
create function private.authorize_generation_as(p_user_id uuid, p_generation_id uuid)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_role public.team_role;
    v_via text;
begin
    select a.role, a.via into v_role, v_via from private.generation_access(p_generation_id, p_user_id) as a;
    if v_role is null and pg_catalog.current_setting('transaction_read_only') = 'off' then
        perform private.record_denial(p_user_id, 'generation', p_generation_id, 'authorize_generation');
    end if;
    return private.access_document(v_role, v_via);
end;
$$;

comment on function private.authorize_generation_as(uuid, uuid) is
'authorize_generation''s answer for this user (a denial is recorded unless read-only).';

revoke all on function private.authorize_generation_as(uuid, uuid)
from public, anon, authenticated, service_role;

-- The tags of a user's answer on a generation: the user (membership, role, suspension),
-- the generation (owner, project, shares) and its project (owner, visibility, team links).
-- The project is looked up without RLS because a denial depends on it too: linking the
-- project to the user's team, or making it public, turns the denial into a grant. Only
-- the app's own role calls it, in the statement that decides: no API role needs it now.
drop function private.generation_answer_tags(uuid);

create function private.generation_answer_tags(p_generation_id uuid, p_user_id uuid)
returns text[]
language plpgsql
stable
set search_path = ''
as $$
declare
    v_project_id uuid;
begin
    select g.project_id into v_project_id from public.generations as g where g.id = p_generation_id;
    return array['user:' || p_user_id::text, 'generation:' || p_generation_id::text]
        || case when v_project_id is null then '{}'::text[] else array['project:' || v_project_id::text] end;
end;
$$;

comment on function private.generation_answer_tags(uuid, uuid) is
'Cache tags of a user''s authorize_generation answer, read with the answer in one statement.';

revoke all on function private.generation_answer_tags(uuid, uuid)
from public, anon, authenticated, service_role;

create or replace function private.authorize_generation_for(
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
    v_user_id uuid := (p_claims ->> 'sub')::uuid;
begin
    if not exists (
        select 1 from private.live_sessions as s
        where s.id = (p_claims ->> 'session_id')::uuid and s.user_id = v_user_id
    ) then
        perform private.raise_error(401, 'This session has ended; sign in again.');
    end if;
    decision := private.authorize_generation_as(v_user_id, p_generation_id);
    tags := private.generation_answer_tags(p_generation_id, v_user_id);
end;
$$;

comment on function private.authorize_generation_for(jsonb, uuid) is
'The app''s authorization miss in one statement: checks the session of these verified claims, '
'then returns authorize_generation''s answer for their user and its cache tags.';
