-- A project's shape belongs to its owner; a team link manages content only.
--
-- Renaming, deleting, changing the visibility of a project and linking or unlinking it to
-- teams are the owner's. A role reached through a team link, even admin, manages the
-- project's generations and their shares, never the project's existence or audience (a link
-- admin could otherwise make it public, delete it with everyone's work, or re-link it to
-- their own teams at admin and keep that after being removed).
--
-- Putting something into a team (linking a project, sharing a generation) needs at least
-- editor in that team; the team's owner and admins may take out anything put into it. A
-- project set back to private hides its links and its usage from the teams.

-- policies ------------------------------------------------------------------------------

drop policy "admins can update projects" on public.projects;
create policy "owners can update their projects"
on public.projects for update to authenticated
using ((select private.is_active_user()) and owner_id = (select auth.uid()))
with check ((select private.is_active_user()) and owner_id = (select auth.uid()));

drop policy "admins can delete projects" on public.projects;
create policy "owners can delete their projects"
on public.projects for delete to authenticated
using ((select private.is_active_user()) and owner_id = (select auth.uid()));

-- a link names a team and a project: the project's owner sees it, and so do the team's
-- members while the project is not private
drop policy "team members and project admins can read project links" on public.project_teams;
create policy "project owners and the team's members can read links of shared projects"
on public.project_teams for select to authenticated
using (
    (select private.is_active_user())
    and (
        project_id in (select p.id from public.projects as p where p.owner_id = (select auth.uid()))
        or (
            team_id in (select private.team_ids_for_caller())
            and project_id in (select private.project_ids_for_caller())
        )
    )
);

-- RPCs ----------------------------------------------------------------------------------

create or replace function public.link_project_team(
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
    perform private.require_project_role(p_project_id, 'owner');
    perform private.require_team_role(p_team_id, 'editor');
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
'The project''s owner links it to a team where she is at least editor, at a level below owner.';

-- the project's owner, or the owner or an admin of the team it was put into
create or replace function public.unlink_project_team(p_project_id uuid, p_team_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
begin
    if coalesce(private.team_role_of(p_team_id, v_uid) < 'admin', true) then
        perform private.require_project_role(p_project_id, 'owner');
    end if;
    delete from public.project_teams where project_id = p_project_id and team_id = p_team_id;
    if not found then
        perform private.raise_error(404, 'this project is not linked to that team');
    end if;
    perform private.audit('project.team_unlinked', v_uid, 'project', p_project_id::text, p_team_id, '{}'::jsonb);
end;
$$;

comment on function public.unlink_project_team(uuid, uuid) is
'The project''s owner, or the team''s owner or admins, remove a link; access ends at once.';

create or replace function public.share_generation(
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
    perform private.require_team_role(p_team_id, 'editor');
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
'Users with share permission share a generation with a team where they are at least editor, at a role below owner.';

-- share permission on the generation, or the owner or an admin of the team it was shared with
create or replace function public.unshare_generation(p_generation_id uuid, p_team_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
begin
    if coalesce(private.team_role_of(p_team_id, v_uid) < 'admin', true) then
        perform private.require_generation_role(p_generation_id, 'admin');
    end if;
    delete from public.generation_shares where generation_id = p_generation_id and team_id = p_team_id;
    if not found then
        perform private.raise_error(404, 'this generation is not shared with that team');
    end if;
    perform private.audit('generation.unshared', v_uid, 'generation', p_generation_id::text, p_team_id, '{}'::jsonb);
end;
$$;

comment on function public.unshare_generation(uuid, uuid) is
'Users with share permission, or the team''s owner or admins, end a share; access ends at once.';

-- analytics -----------------------------------------------------------------------------

-- Usage per team, project and day: team_usage adds up only the projects still linked to the
-- team and not private at the time of reading, so unlinking or making a project private
-- hides its usage at once, not at the next refresh.
drop materialized view analytics.team_daily_usage;
create materialized view analytics.team_daily_usage as
select
    pt.team_id,
    g.project_id,
    (g.created_at at time zone 'utc')::date as day,
    count(*)::integer as generations,
    count(*) filter (where g.status = 'completed')::integer as completed,
    count(*) filter (where g.status = 'failed')::integer as failed,
    coalesce(sum(g.cost) filter (where g.status not in ('failed', 'cancelled')), 0)::bigint as credits_spent
from public.generations as g
inner join public.project_teams as pt on g.project_id = pt.project_id
group by pt.team_id, g.project_id, day;

create unique index team_daily_usage_key on analytics.team_daily_usage (team_id, project_id, day);

revoke all on analytics.team_daily_usage from public, anon, authenticated;
grant select on analytics.team_daily_usage to service_role;

create or replace function public.team_usage(p_team_id uuid, p_days integer default 30)
returns table (day date, generations integer, completed integer, failed integer, credits_spent bigint)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
    perform private.require_active_user();
    perform private.require_team_role(p_team_id, 'viewer');
    if p_days is null or p_days not between 1 and 366 then
        perform private.raise_error(400, 'days must be between 1 and 366');
    end if;
    return query
    select
        u.day,
        sum(u.generations)::integer,
        sum(u.completed)::integer,
        sum(u.failed)::integer,
        sum(u.credits_spent)::bigint
    from analytics.team_daily_usage as u
    inner join public.project_teams as pt on u.team_id = pt.team_id and u.project_id = pt.project_id
    inner join public.projects as p on u.project_id = p.id and p.visibility <> 'private'
    where u.team_id = p_team_id and u.day > (now() at time zone 'utc')::date - p_days
    group by u.day
    order by u.day;
end;
$$;

comment on function public.team_usage(uuid, integer) is
'Daily usage of the projects linked to a team and not private, for its members only.';
