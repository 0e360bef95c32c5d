-- Access without a flattened table: nothing to go stale.
--
-- A caller's team-derived roles are read at each statement from team_members, project_teams
-- and projects, starting from the caller's own memberships (all index-backed), instead of
-- from private.project_access. That table was derived state kept by triggers that read
-- their sources without a lock: a member's own concurrent write could re-insert a grant an
-- owner was revoking, and two writers could collide on its primary key. With no copy there
-- is no race: a revocation is visible to every statement that starts after its commit.
--
-- Public visibility becomes a per-row predicate, so no policy lists every public project:
-- projects test their own `visibility`, generations a copy of their project's publicity
-- (`project_is_public`). That copy is derived state, made exact by locking: writing a
-- generation into a project takes `for share` on the project row and copies its
-- visibility; changing a project's visibility (which holds the row lock that `for share`
-- waits for) rewrites the copy on that project's generations in the same transaction.
-- private.check_access() reports any drift.

-- columns -------------------------------------------------------------------------------

alter table public.generations add column project_is_public boolean not null default false;

comment on column public.generations.project_is_public is
'Copy of "its project is public", kept exact by triggers under a row lock on the project.';

update public.generations as g
set project_is_public = true
from public.projects as p
where g.project_id = p.id and p.visibility = 'public';

-- the public feed: newest first over public work only
create index generations_public_feed_idx on public.generations (created_at desc, id desc)
where project_is_public;

-- The default list reads each source (the caller's own rows, each reachable project) newest
-- first from these indexes; they carry every column the read policy tests, so those scans
-- are index-only and never visit the table for rows that do not make the page.
drop index public.generations_owner_id_idx;
create index generations_owner_id_idx on public.generations (owner_id, created_at desc, id desc)
include (project_id, project_is_public);
drop index public.generations_project_id_idx;
create index generations_project_id_idx on public.generations (project_id, created_at desc, id desc)
include (owner_id, project_is_public);
-- shared generations are found by id: this lets the list read their key and the policy's
-- columns without visiting the table
create index generations_id_covering_idx on public.generations (id)
include (created_at, owner_id, project_id, project_is_public);

-- drop the flattened table ----------------------------------------------------------------

drop trigger projects_sync_access on public.projects;
drop trigger project_teams_sync_access on public.project_teams;
drop trigger team_members_sync_access on public.team_members;
drop function private.on_project_change();
drop function private.on_project_team_change();
drop function private.on_team_member_change();
drop function private.sync_project_access(uuid[]);
drop function private.sync_user_access(uuid);
drop view private.project_access_source;
drop table private.project_access;

-- triggers ------------------------------------------------------------------------------

-- security definer: the copy must be the project's truth, whatever the writer may read
create function private.copy_project_visibility()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    if new.project_id is null then
        new.project_is_public := false;
        return new;
    end if;
    -- for share waits for an uncommitted visibility change and then reads its outcome; a
    -- visibility change waits for this transaction and then rewrites what it inserted
    select p.visibility = 'public' into new.project_is_public
    from public.projects as p
    where p.id = new.project_id
    for share;
    new.project_is_public := coalesce(new.project_is_public, false);
    return new;
end;
$$;

comment on function private.copy_project_visibility() is
'Trigger: a generation written into a project copies its publicity, under a share lock on the project row.';

revoke all on function private.copy_project_visibility() from public, anon, authenticated, service_role;

create trigger generations_copy_project_visibility
before insert or update of project_id, project_is_public on public.generations
for each row execute function private.copy_project_visibility();

create function private.publish_project_visibility()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    update public.generations
    set project_is_public = (new.visibility = 'public')
    where project_id = new.id and project_is_public <> (new.visibility = 'public');
    return null;
end;
$$;

comment on function private.publish_project_visibility() is
'Trigger: a project that becomes public or stops being public rewrites its generations'' copy in the same transaction.';

revoke all on function private.publish_project_visibility() from public, anon, authenticated, service_role;

create trigger projects_publish_visibility
after update of visibility on public.projects
for each row
when ((old.visibility = 'public') is distinct from (new.visibility = 'public'))
execute function private.publish_project_visibility();

-- helpers -------------------------------------------------------------------------------

-- Owned projects, and projects linked to one of the caller's teams unless private, at the
-- lower of team role and link level. Public projects are not listed: policies test
-- visibility per row. Bounded by the caller's own memberships and links. plpgsql, not sql:
-- its plan is cached per connection, and a policy may run it once per scanned table.
create or replace function private.project_ids_for_caller(p_min_role public.team_role default 'viewer')
returns setof uuid
language plpgsql
stable
security definer
set search_path = ''
rows 100
as $$
begin
    return query
    select p.id
    from public.projects as p
    where p.owner_id = (select auth.uid())
    union
    select pt.project_id
    from public.team_members as tm
    inner join public.project_teams as pt on tm.team_id = pt.team_id
    inner join public.projects as p on pt.project_id = p.id and p.visibility <> 'private'
    where tm.user_id = (select auth.uid()) and least(tm.role, pt.access_level) >= p_min_role;
end;
$$;

comment on function private.project_ids_for_caller(public.team_role) is
'Projects the caller owns or reaches through a team at p_min_role or more, never for being public; '
'policies call it as `in (select ...)`.';

create or replace function private.shared_generation_ids_for_caller(p_min_role public.team_role default 'viewer')
returns setof uuid
language plpgsql
stable
security definer
set search_path = ''
rows 100
as $$
begin
    return query
    select gs.generation_id
    from public.team_members as tm
    inner join public.generation_shares as gs on tm.team_id = gs.team_id
    where tm.user_id = (select auth.uid()) and least(tm.role, gs.role) >= p_min_role;
end;
$$;

comment on function private.shared_generation_ids_for_caller(public.team_role) is
'Generations shared with the caller''s teams at an effective role of at least p_min_role; '
'policies call it as `in (select ...)`.';

-- A few index probes: the generation with its project, the project's links joined to the
-- user's memberships, the generation's shares joined to the user's memberships.
create or replace function private.generation_access(p_generation_id uuid, p_user_id uuid)
returns table (role public.team_role, via text)
language plpgsql
stable
set search_path = ''
as $$
begin
    return query
    with target as (
        select g.owner_id, g.project_id, p.owner_id as project_owner_id, p.visibility
        from public.generations as g
        left join public.projects as p on g.project_id = p.id
        where g.id = p_generation_id
    ),

    paths as (
        select 'owner'::public.team_role as role, 'direct_ownership'::text as via, 1 as rank
        from target where target.owner_id = p_user_id
        union all
        select 'owner', 'project_owner', 2
        from target where target.project_owner_id = p_user_id
        union all
        select least(tm.role, pt.access_level), 'project_team', 3
        from target
        inner join public.project_teams as pt on target.project_id = pt.project_id
        inner join public.team_members as tm on pt.team_id = tm.team_id and tm.user_id = p_user_id
        where target.visibility <> 'private'
        union all
        select least(tm.role, gs.role), 'generation_share', 4
        from public.generation_shares as gs
        inner join public.team_members as tm on gs.team_id = tm.team_id and tm.user_id = p_user_id
        where gs.generation_id = p_generation_id
        union all
        select 'viewer', 'public', 5
        from target where target.visibility = 'public'
    )

    select paths.role, paths.via
    from paths
    where exists (select 1 from public.profiles as pr where pr.id = p_user_id and pr.status = 'active')
    order by paths.role desc, paths.rank
    limit 1;
end;
$$;

create or replace function private.project_role(p_project_id uuid, p_user_id uuid)
returns table (role public.team_role, via text)
language plpgsql
stable
set search_path = ''
as $$
begin
    return query
    with target as (
        select p.id, p.owner_id, p.visibility from public.projects as p where p.id = p_project_id
    )

    select paths.role, paths.via
    from (
        select 'owner'::public.team_role as role, 'project_owner'::text as via, 1 as rank
        from target where target.owner_id = p_user_id
        union all
        select least(tm.role, pt.access_level), 'project_team', 2
        from target
        inner join public.project_teams as pt on target.id = pt.project_id
        inner join public.team_members as tm on pt.team_id = tm.team_id and tm.user_id = p_user_id
        where target.visibility <> 'private'
        union all
        select 'viewer', 'public', 3
        from target where target.visibility = 'public'
    ) as paths
    where exists (select 1 from public.profiles as pr where pr.id = p_user_id and pr.status = 'active')
    order by paths.role desc, paths.rank
    limit 1;
end;
$$;

-- operators -----------------------------------------------------------------------------

create function private.check_access()
returns table (problem text, generation_id uuid, project_id uuid, stored boolean, expected boolean)
language sql
stable
set search_path = ''
as $$
    select
        'generations.project_is_public differs from its project''s visibility',
        g.id,
        g.project_id,
        g.project_is_public,
        coalesce(p.visibility = 'public', false)
    from public.generations as g
    left join public.projects as p on g.project_id = p.id
    where g.project_is_public <> coalesce(p.visibility = 'public', false)
$$;

comment on function private.check_access() is
'Operators: every row of derived access state that differs from its definition; empty when exact.';

revoke all on function private.check_access() from public, anon, authenticated, service_role;

-- policies ------------------------------------------------------------------------------

drop policy "readers can read projects" on public.projects;
create policy "readers can read projects"
on public.projects for select to authenticated
using (
    (select private.is_active_user())
    and (
        owner_id = (select auth.uid())
        or visibility = 'public'
        or id in (select private.project_ids_for_caller())
    )
);

drop policy "admins can update projects" on public.projects;
create policy "admins can update projects"
on public.projects for update to authenticated
using ((select private.is_active_user()) and id in (select private.project_ids_for_caller('admin')))
with check ((select private.is_active_user()) and id in (select private.project_ids_for_caller('admin')));

drop policy "admins can delete projects" on public.projects;
create policy "admins can delete projects"
on public.projects for delete to authenticated
using ((select private.is_active_user()) and id in (select private.project_ids_for_caller('admin')));

drop policy "team members and project admins can read project links" on public.project_teams;
create policy "team members and project admins can read project links"
on public.project_teams for select to authenticated
using (
    (select private.is_active_user())
    and (
        team_id in (select private.team_ids_for_caller())
        or project_id in (select private.project_ids_for_caller('admin'))
    )
);

drop policy "readers can read generations" on public.generations;
-- cheapest first: a column, then the caller's shares (usually few), then her projects
create policy "readers can read generations"
on public.generations for select to authenticated
using (
    (select private.is_active_user())
    and (
        owner_id = (select auth.uid())
        or project_is_public
        or id in (select private.shared_generation_ids_for_caller())
        or project_id in (select private.project_ids_for_caller())
    )
);

-- the new row must pass the same test as the old one: an update cannot move a generation
-- out of the caller's reach
drop policy "editors can update generations" on public.generations;
create policy "editors can update generations"
on public.generations for update to authenticated
using (
    (select private.is_active_user())
    and (
        owner_id = (select auth.uid())
        or project_id in (select private.project_ids_for_caller('editor'))
        or id in (select private.shared_generation_ids_for_caller('editor'))
    )
)
with check (
    (select private.is_active_user())
    and (
        owner_id = (select auth.uid())
        or project_id in (select private.project_ids_for_caller('editor'))
        or id in (select private.shared_generation_ids_for_caller('editor'))
    )
);

drop policy "admins can delete generations" on public.generations;
create policy "admins can delete generations"
on public.generations for delete to authenticated
using (
    (select private.is_active_user())
    and (
        owner_id = (select auth.uid())
        or project_id in (select private.project_ids_for_caller('admin'))
        or id in (select private.shared_generation_ids_for_caller('admin'))
    )
);

drop policy "team members and generation admins can read shares" on public.generation_shares;
create policy "team members and generation admins can read shares"
on public.generation_shares for select to authenticated
using (
    (select private.is_active_user())
    and (
        team_id in (select private.team_ids_for_caller())
        or generation_id in (select private.shared_generation_ids_for_caller('admin'))
        or exists (
            select 1 from public.generations as g
            where
                g.id = generation_shares.generation_id
                and (
                    g.owner_id = (select auth.uid())
                    or g.project_id in (select private.project_ids_for_caller('admin'))
                )
        )
    )
);
