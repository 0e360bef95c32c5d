-- What the scenarios measure on: (user, generation) pairs over every access path, and users
-- whose first page of visible generations is read. Labels come from the database's own
-- rule (private.generation_access), so the report can break timings down by path.

create function bench.authorize_samples(p_per_path integer)
returns table (user_id uuid, generation_id uuid, access_method text)
language sql
as $$
    with user_count as (select count(*)::integer as n from bench.users),

    candidates as (
        -- the creator
        (
            select g.owner_id as user_id, g.id as generation_id
            from public.generations as g
            order by random() limit p_per_path
        )
        union all
        -- the project owner, on a generation another writer made
        (
            select p.owner_id, g.id
            from public.generations as g
            inner join public.projects as p on g.project_id = p.id
            where g.owner_id <> p.owner_id
            order by random() limit p_per_path
        )
        union all
        -- a member of a team the project is linked to
        (
            select member.user_id, g.id
            from (
                select g.id, g.project_id
                from public.generations as g
                inner join public.projects as p on g.project_id = p.id and p.visibility = 'team'
                order by random() limit p_per_path * 2
            ) as g
            cross join lateral (
                select tm.user_id
                from public.project_teams as pt
                inner join public.team_members as tm on pt.team_id = tm.team_id
                where pt.project_id = g.project_id
                order by random() limit 1
            ) as member
            limit p_per_path
        )
        union all
        -- a member of a team the generation is shared with
        (
            select tm.user_id, gs.generation_id
            from public.generation_shares as gs
            inner join public.team_members as tm on gs.team_id = tm.team_id
            order by random() limit p_per_path
        )
        union all
        -- any signed-in user, on a public project
        (
            select u.id, g.id
            from (
                select g.id
                from public.generations as g
                inner join public.projects as p on g.project_id = p.id and p.visibility = 'public'
                order by random() limit p_per_path
            ) as g
            inner join bench.users as u on u.n = 1 + abs(hashtext(g.id::text)) % (select n from user_count)
        )
        union all
        -- a stranger, on someone else's private project
        (
            select u.id, g.id
            from (
                select g.id
                from public.generations as g
                inner join public.projects as p on g.project_id = p.id and p.visibility = 'private'
                order by random() limit p_per_path
            ) as g
            inner join bench.users as u on u.n = 1 + abs(hashtext(g.id::text)) % (select n from user_count)
        )
        union all
        -- a suspended user, on their own generation
        (
            select g.owner_id, g.id
            from public.generations as g
            inner join public.profiles as pr on g.owner_id = pr.id and pr.status = 'suspended'
            order by random() limit p_per_path
        )
    )

    select c.user_id, c.generation_id, coalesce(a.via, 'denied')
    from candidates as c
    left join lateral private.generation_access(c.generation_id, c.user_id) as a on true
$$;

comment on function bench.authorize_samples(integer) is
'About p_per_path (user, generation) pairs per access path, labelled with the path that wins.';

-- The default list's rule written out over the source tables: what the caller created,
-- what is in projects they own or reach through a team (unless private), and what is
-- shared with their teams. Public work is its own feed and not counted here.
create function bench.visible_count(p_user_id uuid)
returns bigint
language sql
stable
as $$
    select count(*)
    from public.generations as g
    where
        g.owner_id = p_user_id
        or g.project_id in (
            select p.id from public.projects as p
            where p.owner_id = p_user_id
            union all
            select pt.project_id
            from public.project_teams as pt
            inner join public.team_members as tm on pt.team_id = tm.team_id
            inner join public.projects as p on pt.project_id = p.id
            where tm.user_id = p_user_id and p.visibility <> 'private'
        )
        or g.id in (
            select gs.generation_id
            from public.generation_shares as gs
            inner join public.team_members as tm on gs.team_id = tm.team_id
            where tm.user_id = p_user_id
        )
$$;

-- Active users for the list scenario, with how many generations each can see.
create function bench.list_users(p_count integer)
returns table (user_id uuid, visible bigint)
language sql
as $$
    select p.id, bench.visible_count(p.id)
    from public.profiles as p
    where p.status = 'active'
    order by random()
    limit p_count
$$;

-- A live auth.sessions row per user, as sign-in creates: the app refuses tokens whose
-- session does not exist.
create function bench.open_sessions(p_user_ids uuid[])
returns table (user_id uuid, session_id uuid)
language sql
as $$
    insert into auth.sessions (id, user_id, created_at, updated_at, aal)
    select gen_random_uuid(), u.id, now(), now(), 'aal1'
    from unnest(p_user_ids) as u (id)
    returning auth.sessions.user_id, auth.sessions.id
$$;
