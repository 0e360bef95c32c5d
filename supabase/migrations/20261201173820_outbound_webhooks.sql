-- Webhooks to our users, signed per the Standard Webhooks spec.
--
-- A generation may carry a webhook: a URL and the events it wants (`start` when the
-- provider takes it, `completed` when it ends, however it ends). The events are written
-- to a delivery log by a trigger, in the same transaction as the status change that
-- causes them, so no event is lost and none is written twice; the worker delivers them
-- with retries and backoff and records each attempt. Each user has one signing secret,
-- shown once when it is made or rotated and stored in the private schema, where no API
-- role can read it; the worker signs with it.

-- tables --------------------------------------------------------------------------------

create table public.generation_webhooks (
    generation_id uuid primary key references public.generations (id) on delete cascade,
    owner_id uuid not null references public.profiles (id) on delete cascade,
    url text not null check (url ~ '^https?://[^/?#@[:space:]]+' and char_length(url) <= 2048),
    events text[] not null check (cardinality(events) between 1 and 2 and events <@ array['start', 'completed']),
    created_at timestamptz not null default now()
);

comment on table public.generation_webhooks is
'Where and for which events (start, completed) a generation''s owner wants to be called.';

create index generation_webhooks_owner_id_idx on public.generation_webhooks (owner_id);

create table public.webhook_deliveries (
    id uuid primary key default gen_random_uuid(),
    generation_id uuid not null references public.generations (id) on delete cascade,
    owner_id uuid not null references public.profiles (id) on delete cascade,
    event text not null check (event in ('start', 'completed')),
    url text not null,
    status text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
    attempts integer not null default 0 check (attempts >= 0),
    response_status integer,
    last_error text check (char_length(last_error) <= 1000),
    next_attempt_at timestamptz not null default now(),
    created_at timestamptz not null default now(),
    delivered_at timestamptz,
    unique (generation_id, event)
);

comment on table public.webhook_deliveries is
'One event of a generation to its owner''s webhook: state, attempts, last answer; the delivery log.';

create index webhook_deliveries_owner_id_idx on public.webhook_deliveries (owner_id, created_at desc);
-- the worker's sweep: what is due next
create index webhook_deliveries_due_idx on public.webhook_deliveries (next_attempt_at)
where status = 'pending';

create table private.webhook_secrets (
    user_id uuid primary key references public.profiles (id) on delete cascade,
    secret text not null,
    created_at timestamptz not null default now()
);

comment on table private.webhook_secrets is
'Each user''s Standard Webhooks signing secret (whsec_...): shown once, readable by no API role.';

-- grants --------------------------------------------------------------------------------

revoke all on public.generation_webhooks, public.webhook_deliveries from public, anon, authenticated, service_role;
grant select on public.generation_webhooks, public.webhook_deliveries to authenticated;
grant select, insert, update, delete on public.generation_webhooks, public.webhook_deliveries to service_role;
revoke all on private.webhook_secrets from public, anon, authenticated, service_role;

-- RLS -----------------------------------------------------------------------------------

alter table public.generation_webhooks enable row level security;
alter table public.webhook_deliveries enable row level security;

-- policies ------------------------------------------------------------------------------

create policy "owners can read their generations' webhooks"
on public.generation_webhooks
for select
to authenticated
using (owner_id = (select auth.uid()));

create policy "owners can read their webhook deliveries"
on public.webhook_deliveries
for select
to authenticated
using (owner_id = (select auth.uid()));

-- functions -----------------------------------------------------------------------------

-- Which event a status change is, if any: `start` when the provider takes a generation,
-- `completed` when it ends (completed, failed or cancelled).
create function private.webhook_event_for(p_old public.generation_status, p_new public.generation_status)
returns text
language sql
immutable
set search_path = ''
as $$
    select case
        when p_new in ('completed', 'failed', 'cancelled') then 'completed'
        when p_old = 'pending' and p_new in ('queued', 'processing') then 'start'
    end;
$$;

comment on function private.webhook_event_for(public.generation_status, public.generation_status) is
'The Standard Webhooks event (start, completed) a status change makes, or null.';

-- definer: the log is written by this trigger only, never by the callers whose change fires it
create function private.record_webhook_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_event text := private.webhook_event_for(old.status, new.status);
begin
    if v_event is null then
        return null;
    end if;
    insert into public.webhook_deliveries (generation_id, owner_id, event, url)
    select w.generation_id, w.owner_id, v_event, w.url
    from public.generation_webhooks as w
    where w.generation_id = new.id and v_event = any(w.events)
    on conflict (generation_id, event) do nothing;
    return null;
end;
$$;

comment on function private.record_webhook_event() is
'Writes the delivery a status change owes to the generation''s webhook, once per event.';

revoke all on function private.record_webhook_event() from public, anon, authenticated, service_role;

-- A random secret in Standard Webhooks' form: 32 bytes from two version-4 uuids (core
-- Postgres, so the embedded default needs no pgcrypto), 244 of their bits random.
create function private.new_webhook_secret()
returns text
language sql
volatile
set search_path = ''
as $$
    select 'whsec_' || encode(
        decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64'
    );
$$;

comment on function private.new_webhook_secret() is
'A fresh whsec_<base64> signing secret from the server''s cryptographic random source.';

revoke all on function private.new_webhook_secret() from public, anon, authenticated, service_role;

create function public.set_generation_webhook(p_generation_id uuid, p_url text, p_events text[] default array[
    'start', 'completed'
])
returns public.generation_webhooks
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_webhook public.generation_webhooks;
begin
    if not exists (select 1 from public.generations where id = p_generation_id and owner_id = v_uid) then
        perform private.raise_error(404, 'generation not found');
    end if;
    if p_url is null or p_url !~ '^https?://[^/?#@[:space:]]+' or char_length(p_url) > 2048 then
        perform private.raise_error(400, 'webhook_url must be an http(s) URL of at most 2048 characters');
    end if;
    if p_events is null or cardinality(p_events) = 0 or not p_events <@ array['start', 'completed'] then
        perform private.raise_error(400, 'webhook_events_filter must name start and/or completed');
    end if;
    insert into public.generation_webhooks (generation_id, owner_id, url, events)
    values (p_generation_id, v_uid, p_url, (select array_agg(distinct e order by e) from unnest(p_events) as e))
    on conflict (generation_id) do update set url = excluded.url, events = excluded.events
    returning * into v_webhook;
    return v_webhook;
end;
$$;

comment on function public.set_generation_webhook(uuid, text, text[]) is
'The owner of a generation asks to be called at a URL for events start and/or completed.';

revoke all on function public.set_generation_webhook(uuid, text, text[]) from public, anon, service_role;
grant execute on function public.set_generation_webhook(uuid, text, text[]) to authenticated;

create function public.rotate_webhook_secret()
returns table (secret text, created_at timestamptz)
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
begin
    return query
    insert into private.webhook_secrets as s (user_id, secret)
    values (v_uid, private.new_webhook_secret())
    on conflict (user_id) do update set secret = excluded.secret, created_at = now()
    returning s.secret, s.created_at;
    perform private.audit('webhook_secret.rotated', v_uid, 'profile', v_uid::text, null, '{}'::jsonb);
end;
$$;

comment on function public.rotate_webhook_secret() is
'Makes or replaces the caller''s webhook signing secret and returns it: the only time it is shown.';

revoke all on function public.rotate_webhook_secret() from public, anon, service_role;
grant execute on function public.rotate_webhook_secret() to authenticated;

create function public.webhook_secret_info()
returns table (configured boolean, created_at timestamptz)
language sql
stable
security definer
set search_path = ''
as $$
    select s.user_id is not null, s.created_at
    from (select 1) as one
    left join private.webhook_secrets as s on s.user_id = (select auth.uid());
$$;

comment on function public.webhook_secret_info() is
'Whether the caller has a webhook signing secret and since when; never the secret itself.';

revoke all on function public.webhook_secret_info() from public, anon, service_role;
grant execute on function public.webhook_secret_info() to authenticated;

-- triggers ------------------------------------------------------------------------------

create trigger generations_record_webhook_event
after update of status on public.generations
for each row
when (old.status is distinct from new.status)
execute function private.record_webhook_event();
