-- Role grants and ownership transfer.
--
-- Only a team's owner makes or unmakes admins; an admin changes roles below admin only.
-- Ownership moves only by an explicit, audited transfer to a member, after which the old
-- owner is an admin. Every RPC that changes a team's membership first locks the team's
-- row, so two transfers, or a transfer and a removal, run one after the other and each
-- sees what the other did: a team never has zero or two owners. A deferred check at
-- commit holds the same rule for any writer, operators included (deferred, because a
-- transfer passes through a moment with no owner member between its statements).

-- helpers -------------------------------------------------------------------------------

create function private.lock_team(p_team_id uuid)
returns void
language plpgsql
set search_path = ''
as $$
begin
    -- "no key update" serializes membership changes without blocking inserts that only
    -- reference the team (links, shares, new members take a key-share lock)
    perform 1 from public.teams where id = p_team_id for no key update;
end;
$$;

comment on function private.lock_team(uuid) is
'Serializes the membership changes of one team (roles, transfer, removal, invitations) until commit.';

create function private.check_one_owner()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    -- fired by team_members (team_id) and by teams (id)
    v_team_id uuid := coalesce(
        to_jsonb(new) ->> 'team_id', to_jsonb(old) ->> 'team_id', to_jsonb(new) ->> 'id'
    )::uuid;
    v_owner_id uuid;
begin
    select t.owner_id into v_owner_id from public.teams as t where t.id = v_team_id;
    if not found then
        return null;  -- the team itself is gone
    end if;
    -- the unique index allows at most one owner member; this makes it exactly teams.owner_id
    if not exists (
        select 1 from public.team_members as m
        where m.team_id = v_team_id and m.user_id = v_owner_id and m.role = 'owner'
    ) then
        perform private.raise_error(
            409, 'a team has exactly one owner, who is teams.owner_id: transfer ownership instead'
        );
    end if;
    return null;
end;
$$;

comment on function private.check_one_owner() is
'Deferred check at commit: the team''s only owner member is teams.owner_id, whoever wrote the change.';

-- triggers ------------------------------------------------------------------------------

create constraint trigger team_members_have_one_owner
after insert or update or delete on public.team_members
deferrable initially deferred
for each row execute function private.check_one_owner();

create constraint trigger teams_have_one_owner
after update of owner_id on public.teams
deferrable initially deferred
for each row execute function private.check_one_owner();

-- RPCs ----------------------------------------------------------------------------------

create or replace function public.change_member_role(p_team_id uuid, p_user_id uuid, p_role public.team_role)
returns public.team_members
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_my_role public.team_role;
    v_target_role public.team_role;
    v_member public.team_members;
begin
    perform private.lock_team(p_team_id);
    v_my_role := private.require_team_role(p_team_id, 'admin');
    if p_role is null then
        perform private.raise_error(400, 'role must be one of viewer, editor, admin');
    end if;
    if p_role = 'owner' then
        perform private.raise_error(400, 'ownership moves only by an explicit transfer: use transfer_team_ownership');
    end if;
    v_target_role := private.team_role_of(p_team_id, p_user_id);
    if v_target_role is null then
        perform private.raise_error(404, 'member not found in this team');
    end if;
    if v_target_role = 'owner' then
        perform private.raise_error(409, 'the owner cannot be demoted: the owner transfers ownership instead');
    end if;
    if v_my_role <> 'owner' and v_target_role >= 'admin' then
        perform private.raise_error(403, 'admins can change only editors and viewers');
    end if;
    if v_my_role <> 'owner' and p_role >= 'admin' then
        perform private.raise_error(403, 'only the owner can make someone admin');
    end if;

    update public.team_members set role = p_role
    where team_id = p_team_id and user_id = p_user_id
    returning * into v_member;

    perform private.audit('team.role_changed', v_uid, 'user', p_user_id::text, p_team_id,
        jsonb_build_object('from', v_target_role, 'to', p_role));
    return v_member;
end;
$$;

comment on function public.change_member_role(uuid, uuid, public.team_role) is
'The owner sets any other member to viewer, editor or admin; an admin moves editors and viewers between those two.';

create function public.transfer_team_ownership(p_team_id uuid, p_user_id uuid)
returns public.teams
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_target_role public.team_role;
    v_team public.teams;
begin
    perform private.lock_team(p_team_id);
    if private.require_team_role(p_team_id, 'viewer') <> 'owner' then
        perform private.raise_error(403, 'only the team owner can transfer ownership');
    end if;
    if p_user_id = v_uid then
        perform private.raise_error(409, 'you already own this team');
    end if;
    v_target_role := private.team_role_of(p_team_id, p_user_id);
    if v_target_role is null then
        perform private.raise_error(404, 'member not found in this team: ownership goes to a member');
    end if;
    if not exists (select 1 from public.profiles where id = p_user_id and status = 'active') then
        perform private.raise_error(409, 'a suspended member cannot become the owner');
    end if;

    -- the old owner steps down first: the unique index allows one owner at a time
    update public.team_members set role = 'admin' where team_id = p_team_id and user_id = v_uid;
    update public.team_members set role = 'owner' where team_id = p_team_id and user_id = p_user_id;
    update public.teams set owner_id = p_user_id where id = p_team_id returning * into v_team;

    perform private.audit('team.ownership_transferred', v_uid, 'user', p_user_id::text, p_team_id,
        jsonb_build_object('from', v_uid, 'to', p_user_id, 'new_owner_was', v_target_role));
    return v_team;
end;
$$;

comment on function public.transfer_team_ownership(uuid, uuid) is
'The owner hands the team to another active member and stays on as an admin; audited.';

revoke execute on function public.transfer_team_ownership(uuid, uuid) from public, anon, service_role;
grant execute on function public.transfer_team_ownership(uuid, uuid) to authenticated;

create or replace function public.remove_member(p_team_id uuid, p_user_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_my_role public.team_role;
    v_target_role public.team_role;
begin
    perform private.lock_team(p_team_id);
    v_my_role := private.require_team_role(p_team_id, 'admin');
    v_target_role := private.team_role_of(p_team_id, p_user_id);
    if v_target_role is null then
        perform private.raise_error(404, 'member not found in this team');
    end if;
    if v_target_role = 'owner' then
        perform private.raise_error(409, 'the owner cannot be removed: transfer ownership first');
    end if;
    if v_my_role <> 'owner' and v_target_role >= v_my_role then
        perform private.raise_error(403, 'admins can remove only editors and viewers');
    end if;
    delete from public.team_members where team_id = p_team_id and user_id = p_user_id;
    perform private.audit('team.member_removed', v_uid, 'user', p_user_id::text, p_team_id,
        jsonb_build_object('role', v_target_role));
end;
$$;

create or replace function public.leave_team(p_team_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_role public.team_role;
begin
    perform private.lock_team(p_team_id);
    v_role := private.require_team_role(p_team_id, 'viewer');
    if v_role = 'owner' then
        perform private.raise_error(409, 'the owner cannot leave: transfer ownership first');
    end if;
    delete from public.team_members where team_id = p_team_id and user_id = v_uid;
    perform private.audit('team.member_left', v_uid, 'user', v_uid::text, p_team_id, '{}'::jsonb);
end;
$$;
