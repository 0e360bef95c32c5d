-- Denials in the audit: who was refused what, counted per hour.
--
-- A denial is recorded as one row per (user, resource, hour) holding a count, upserted,
-- so refusals cannot flood the database: a user adds at most one row per resource they
-- were refused each hour, and everything that does not exist shares one row per resource
-- type (resource_id is the nil uuid), so made-up ids add nothing. The rows are the audit's
-- and no API role may read or change them.
--
-- Written by public.authorize_generation itself (so a direct Supabase SDK call is recorded
-- as the API's is) and, for the API's refused requests (403 and 404 on a resource), by the
-- app after the refused transaction rolled back (a refusal raised in SQL undoes every write
-- of its transaction, its record included). The app also counts the denials it answers
-- from its cache (no SQL ran for them) and writes them in batches with a count.
-- PostgREST runs GET calls read-only: a denial answered to a GET of
-- /rpc/authorize_generation cannot be written and is not recorded.

-- tables --------------------------------------------------------------------------------

create table private.audit_denials (
    user_id uuid not null,
    resource_type text not null check (resource_type in ('generation', 'project', 'team')),
    -- the nil uuid: something of that type that does not exist
    resource_id uuid not null,
    hour timestamptz not null,
    denials bigint not null check (denials > 0),
    first_at timestamptz not null default now(),
    last_at timestamptz not null default now(),
    last_reason text not null check (char_length(last_reason) <= 200),
    primary key (user_id, resource_type, resource_id, hour)
);

comment on table private.audit_denials is
'Denials counted per user, resource and hour (resource_id nil: a resource that does not exist).';

create index audit_denials_hour_idx on private.audit_denials (hour);

-- functions -----------------------------------------------------------------------------

create function private.record_denial(
    p_user_id uuid,
    p_resource_type text,
    p_resource_id uuid,
    p_reason text,
    p_count bigint default 1
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_exists boolean;
begin
    if p_user_id is null or p_count is null or p_count < 1 then
        return;
    end if;
    -- a denial's count is worth no wait for the disk: its transaction commits without
    -- waiting for the WAL flush (a crash may lose the last fraction of a second of counts,
    -- never make them inconsistent), so a denied request costs about what a granted one does
    perform pg_catalog.set_config('synchronous_commit', 'off', true);
    v_exists := case p_resource_type
        when 'generation' then exists (select 1 from public.generations where id = p_resource_id)
        when 'project' then exists (select 1 from public.projects where id = p_resource_id)
        when 'team' then exists (select 1 from public.teams where id = p_resource_id)
        else false
    end;
    insert into private.audit_denials as d (user_id, resource_type, resource_id, hour, denials, last_reason)
    values (
        p_user_id, p_resource_type,
        case when v_exists then p_resource_id else '00000000-0000-0000-0000-000000000000'::uuid end,
        date_trunc('hour', now()), p_count, left(coalesce(p_reason, ''), 200)
    )
    on conflict (user_id, resource_type, resource_id, hour) do update
    set denials = d.denials + excluded.denials, last_at = excluded.last_at,
        last_reason = excluded.last_reason;
end;
$$;

comment on function private.record_denial(uuid, text, uuid, text, bigint) is
'Counts a denial (or p_count of them) in its (user, resource, hour) row; the one writer of audit_denials.';

revoke all on function private.record_denial(uuid, text, uuid, text, bigint)
from public, anon, authenticated, service_role;

-- volatile now: it writes the denial it answers (stable functions may not write). A
-- grant costs one comparison more. Read-only transactions (a PostgREST GET) skip the record.
create or replace function public.authorize_generation(p_generation_id uuid)
returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_role public.team_role;
    v_via text;
begin
    select a.role, a.via into v_role, v_via from private.generation_access(p_generation_id, auth.uid()) as a;
    if v_role is null and current_setting('transaction_read_only') = 'off' then
        perform private.record_denial(auth.uid(), 'generation', p_generation_id, 'authorize_generation');
    end if;
    return private.access_document(v_role, v_via);
end;
$$;
