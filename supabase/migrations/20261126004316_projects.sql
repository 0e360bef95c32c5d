-- Projects and their links to teams. Who may do what with them is decided in the
-- access_control migration, which flattens these rows into private.project_access.

-- types ---------------------------------------------------------------------------------

create type public.project_visibility as enum ('private', 'team', 'public');
comment on type public.project_visibility is
'private: owner only; team: plus linked teams at their link level; public: plus every signed-in user as viewer.';

-- tables --------------------------------------------------------------------------------

create table public.projects (
    id uuid primary key default gen_random_uuid(),
    owner_id uuid not null default auth.uid() references public.profiles (id) on delete cascade,
    name text not null check (char_length(btrim(name)) between 1 and 200),
    description text check (char_length(description) <= 2000),
    visibility public.project_visibility not null default 'private',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

comment on table public.projects is 'A user''s folder of generations, optionally shared with teams or public.';

create index projects_owner_id_idx on public.projects (owner_id, created_at desc);
create index projects_public_idx on public.projects (id) where visibility = 'public';

create table public.project_teams (
    project_id uuid not null references public.projects (id) on delete cascade,
    team_id uuid not null references public.teams (id) on delete cascade,
    access_level public.team_role not null check (access_level <> 'owner'),
    linked_by uuid references public.profiles (id) on delete set null,
    created_at timestamptz not null default now(),
    primary key (project_id, team_id)
);

comment on table public.project_teams is
'A project linked to a team: members get the lower of their team role and access_level.';

-- the primary key indexes project_id first; team lookups need their own index
create index project_teams_team_id_idx on public.project_teams (team_id, project_id);

-- grants --------------------------------------------------------------------------------

grant select, delete on public.projects to authenticated;
grant insert (name, description, visibility) on public.projects to authenticated;
grant update (name, description, visibility) on public.projects to authenticated;
grant select on public.project_teams to authenticated;
grant select, insert, update, delete on public.projects, public.project_teams to service_role;

create trigger projects_touch_updated_at
before update on public.projects
for each row execute function private.touch_updated_at();

-- RLS -----------------------------------------------------------------------------------

alter table public.projects enable row level security;
alter table public.project_teams enable row level security;
