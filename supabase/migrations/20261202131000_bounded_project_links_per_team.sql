-- A team holds a bounded number of project links.
--
-- An editor of a team could create any number of empty projects of their own and link each
-- to the team (link_project_team: owner of the project, editor in the team). Every
-- member's policies on projects, project_teams and generations evaluate
-- private.project_ids_for_caller(), which returns every project linked to any of the
-- caller's teams, on every statement: with 200,000 links every member's project list took
-- ~1.3 s, linearly, so ~750,000 would pass the statement timeout and answer 503 to every
-- member, and the links outlive the editor's removal. Now a team holds at most
-- max_project_links_per_team (1,000) links: far more than a real team shares (projects
-- are linked by hand, one by one), and few enough that every member's policies stay cheap.
-- A link past the bound is refused with 409 (unlink some first); re-linking a linked
-- project (changing its access level) takes no new place. Links a team already holds past
-- the bound are kept, but no new one is accepted until it is back under it.
--
-- The bound is a count checked before an insert, so two links racing for a team's last
-- place must run one after the other: link_project_team now takes the team lock
-- (private.lock_team, "for no key update", which every membership and invitation RPC
-- takes) instead of a key-share lock on the team, after the key-share lock on the project
-- as before. No RPC that locks the team locks a project, so the order cannot deadlock; a
-- delete of the team in flight still commits first and the link then finds it gone (404).
-- The trigger takes the same lock, so writers other than the RPC are held to it too.

insert into private.settings (key, value) values ('max_project_links_per_team', '1000'::jsonb);

-- definer, as every trigger on an exposed table
create function private.refuse_too_many_project_links()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_limit integer := (private.setting('max_project_links_per_team') #>> '{}')::integer;
begin
    perform private.lock_team(new.team_id);
    -- a re-link (insert ... on conflict do update) changes a link the team already holds
    if exists (
        select 1 from public.project_teams
        where project_id = new.project_id and team_id = new.team_id
    ) then
        return new;
    end if;
    if (
        select count(*) from (
            select 1 from public.project_teams where team_id = new.team_id limit v_limit
        ) as held
    ) >= v_limit then
        perform private.raise_error(409, format(
            'this team has %s linked projects, the most it may hold: unlink some from it first',
            v_limit
        ));
    end if;
    return new;
end;
$$;

comment on function private.refuse_too_many_project_links() is
'Trigger: a team holds at most max_project_links_per_team project links (under the team lock).';

revoke all on function private.refuse_too_many_project_links()
from public, anon, authenticated, service_role;

create trigger project_teams_bounded_per_team
before insert on public.project_teams
for each row execute function private.refuse_too_many_project_links();

-- link_project_team: as in 20261202080000, with the team lock in place of the team's
-- key-share lock

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
    -- the team lock serializes links to one team, so its bound on links holds (it also
    -- waits for a delete of the team in flight, as the key-share lock did)
    perform private.lock_team(p_team_id);
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
