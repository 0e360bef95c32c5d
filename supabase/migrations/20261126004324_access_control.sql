-- Authorization: who may read and act on projects and generations.
--
-- Paths to a role, highest wins: the generation's creator (direct_ownership, owner), the
-- project's owner (project_owner, owner), a team the project is linked to (project_team),
-- a team the generation is shared with (generation_share), a public project (public,
-- viewer). Through a team the role is the lower of the member's role and the link's level.
--
-- private.project_access flattens the first three project paths per (user, project). It is
-- maintained by triggers in the same transaction as the change, so a revocation holds from
-- the next statement on; it is never a lagging cache.

-- tables --------------------------------------------------------------------------------

create table private.project_access (
    user_id uuid not null references public.profiles (id) on delete cascade,
    project_id uuid not null references public.projects (id) on delete cascade,
    role public.team_role not null,
    via text not null check (via in ('project_owner', 'project_team')),
    primary key (user_id, project_id)
);

comment on table private.project_access is
'Flattened (user, project) -> best role via ownership or team links; trigger-maintained, never stale.';

-- the primary key serves "my projects"; maintenance looks up by project
create index project_access_project_id_idx on private.project_access (project_id);

-- the definition of truth the table is kept equal to
create view private.project_access_source as
select
    p.owner_id as user_id,
    p.id as project_id,
    'owner'::public.team_role as role,
    'project_owner'::text as via
from public.projects as p
union all
select
    tm.user_id,
    pt.project_id,
    max(least(tm.role, pt.access_level)) as role,
    'project_team'::text as via
from public.project_teams as pt
inner join public.projects as p on pt.project_id = p.id and p.visibility <> 'private'
inner join public.team_members as tm on pt.team_id = tm.team_id and p.owner_id <> tm.user_id
group by tm.user_id, pt.project_id;

comment on view private.project_access_source is 'What private.project_access must contain.';

-- helpers -------------------------------------------------------------------------------

create function private.permissions_for(p_role public.team_role)
returns text[]
language plpgsql
immutable
set search_path = ''
as $$
begin
    return case
        when p_role >= 'admin' then array['read', 'write', 'share', 'delete']
        when p_role = 'editor' then array['read', 'write']
        when p_role = 'viewer' then array['read']
        else array[]::text[]
    end;
end;
$$;

comment on function private.permissions_for(public.team_role) is
'owner/admin: read, write, share, delete; editor: read, write; viewer: read.';

create function private.project_ids_for_caller(p_min_role public.team_role default 'viewer')
returns setof uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
    return query
    select pa.project_id from private.project_access as pa
    where pa.user_id = auth.uid() and pa.role >= p_min_role;
    if p_min_role = 'viewer' then
        return query select p.id from public.projects as p where p.visibility = 'public';
    end if;
end;
$$;

comment on function private.project_ids_for_caller(public.team_role) is
'Projects where the caller holds at least p_min_role; policies call it wrapped in array(select ...).';

grant execute on function private.project_ids_for_caller(public.team_role) to authenticated;

create function private.shared_generation_ids_for_caller(p_min_role public.team_role default 'viewer')
returns setof uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
    return query
    select gs.generation_id
    from public.generation_shares as gs
    inner join public.team_members as tm on gs.team_id = tm.team_id
    where tm.user_id = auth.uid() and least(tm.role, gs.role) >= p_min_role;
end;
$$;

comment on function private.shared_generation_ids_for_caller(public.team_role) is
'Generations shared with the caller''s teams at an effective role of at least p_min_role.';

grant execute on function private.shared_generation_ids_for_caller(public.team_role) to authenticated;

-- The best (role, path) a user holds on a generation; no row when none or not active.
create function private.generation_access(p_generation_id uuid, p_user_id uuid)
returns table (role public.team_role, via text)
language plpgsql
stable
set search_path = ''
as $$
begin
    return query
    with target as (
        select g.owner_id, g.project_id
        from public.generations as g
        where g.id = p_generation_id
    ),

    paths as (
        select 'owner'::public.team_role as role, 'direct_ownership'::text as via, 1 as rank
        from target where target.owner_id = p_user_id
        union all
        select pa.role, pa.via, case pa.via when 'project_owner' then 2 else 3 end
        from target
        inner join private.project_access as pa
            on pa.project_id = target.project_id and pa.user_id = p_user_id
        union all
        select least(tm.role, gs.role), 'generation_share', 4
        from public.generation_shares as gs
        inner join public.team_members as tm on gs.team_id = tm.team_id and tm.user_id = p_user_id
        where gs.generation_id = p_generation_id
        union all
        select 'viewer', 'public', 5
        from target
        inner join public.projects as p on target.project_id = p.id and p.visibility = 'public'
    )

    select paths.role, paths.via
    from paths
    where exists (select 1 from public.profiles as pr where pr.id = p_user_id and pr.status = 'active')
    order by paths.role desc, paths.rank
    limit 1;
end;
$$;

comment on function private.generation_access(uuid, uuid) is
'Best role and path of a user on a generation (the rules in this file''s header).';

create function private.project_role(p_project_id uuid, p_user_id uuid)
returns table (role public.team_role, via text)
language plpgsql
stable
set search_path = ''
as $$
begin
    return query
    select paths.role, paths.via
    from (
        select pa.role, pa.via
        from private.project_access as pa
        where pa.project_id = p_project_id and pa.user_id = p_user_id
        union all
        select 'viewer'::public.team_role, 'public'
        from public.projects as p
        where p.id = p_project_id and p.visibility = 'public'
    ) as paths
    where exists (select 1 from public.profiles as pr where pr.id = p_user_id and pr.status = 'active')
    order by paths.role desc
    limit 1;
end;
$$;

comment on function private.project_role(uuid, uuid) is 'Best role and path of a user on a project.';

create function private.access_document(p_role public.team_role, p_via text)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
begin
    return jsonb_build_object(
        'access_granted', p_role is not null,
        'access_method', p_via,
        'effective_role', p_role,
        'permissions', to_jsonb(private.permissions_for(p_role))
    );
end;
$$;

comment on function private.access_document(public.team_role, text) is
'The authorization answer in the shape clients use (the app adds response_time_ms and cache_hit).';

-- 404 when the caller cannot read the generation (no hint it exists), 403 when too low a role
create function private.require_generation_role(p_generation_id uuid, p_min_role public.team_role)
returns public.team_role
language plpgsql
stable
set search_path = ''
as $$
declare
    v_role public.team_role;
begin
    select a.role into v_role from private.generation_access(p_generation_id, (select auth.uid())) as a;
    if v_role is null then
        perform private.raise_error(404, 'generation not found');
    end if;
    if v_role < p_min_role then
        perform private.raise_error(403, format('this needs the %s role on the generation', p_min_role));
    end if;
    return v_role;
end;
$$;

comment on function private.require_generation_role(uuid, public.team_role) is
'Caller''s generation role if at least p_min_role; 404 when unreadable, 403 when too low.';

create function private.require_project_role(p_project_id uuid, p_min_role public.team_role)
returns public.team_role
language plpgsql
stable
set search_path = ''
as $$
declare
    v_role public.team_role;
begin
    select a.role into v_role from private.project_role(p_project_id, (select auth.uid())) as a;
    if v_role is null then
        perform private.raise_error(404, 'project not found');
    end if;
    if v_role < p_min_role then
        perform private.raise_error(403, format('this needs the %s role on the project', p_min_role));
    end if;
    return v_role;
end;
$$;

comment on function private.require_project_role(uuid, public.team_role) is
'Caller''s project role if at least p_min_role; 404 when unreadable, 403 when too low.';

-- triggers ------------------------------------------------------------------------------

create function private.sync_project_access(p_project_ids uuid[])
returns void
language sql
set search_path = ''
as $$
    delete from private.project_access where project_id = any(p_project_ids);
    insert into private.project_access (user_id, project_id, role, via)
    select s.user_id, s.project_id, s.role, s.via
    from private.project_access_source as s
    where s.project_id = any(p_project_ids);
$$;

comment on function private.sync_project_access(uuid[]) is
'Recomputes the flattened access rows of some projects from their source rows.';

-- All of one user's rows, not just one team's: when a team is deleted its links and members
-- cascade in either order, and only a whole-user recompute is right for both orders.
create function private.sync_user_access(p_user_id uuid)
returns void
language sql
set search_path = ''
as $$
    delete from private.project_access where user_id = p_user_id;
    insert into private.project_access (user_id, project_id, role, via)
    select s.user_id, s.project_id, s.role, s.via
    from private.project_access_source as s
    where s.user_id = p_user_id;
$$;

comment on function private.sync_user_access(uuid) is
'Recomputes the flattened access rows of one user from their source rows.';

create function private.on_project_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.sync_project_access(array[new.id]);
    return null;
end;
$$;

comment on function private.on_project_change() is 'Keeps project_access equal to its source for a project.';

create trigger projects_sync_access
after insert or update of owner_id, visibility on public.projects
for each row execute function private.on_project_change();

create function private.on_project_team_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.sync_project_access(array[coalesce(new.project_id, old.project_id)]);
    return null;
end;
$$;

comment on function private.on_project_team_change() is 'Keeps project_access current when links change.';

create trigger project_teams_sync_access
after insert or update or delete on public.project_teams
for each row execute function private.on_project_team_change();

create function private.on_team_member_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    if tg_op = 'INSERT' then
        perform private.sync_user_access(new.user_id);
    elsif tg_op = 'DELETE' then
        perform private.sync_user_access(old.user_id);
    else
        perform private.sync_user_access(old.user_id);
        if new.user_id <> old.user_id then
            perform private.sync_user_access(new.user_id);
        end if;
    end if;
    return null;
end;
$$;

comment on function private.on_team_member_change() is 'Keeps project_access current when members change.';

create trigger team_members_sync_access
after insert or update or delete on public.team_members
for each row execute function private.on_team_member_change();

-- policies ------------------------------------------------------------------------------

-- owner_id is checked directly too: INSERT ... RETURNING reads the new row before the
-- after-trigger has flattened it into project_access
create policy "readers can read projects"
on public.projects for select to authenticated
using (
    (select private.is_active_user())
    and (owner_id = (select auth.uid()) or id = any(array(select private.project_ids_for_caller())))
);

create policy "active users can create their own projects"
on public.projects for insert to authenticated
with check ((select private.is_active_user()) and owner_id = (select auth.uid()));

create policy "admins can update projects"
on public.projects for update to authenticated
using ((select private.is_active_user()) and id = any(array(select private.project_ids_for_caller('admin'))))
with check (id = any(array(select private.project_ids_for_caller('admin'))));

create policy "admins can delete projects"
on public.projects for delete to authenticated
using ((select private.is_active_user()) and id = any(array(select private.project_ids_for_caller('admin'))));

-- a link names a team: members of that team and the project's admins see it, nobody else
create policy "team members and project admins can read project links"
on public.project_teams for select to authenticated
using (
    (select private.is_active_user())
    and (
        team_id = any(array(select private.team_ids_for_caller()))
        or project_id = any(array(select private.project_ids_for_caller('admin')))
    )
);

create policy "readers can read generations"
on public.generations for select to authenticated
using (
    (select private.is_active_user())
    and (
        owner_id = (select auth.uid())
        or project_id = any(array(select private.project_ids_for_caller()))
        or id = any(array(select private.shared_generation_ids_for_caller()))
    )
);

create policy "editors can update generations"
on public.generations for update to authenticated
using (
    (select private.is_active_user())
    and (
        owner_id = (select auth.uid())
        or project_id = any(array(select private.project_ids_for_caller('editor')))
        or id = any(array(select private.shared_generation_ids_for_caller('editor')))
    )
)
with check (true);

create policy "admins can delete generations"
on public.generations for delete to authenticated
using (
    (select private.is_active_user())
    and (
        owner_id = (select auth.uid())
        or project_id = any(array(select private.project_ids_for_caller('admin')))
        or id = any(array(select private.shared_generation_ids_for_caller('admin')))
    )
);

-- a share names a team: members of that team and those who may share the generation see it
create policy "team members and generation admins can read shares"
on public.generation_shares for select to authenticated
using (
    (select private.is_active_user())
    and (
        team_id = any(array(select private.team_ids_for_caller()))
        or generation_id = any(array(select private.shared_generation_ids_for_caller('admin')))
        or exists (
            select 1 from public.generations as g
            where
                g.id = generation_shares.generation_id
                and (
                    g.owner_id = (select auth.uid())
                    or g.project_id = any(array(select private.project_ids_for_caller('admin')))
                )
        )
    )
);

-- RPCs ----------------------------------------------------------------------------------

create function public.authorize_generation(p_generation_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
    v_role public.team_role;
    v_via text;
begin
    select a.role, a.via into v_role, v_via from private.generation_access(p_generation_id, auth.uid()) as a;
    return private.access_document(v_role, v_via);
end;
$$;

comment on function public.authorize_generation(uuid) is
'The caller''s access to a generation (granted, method, role, permissions); unknown looks like unreadable.';

grant execute on function public.authorize_generation(uuid) to authenticated;

create function public.authorize_project(p_project_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
    v_role public.team_role;
    v_via text;
begin
    select a.role, a.via into v_role, v_via from private.project_role(p_project_id, auth.uid()) as a;
    return private.access_document(v_role, v_via);
end;
$$;

comment on function public.authorize_project(uuid) is
'The caller''s access to a project, in the authorize_generation shape.';

grant execute on function public.authorize_project(uuid) to authenticated;

create function public.link_project_team(
    p_project_id uuid, p_team_id uuid, p_access_level public.team_role default 'viewer'
)
returns public.project_teams
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_link public.project_teams;
begin
    perform private.require_project_role(p_project_id, 'admin');
    perform private.require_team_role(p_team_id, 'viewer');
    if p_access_level is null or p_access_level = 'owner' then
        perform private.raise_error(400, 'access_level must be viewer, editor or admin');
    end if;

    insert into public.project_teams (project_id, team_id, access_level, linked_by)
    values (p_project_id, p_team_id, p_access_level, v_uid)
    on conflict (project_id, team_id) do update set access_level = excluded.access_level
    returning * into v_link;

    -- linking is sharing: a private project becomes visible to its teams
    update public.projects set visibility = 'team', updated_at = now()
    where id = p_project_id and visibility = 'private';

    perform private.audit('project.team_linked', v_uid, 'project', p_project_id::text, p_team_id,
        jsonb_build_object('access_level', p_access_level));
    return v_link;
end;
$$;

comment on function public.link_project_team(uuid, uuid, public.team_role) is
'Project admins link a project to one of their teams at a level below owner (a private project becomes team-visible).';

grant execute on function public.link_project_team(uuid, uuid, public.team_role) to authenticated;

create function public.unlink_project_team(p_project_id uuid, p_team_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
begin
    perform private.require_project_role(p_project_id, 'admin');
    delete from public.project_teams where project_id = p_project_id and team_id = p_team_id;
    if not found then
        perform private.raise_error(404, 'this project is not linked to that team');
    end if;
    perform private.audit('project.team_unlinked', v_uid, 'project', p_project_id::text, p_team_id, '{}'::jsonb);
end;
$$;

comment on function public.unlink_project_team(uuid, uuid) is 'Project admins remove a team link; access ends at once.';

grant execute on function public.unlink_project_team(uuid, uuid) to authenticated;

create function public.share_generation(
    p_generation_id uuid, p_team_id uuid, p_role public.team_role default 'viewer'
)
returns public.generation_shares
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_share public.generation_shares;
begin
    perform private.require_generation_role(p_generation_id, 'admin');
    perform private.require_team_role(p_team_id, 'viewer');
    if p_role is null or p_role = 'owner' then
        perform private.raise_error(400, 'role must be viewer, editor or admin');
    end if;

    insert into public.generation_shares (generation_id, team_id, role, shared_by)
    values (p_generation_id, p_team_id, p_role, v_uid)
    on conflict (generation_id, team_id) do update set role = excluded.role
    returning * into v_share;

    perform private.audit('generation.shared', v_uid, 'generation', p_generation_id::text, p_team_id,
        jsonb_build_object('role', p_role));
    return v_share;
end;
$$;

comment on function public.share_generation(uuid, uuid, public.team_role) is
'Users with share permission share a generation with one of their teams at a role below owner.';

grant execute on function public.share_generation(uuid, uuid, public.team_role) to authenticated;

create function public.unshare_generation(p_generation_id uuid, p_team_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
begin
    perform private.require_generation_role(p_generation_id, 'admin');
    delete from public.generation_shares where generation_id = p_generation_id and team_id = p_team_id;
    if not found then
        perform private.raise_error(404, 'this generation is not shared with that team');
    end if;
    perform private.audit('generation.unshared', v_uid, 'generation', p_generation_id::text, p_team_id, '{}'::jsonb);
end;
$$;

comment on function public.unshare_generation(uuid, uuid) is
'Users with share permission end a share; access ends at once.';

grant execute on function public.unshare_generation(uuid, uuid) to authenticated;

create function public.team_permissions(p_team_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
    v_role public.team_role;
begin
    perform private.require_active_user();
    v_role := private.require_team_role(p_team_id, 'viewer');
    return jsonb_build_object(
        'team_id', p_team_id,
        'role', v_role,
        'permissions', to_jsonb(
            private.permissions_for(v_role)
            || case when v_role >= 'admin' then array['invite', 'manage_members'] else array[]::text[] end
            || case when v_role = 'owner' then array['transfer_ownership'] else array[]::text[] end
        )
    );
end;
$$;

comment on function public.team_permissions(uuid) is
'The caller''s team role and what it allows on work shared with the team, plus member management; 404 for others.';

grant execute on function public.team_permissions(uuid) to authenticated;
