-- Foundation: the private schema for internals, shared types, settings and the audit log.
--
-- Every later migration relies on three rules set here: functions are not executable by
-- PUBLIC unless granted one by one; internals live in `private`, which PostgREST does not
-- expose; and the audit log is append-only for everyone but a superuser.

-- types ---------------------------------------------------------------------------------

create type public.team_role as enum ('viewer', 'editor', 'admin', 'owner');
comment on type public.team_role is
'Ordered lowest to highest, so greatest()/least()/max() pick the stronger/weaker role.';

-- schemas -------------------------------------------------------------------------------

create schema private;
comment on schema private is
'Internals: policy helpers, flattened access tables, settings, audit. Never exposed by the API.';

-- authenticated reaches private only through the policy helpers granted one by one; anon
-- needs nothing there
revoke all on schema private from public;
grant usage on schema private to authenticated, service_role;

-- no function is executable unless granted explicitly, right after it is created
alter default privileges revoke execute on functions from public;
alter default privileges in schema public revoke execute on functions from anon, authenticated;
alter default privileges in schema private revoke execute on functions from anon, authenticated;

-- hosted Supabase grants new tables to the API roles by default; we grant each one explicitly
alter default privileges in schema public revoke all on tables from anon, authenticated;
alter default privileges in schema public revoke all on sequences from anon, authenticated;

-- settings ------------------------------------------------------------------------------

create table private.settings (
    key text primary key,
    value jsonb not null,
    updated_at timestamptz not null default now()
);

comment on table private.settings is 'Operator-tunable values, e.g. the signup credit grant.';

insert into private.settings (key, value) values
('signup_credits', '100'::jsonb),
('invitation_ttl', '"7 days"'::jsonb);

grant select, update on private.settings to service_role;

create function private.setting(p_key text)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select value from private.settings where key = p_key
$$;

comment on function private.setting(text) is 'Reads one operator setting; null when unset.';

-- updated_at -----------------------------------------------------------------------------

create function private.touch_updated_at()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    new.updated_at := now();
    return new;
end;
$$;

comment on function private.touch_updated_at() is
'Keeps updated_at true on every update, whoever makes it (API, RPC, service).';

-- errors --------------------------------------------------------------------------------

-- Our functions raise PostgREST-style SQLSTATEs: PTxyz becomes HTTP xyz in PostgREST, and
-- the Flask app maps them the same way. One helper keeps the codes and messages uniform.
create function private.raise_error(p_status integer, p_message text, p_hint text default null)
returns void
language plpgsql
set search_path = ''
as $$
begin
    if p_hint is null then
        raise exception using errcode = 'PT' || p_status::text, message = p_message;
    end if;
    raise exception using errcode = 'PT' || p_status::text, message = p_message, hint = p_hint;
end;
$$;

comment on function private.raise_error(integer, text, text) is
'Raises SQLSTATE PT<status> (PostgREST maps it to that HTTP status) with a message that says what to fix.';

grant execute on function private.raise_error(integer, text, text) to authenticated, service_role;

-- audit ---------------------------------------------------------------------------------

create table private.audit_events (
    id bigint generated always as identity primary key,
    occurred_at timestamptz not null default now(),
    event text not null check (event ~ '^[a-z_]+\.[a-z_]+$'),
    actor_id uuid,
    subject_type text,
    subject_id text,
    team_id uuid,
    details jsonb not null default '{}'::jsonb
);

comment on table private.audit_events is
'Append-only log of security-relevant events (logins, denials, role changes, shares, credits).';

create index audit_events_actor_id_idx on private.audit_events (actor_id, occurred_at desc);
create index audit_events_team_id_idx on private.audit_events (team_id, occurred_at desc);

-- the service role may read the log and write new lines; nobody may change a line
grant select on private.audit_events to service_role;

create function private.refuse_audit_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    raise exception using
        errcode = 'PT403',
        message = 'audit events are append-only';
end;
$$;

comment on function private.refuse_audit_change() is 'Keeps the audit log append-only.';

create trigger audit_events_are_append_only
before update or delete on private.audit_events
for each row execute function private.refuse_audit_change();

create trigger audit_events_are_never_truncated
before truncate on private.audit_events
for each statement execute function private.refuse_audit_change();

create function private.audit(
    p_event text,
    p_actor_id uuid,
    p_subject_type text default null,
    p_subject_id text default null,
    p_team_id uuid default null,
    p_details jsonb default '{}'::jsonb
)
returns void
language sql
security definer
set search_path = ''
as $$
    insert into private.audit_events (event, actor_id, subject_type, subject_id, team_id, details)
    values (p_event, p_actor_id, p_subject_type, p_subject_id, p_team_id, coalesce(p_details, '{}'::jsonb))
$$;

comment on function private.audit(text, uuid, text, text, uuid, jsonb) is
'The one way to write the audit log; definer so callers need no grant on the table.';

grant execute on function private.audit(text, uuid, text, text, uuid, jsonb) to service_role;
