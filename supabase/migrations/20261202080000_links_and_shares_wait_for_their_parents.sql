-- Linking a project or sharing a generation while it is being deleted answers 404.
--
-- Both RPCs checked the caller's roles under their statement's snapshot and then inserted,
-- so a delete of the project (or generation, or team) that committed in between failed
-- the insert on its foreign key: a 400 invalid_reference instead of the 404 a missing
-- project gets. Each now takes a key-share lock on the rows it will point to before it
-- checks anything: a delete in flight commits first, and the checks, which run after it,
-- find the row gone.

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
    perform 1 from public.projects where id = p_project_id for key share;
    perform 1 from public.teams where id = p_team_id for key share;
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
    perform 1 from public.generations where id = p_generation_id for key share;
    perform 1 from public.teams where id = p_team_id for key share;
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
