-- Benchmark dataset loaders. Applied only to the throwaway benchmark database, after the
-- stand-in and the migrations, never to a real project.
--
-- Everything is set-based (generate_series, insert ... select) and goes through the real
-- tables and their triggers, so profiles, signup grants and each generation's copy of its
-- project's publicity are built exactly as production builds them. The bench.* tables number the rows so loaders
-- can pick "the k-th user" cheaply. setseed() makes a run reproducible.

create schema bench;

create table bench.users (n integer primary key, id uuid not null unique);
create table bench.teams (n integer primary key, id uuid not null unique);
create table bench.projects (
    n integer primary key,
    id uuid not null unique,
    owner_id uuid not null,
    visibility public.project_visibility not null,
    writers uuid[] not null default '{}'
);
create table bench.models (n integer primary key, id text not null, credit_cost integer not null);

-- users ---------------------------------------------------------------------------------

-- The signup trigger gives each user a profile and the signup grant; one in a hundred is
-- then suspended, since a suspended user must see nothing and that path is measured too.
create function bench.load_users(p_count integer)
returns void
language sql
as $$
    select setseed(0.42);
    insert into bench.users (n, id) select i, gen_random_uuid() from generate_series(1, p_count) as i;
    insert into auth.users (
        id, aud, role, email, encrypted_password, email_confirmed_at,
        raw_app_meta_data, raw_user_meta_data, created_at, updated_at
    )
    select
        u.id, 'authenticated', 'authenticated', format('user%s@bench.velro.test', u.n), '', now(),
        '{"provider": "email"}'::jsonb, jsonb_build_object('display_name', 'User ' || u.n),
        now() - random() * interval '400 days', now()
    from bench.users as u
    order by u.n;
    update public.profiles set status = 'suspended'
    where id in (select id from bench.users where n % 100 = 50);
$$;

-- teams ---------------------------------------------------------------------------------

-- Each team gets its owner now; the other memberships are only planned here (each user
-- joins p_teams_per_user random teams as admin 10%, editor 40% or viewer 50%) and
-- inserted in slices by bench.load_members.
create table bench.memberships (
    team_id uuid not null,
    user_n integer not null,
    user_id uuid not null,
    role public.team_role not null,
    primary key (team_id, user_id)
);

create index on bench.memberships (user_id);

create function bench.load_teams(p_count integer, p_teams_per_user integer)
returns void
language sql
as $$
    select setseed(0.43);
    insert into bench.teams (n, id) select i, gen_random_uuid() from generate_series(1, p_count) as i;
    insert into public.teams (id, name, owner_id)
    select t.id, 'Team ' || t.n, u.id
    from bench.teams as t
    inner join bench.users as u on u.n = 1 + (t.n * 7919) % (select count(*) from bench.users);
    insert into public.team_members (team_id, user_id, role)
    select id, owner_id, 'owner' from public.teams;
    insert into bench.memberships (team_id, user_n, user_id, role)
    select distinct on (t.id, u.id)
        t.id, u.n, u.id,
        case when pick.r < 0.1 then 'admin' when pick.r < 0.5 then 'editor' else 'viewer' end::public.team_role
    from bench.users as u
    cross join generate_series(1, p_teams_per_user) as k
    cross join lateral (
        select 1 + floor(random() * p_count)::integer as team_n, random() as r, u.n + k * 0 as dep
    ) as pick
    inner join bench.teams as t on t.n = pick.team_n
    where not exists (select 1 from public.teams as owned where owned.id = t.id and owned.owner_id = u.id);
$$;

-- Members of users numbered p_first..p_last; run in slices, in parallel.
create function bench.load_members(p_first integer, p_last integer)
returns void
language sql
as $$
    insert into public.team_members (team_id, user_id, role)
    select team_id, user_id, role from bench.memberships
    where user_n between p_first and p_last
    order by user_n;
$$;

-- projects and team links ----------------------------------------------------------------

-- Visibility: 1% public, 44% team, 55% private. Every non-private project is linked to one
-- or two of its owner's teams at viewer (40%), editor (45%) or admin (15%) level.
create table bench.links (
    project_n integer not null,
    team_id uuid not null,
    access_level public.team_role not null,
    primary key (project_n, team_id)
);

create function bench.plan_projects(p_per_user integer)
returns void
language sql
as $$
    select setseed(0.44);
    insert into bench.projects (n, id, owner_id, visibility)
    select
        row_number() over (order by u.n, k), gen_random_uuid(), u.id,
        case when pick.r < 0.01 then 'public' when pick.r < 0.45 then 'team' else 'private' end::public.project_visibility
    from bench.users as u
    cross join generate_series(1, p_per_user) as k
    cross join lateral (select random() as r, u.n + k * 0 as dep) as pick;
    insert into bench.links (project_n, team_id, access_level)
    select
        p.n, chosen.team_id,
        case when pick.r < 0.4 then 'viewer' when pick.r < 0.85 then 'editor' else 'admin' end::public.team_role
    from bench.projects as p
    cross join lateral (
        select mine.team_id from (
            select m.team_id from bench.memberships as m where m.user_id = p.owner_id
            union all
            select t.id from public.teams as t where t.owner_id = p.owner_id
        ) as mine
        order by random()
        limit case when random() < 0.3 then 2 else 1 end
    ) as chosen
    cross join lateral (select random() as r, chosen.team_id as dep) as pick
    where p.visibility <> 'private';
$$;

-- Projects numbered p_first..p_last and their links; run in slices, in parallel.
create function bench.load_projects(p_first integer, p_last integer)
returns void
language sql
as $$
    insert into public.projects (id, owner_id, name, visibility, created_at)
    select p.id, p.owner_id, 'Project ' || p.n, p.visibility, now() - (p.n % 400) * interval '1 day'
    from bench.projects as p
    where p.n between p_first and p_last
    order by p.n;
    insert into public.project_teams (project_id, team_id, access_level, linked_by)
    select p.id, l.team_id, l.access_level, p.owner_id
    from bench.links as l
    inner join bench.projects as p on l.project_n = p.n
    where p.n between p_first and p_last
    order by p.n;
$$;

-- Who may create generations in each project: its owner and the editors and admins of its
-- teams (through a link at editor level or more, unless the project is private).
create function bench.find_writers()
returns void
language sql
as $$
    update bench.projects as b
    set writers = (
        select array_agg(w.user_id order by w.user_id)
        from (
            select b.owner_id as user_id
            union
            select tm.user_id
            from public.project_teams as pt
            inner join public.team_members as tm on pt.team_id = tm.team_id
            where pt.project_id = b.id and b.visibility <> 'private' and least(tm.role, pt.access_level) >= 'editor'
        ) as w
    );
    insert into bench.models (n, id, credit_cost)
    select row_number() over (order by id), id, credit_cost from public.models;
$$;

-- generations and shares -----------------------------------------------------------------

-- Generations numbered p_first..p_last land in random projects with timestamps over the
-- last year; 80% are made by the project owner, the rest by another writer. A fraction
-- p_share of them is shared with one of the creator's teams at viewer, editor or admin.
create function bench.load_generations(p_first integer, p_last integer, p_share double precision)
returns void
language sql
as $$
    select setseed(0.45 + p_first::double precision / 1e9);
    with picked as (
        select
            i,
            1 + floor(random() * (select count(*) from bench.projects))::integer as project_n,
            1 + floor(random() * (select count(*) from bench.models))::integer as model_n,
            random() as r,
            now() - random() * interval '365 days' as at
        from generate_series(p_first, p_last) as i
    ),

    inserted as (
        insert into public.generations (
            owner_id, project_id, model_id, prompt, status, cost, idempotency_key,
            outputs, created_at, updated_at, completed_at
        )
        select
            case
                when picked.r < 0.8 then p.owner_id
                else p.writers[1 + floor(random() * cardinality(p.writers))::integer]
            end,
            p.id, m.id, 'bench prompt ' || picked.i, 'completed', m.credit_cost,
            'bench-' || picked.i,
            jsonb_build_array(jsonb_build_object('url', 'https://media.example/' || picked.i || '.png')),
            picked.at, picked.at, picked.at
        from picked
        inner join bench.projects as p on p.n = picked.project_n
        inner join bench.models as m on m.n = picked.model_n
        returning id, owner_id
    )

    insert into public.generation_shares (generation_id, team_id, role, shared_by)
    select
        shared.id, chosen.team_id,
        case when chosen.r < 0.5 then 'viewer' when chosen.r < 0.85 then 'editor' else 'admin' end::public.team_role,
        shared.owner_id
    from (select * from inserted where random() < p_share) as shared
    cross join lateral (
        select tm.team_id, random() as r from public.team_members as tm
        where tm.user_id = shared.owner_id
        order by random()
        limit 1
    ) as chosen;
$$;

-- checks --------------------------------------------------------------------------------

-- Rows of derived access state that differ from their definition (private.check_access);
-- 0 means exact.
create function bench.access_drift()
returns bigint
language sql
as $$
    select count(*) from private.check_access()
$$;

create function bench.counts()
returns jsonb
language sql
as $$
    select jsonb_build_object(
        'users', (select count(*) from public.profiles),
        'suspended_users', (select count(*) from public.profiles where status = 'suspended'),
        'teams', (select count(*) from public.teams),
        'team_members', (select count(*) from public.team_members),
        'projects', (select count(*) from public.projects),
        'public_projects', (select count(*) from public.projects where visibility = 'public'),
        'team_projects', (select count(*) from public.projects where visibility = 'team'),
        'project_team_links', (select count(*) from public.project_teams),
        'generations', (select count(*) from public.generations),
        'public_generations', (select count(*) from public.generations where project_is_public),
        'generation_shares', (select count(*) from public.generation_shares)
    )
$$;

-- The slice first..last of a batch whose numbering starts after p_offset, for parallel loads.
create function bench.load_generations_slice(
    p_first integer, p_last integer, p_offset integer, p_share double precision
)
returns void
language sql
as $$
    select bench.load_generations(p_offset + p_first, p_offset + p_last, p_share)
$$;
