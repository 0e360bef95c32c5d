-- The cache scenarios' SQL (bench/scenarios/cache_*.py, hit_rate.py, propagation.py,
-- casbin_cost.py): the truth every cached answer is checked against, the workloads they
-- run, and the permission changes they make. Loaded by those scenarios (create or replace).

-- truth ---------------------------------------------------------------------------------

-- What public.authorize_generation answers this user, as PostgREST would call it for them.
create or replace function bench.authorize_as(p_user_id uuid, p_generation_id uuid)
returns jsonb
language plpgsql
as $$
begin
    perform set_config(
        'request.jwt.claims',
        json_build_object('sub', p_user_id, 'role', 'authenticated', 'aud', 'authenticated')::text,
        true
    );
    return public.authorize_generation(p_generation_id);
end;
$$;

-- The database's answers for many pairs at once: one round trip per checked batch.
create or replace function bench.truth(p_user_ids uuid[], p_generation_ids uuid[])
returns table (user_id uuid, generation_id uuid, answer jsonb)
language sql
as $$
    select pair.user_id, pair.generation_id, bench.authorize_as(pair.user_id, pair.generation_id)
    from unnest(p_user_ids, p_generation_ids) as pair (user_id, generation_id)
$$;

-- the mixed workload (hit_rate) ------------------------------------------------------------

-- p_users active team members, each with p_per_user generations they look at: some of
-- their own, some from projects they reach, some shared with their teams, one public, and
-- some they cannot read (a stranger's private project).
create or replace function bench.cache_workload(p_users integer, p_per_user integer)
returns table (user_id uuid, generation_id uuid)
language sql
as $$
    with chosen as (
        select pr.id
        from public.profiles as pr
        where pr.status = 'active' and exists (select from public.team_members as tm where tm.user_id = pr.id)
        order by random() limit p_users
    ),

    public_pool as (
        select g.id, row_number() over () as n
        from (
            select g.id from public.generations as g
            inner join public.projects as p on g.project_id = p.id and p.visibility = 'public'
            order by random() limit p_users
        ) as g
    ),

    private_pool as (
        select g.id, g.owner_id, row_number() over () as n
        from (
            select g.id, g.owner_id from public.generations as g
            inner join public.projects as p on g.project_id = p.id and p.visibility = 'private'
            order by random() limit p_users * 3
        ) as g
    ),

    numbered as (select chosen.id, row_number() over () as n from chosen),

    picks as (
        select u.id as user_id, own.id as generation_id
        from numbered as u
        cross join lateral (
            select g.id from public.generations as g where g.owner_id = u.id
            order by random() limit greatest(1, p_per_user / 5)
        ) as own
        union
        select u.id, reach.id
        from numbered as u
        cross join lateral (
            select g.id
            from (
                select p.id as project_id from public.projects as p where p.owner_id = u.id
                union
                select pt.project_id
                from public.team_members as tm
                inner join public.project_teams as pt on tm.team_id = pt.team_id
                inner join public.projects as p on pt.project_id = p.id and p.visibility <> 'private'
                where tm.user_id = u.id
            ) as reachable
            inner join public.generations as g on reachable.project_id = g.project_id
            where g.owner_id <> u.id
            order by random() limit greatest(1, p_per_user * 3 / 10)
        ) as reach
        union
        select u.id, shared.generation_id
        from numbered as u
        cross join lateral (
            select gs.generation_id
            from public.team_members as tm
            inner join public.generation_shares as gs on tm.team_id = gs.team_id
            where tm.user_id = u.id
            order by random() limit greatest(1, p_per_user / 5)
        ) as shared
        union
        select u.id, pub.id
        from numbered as u
        inner join public_pool as pub on pub.n = u.n
        union
        select u.id, other.id
        from numbered as u
        inner join private_pool as other
            on other.n between (u.n - 1) * 3 + 1 and (u.n - 1) * 3 + greatest(1, p_per_user / 5)
        where other.owner_id <> u.id
    )

    select picks.user_id, picks.generation_id from picks
$$;

-- What the workload's permission changes can touch.
create or replace function bench.workload_memberships(p_user_ids uuid[])
returns table (team_id uuid, user_id uuid, role public.team_role)
language sql
as $$
    select tm.team_id, tm.user_id, tm.role
    from public.team_members as tm
    where tm.user_id = any(p_user_ids) and tm.role <> 'owner'
$$;

create or replace function bench.workload_shares(p_generation_ids uuid[])
returns table (generation_id uuid, team_id uuid, role public.team_role)
language sql
as $$
    select gs.generation_id, gs.team_id, gs.role
    from public.generation_shares as gs
    where gs.generation_id = any(p_generation_ids)
$$;

create or replace function bench.workload_projects(p_generation_ids uuid[])
returns table (project_id uuid, visibility public.project_visibility)
language sql
as $$
    select distinct p.id, p.visibility
    from public.generations as g
    inner join public.projects as p on g.project_id = p.id
    where g.id = any(p_generation_ids)
$$;

-- permission changes, made as the database owner: the same rows and triggers as the RPCs --

create or replace function bench.remove_member(p_team_id uuid, p_user_id uuid)
returns void
language sql
as $$
    delete from public.team_members where team_id = p_team_id and user_id = p_user_id
$$;

create or replace function bench.add_member(p_team_id uuid, p_user_id uuid, p_role public.team_role)
returns void
language sql
as $$
    insert into public.team_members (team_id, user_id, role) values (p_team_id, p_user_id, p_role)
    on conflict (team_id, user_id) do update set role = excluded.role
$$;

create or replace function bench.set_member_role(p_team_id uuid, p_user_id uuid, p_role public.team_role)
returns void
language sql
as $$
    update public.team_members set role = p_role where team_id = p_team_id and user_id = p_user_id
$$;

create or replace function bench.unshare(p_generation_id uuid, p_team_id uuid)
returns void
language sql
as $$
    delete from public.generation_shares where generation_id = p_generation_id and team_id = p_team_id
$$;

create or replace function bench.share(p_generation_id uuid, p_team_id uuid, p_role public.team_role)
returns void
language sql
as $$
    insert into public.generation_shares (generation_id, team_id, role) values (p_generation_id, p_team_id, p_role)
    on conflict (generation_id, team_id) do update set role = excluded.role
$$;

create or replace function bench.set_visibility(p_project_id uuid, p_visibility public.project_visibility)
returns void
language sql
as $$
    update public.projects set visibility = p_visibility, updated_at = now() where id = p_project_id
$$;

-- revocation propagation ----------------------------------------------------------------

-- Shares that are a member's only way to a generation: ending the share, or the member's
-- membership, turns that member's grant into a denial. Returns who can make each change:
-- the generation's creator (may unshare) and the team's owner (may remove the member).
create or replace function bench.revocable_shares(p_count integer)
returns table (
    generation_id uuid, team_id uuid, share_role public.team_role, member_id uuid,
    member_role public.team_role, creator_id uuid, team_owner_id uuid
)
language sql
as $$
    select gs.generation_id, gs.team_id, gs.role, tm.user_id, tm.role, g.owner_id, owner.user_id
    from public.generation_shares as gs
    inner join public.generations as g on gs.generation_id = g.id
    inner join public.projects as p on g.project_id = p.id and p.visibility <> 'public'
    inner join public.team_members as tm on gs.team_id = tm.team_id and tm.role <> 'owner'
    inner join public.team_members as owner on gs.team_id = owner.team_id and owner.role = 'owner'
    where
        tm.user_id <> g.owner_id
        and exists (select from public.profiles as pr where pr.id = tm.user_id and pr.status = 'active')
        and exists (select from public.profiles as pr where pr.id = g.owner_id and pr.status = 'active')
        and exists (select from public.profiles as pr where pr.id = owner.user_id and pr.status = 'active')
        and not exists (select from private.project_role(g.project_id, tm.user_id))
        and not exists (
            select from public.generation_shares as other
            inner join public.team_members as also on other.team_id = also.team_id
            where other.generation_id = gs.generation_id and other.team_id <> gs.team_id and also.user_id = tm.user_id
        )
    order by random()
    limit p_count
$$;

-- the decision-cost comparison with pycasbin ------------------------------------------------

-- Everything the sampled decisions depend on, plus other team links up to p_links links:
-- one row per fact, as (kind, a, b, c). Suspended users hold nothing and are not listed
-- as active (the database denies them everything).
create or replace function bench.casbin_facts(p_generation_ids uuid[], p_links integer)
returns table (kind text, a text, b text, c text)
language sql
as $$
    with active as (select pr.id from public.profiles as pr where pr.status = 'active'),

    gens as (
        select g.id, g.owner_id, g.project_id from public.generations as g where g.id = any(p_generation_ids)
    ),

    needed_links as (
        select pt.project_id, pt.team_id
        from public.project_teams as pt
        inner join public.projects as p on pt.project_id = p.id and p.visibility <> 'private'
        where pt.project_id in (select gens.project_id from gens)
    ),

    other_links as (
        select pt.project_id, pt.team_id
        from public.project_teams as pt
        inner join public.projects as p on pt.project_id = p.id and p.visibility <> 'private'
        where pt.project_id not in (select gens.project_id from gens)
        order by random()
        limit greatest(0, p_links - (select count(*) from needed_links))
    )

    select 'member', tm.user_id::text, tm.role::text, tm.team_id::text
    from public.team_members as tm where tm.user_id in (select active.id from active)
    union all
    select 'team', t.id::text, null, null from public.teams as t
    union all
    select 'active', active.id::text, null, null from active
    union all
    select 'link', l.project_id::text, l.team_id::text, null from needed_links as l
    union all
    select 'link', l.project_id::text, l.team_id::text, null from other_links as l
    union all
    select 'share', gs.generation_id::text, gs.team_id::text, null
    from public.generation_shares as gs where gs.generation_id in (select gens.id from gens)
    union all
    select 'generation', gens.id::text, gens.project_id::text, gens.owner_id::text
    from gens where gens.owner_id in (select active.id from active)
    union all
    select 'generation', gens.id::text, gens.project_id::text, null
    from gens where gens.owner_id not in (select active.id from active)
    union all
    select 'project', p.id::text, p.visibility::text, case when p.owner_id in (select active.id from active) then p.owner_id::text end
    from public.projects as p where p.id in (select gens.project_id from gens)
$$;
