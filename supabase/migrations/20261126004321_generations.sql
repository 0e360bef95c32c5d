-- Generations and their shares with teams. Access rules live in access_control; the
-- charge-and-create path lives in generation_rpcs.

-- types ---------------------------------------------------------------------------------

create type public.generation_status as enum (
    'pending', 'queued', 'processing', 'completed', 'failed', 'cancelled'
);

-- tables --------------------------------------------------------------------------------

create table public.generations (
    id uuid primary key default gen_random_uuid(),
    owner_id uuid not null references public.profiles (id) on delete cascade,
    project_id uuid references public.projects (id) on delete cascade,
    model_id text not null references public.models (id),
    prompt text not null check (char_length(prompt) between 1 and 4000),
    parameters jsonb not null default '{}'::jsonb check (jsonb_typeof(parameters) = 'object'),
    title text check (char_length(title) <= 200),
    status public.generation_status not null default 'pending',
    fal_request_id text unique,
    outputs jsonb not null default '[]'::jsonb,
    error text,
    cost integer not null check (cost >= 0),
    idempotency_key text not null check (char_length(idempotency_key) between 1 and 255),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    completed_at timestamptz
);

comment on table public.generations is
'One FAL request: who asked, where it lives, what it cost, and what came back.';

-- a retried submission with the same key finds the first one instead of charging twice
create unique index generations_idempotency_key on public.generations (owner_id, idempotency_key);
-- list pages: newest first, per owner and per project (policy columns are indexed too)
create index generations_owner_id_idx on public.generations (owner_id, created_at desc, id desc);
create index generations_project_id_idx on public.generations (project_id, created_at desc, id desc);
-- the poller looks for requests still in flight
create index generations_in_flight_idx on public.generations (updated_at)
where status in ('queued', 'processing');

create table public.generation_shares (
    generation_id uuid not null references public.generations (id) on delete cascade,
    team_id uuid not null references public.teams (id) on delete cascade,
    role public.team_role not null check (role <> 'owner'),
    shared_by uuid references public.profiles (id) on delete set null,
    created_at timestamptz not null default now(),
    primary key (generation_id, team_id)
);

comment on table public.generation_shares is
'A generation shared with a team: members get the lower of their team role and this role.';

create index generation_shares_team_id_idx on public.generation_shares (team_id, generation_id);

-- grants --------------------------------------------------------------------------------

grant select, delete on public.generations to authenticated;
grant update (title) on public.generations to authenticated;
grant select on public.generation_shares to authenticated;
grant select, insert, update, delete on public.generations, public.generation_shares to service_role;

create trigger generations_touch_updated_at
before update on public.generations
for each row execute function private.touch_updated_at();

-- RLS -----------------------------------------------------------------------------------

alter table public.generations enable row level security;
alter table public.generation_shares enable row level security;
