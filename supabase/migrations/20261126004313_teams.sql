-- Teams, their members and invitations, with the RPCs of the team lifecycle.
--
-- Members change only through the RPCs below, so the rules (exactly one owner, admins
-- cannot grant owner, invitations are one-time and bound to an email) live in one place.

-- tables --------------------------------------------------------------------------------

create table public.teams (
    id uuid primary key default gen_random_uuid(),
    name text not null check (char_length(btrim(name)) between 1 and 100),
    -- a team ends with its owner's account, so deleting a user never fails on it
    owner_id uuid not null references public.profiles (id) on delete cascade,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

comment on table public.teams is 'A group of users; owner_id mirrors the single owner member.';

create index teams_owner_id_idx on public.teams (owner_id);

create table public.team_members (
    team_id uuid not null references public.teams (id) on delete cascade,
    user_id uuid not null references public.profiles (id) on delete cascade,
    role public.team_role not null,
    created_at timestamptz not null default now(),
    primary key (team_id, user_id)
);

comment on table public.team_members is 'Who belongs to a team, at which role.';

-- the primary key indexes team_id first; policies and triggers also look up by user
create index team_members_user_id_idx on public.team_members (user_id, team_id, role);
create unique index team_members_one_owner_key on public.team_members (team_id) where role = 'owner';

create table public.invitations (
    id uuid primary key default gen_random_uuid(),
    team_id uuid not null references public.teams (id) on delete cascade,
    email text not null check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
    role public.team_role not null check (role <> 'owner'),
    token_hash text not null unique,
    invited_by uuid references public.profiles (id) on delete set null,
    expires_at timestamptz not null,
    accepted_at timestamptz,
    accepted_by uuid references public.profiles (id) on delete set null,
    created_at timestamptz not null default now()
);

comment on table public.invitations is
'One-time invitations; only the sha256 of the token is stored, the token is shown once.';

create index invitations_team_id_idx on public.invitations (team_id);
create unique index invitations_one_pending_per_email_key
on public.invitations (team_id, lower(email)) where accepted_at is null;

-- grants --------------------------------------------------------------------------------

grant select on public.teams to authenticated;
grant update (name) on public.teams to authenticated;
grant select on public.team_members to authenticated;
-- the token hash stays out of the API's reach
grant select (id, team_id, email, role, invited_by, expires_at, accepted_at, accepted_by, created_at)
on public.invitations to authenticated;
grant select, insert, update, delete on public.teams, public.team_members, public.invitations to service_role;

-- helpers -------------------------------------------------------------------------------

create function private.team_ids_for_caller(p_min_role public.team_role default 'viewer')
returns setof uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
    return query
    select team_id from public.team_members
    where user_id = auth.uid() and role >= p_min_role;
end;
$$;

comment on function private.team_ids_for_caller(public.team_role) is
'The caller''s teams at or above a role; policies call it wrapped in array(select ...) so it runs once.';

grant execute on function private.team_ids_for_caller(public.team_role) to authenticated;

create function private.require_active_user()
returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
    v_uid uuid := (select auth.uid());
begin
    if v_uid is null then
        perform private.raise_error(401, 'sign in first: this needs an authenticated user');
    end if;
    if not exists (select 1 from public.profiles where id = v_uid and status = 'active') then
        perform private.raise_error(403, 'this account is suspended');
    end if;
    return v_uid;
end;
$$;

comment on function private.require_active_user() is
'The caller''s id, or an error when the caller is anonymous or suspended; first line of every RPC.';

create function private.team_role_of(p_team_id uuid, p_user_id uuid)
returns public.team_role
language sql
stable
set search_path = ''
as $$
    select role from public.team_members where team_id = p_team_id and user_id = p_user_id
$$;

comment on function private.team_role_of(uuid, uuid) is 'A user''s role in a team, null when not a member.';

-- Resolves the caller's role in a team and enforces a minimum: a non-member learns nothing
-- (404), a member without the role is told so (403).
create function private.require_team_role(p_team_id uuid, p_min_role public.team_role)
returns public.team_role
language plpgsql
stable
set search_path = ''
as $$
declare
    v_role public.team_role := private.team_role_of(p_team_id, (select auth.uid()));
begin
    if v_role is null then
        perform private.raise_error(404, 'team not found');
    end if;
    if v_role < p_min_role then
        perform private.raise_error(403, format('this needs the %s role or higher in the team', p_min_role));
    end if;
    return v_role;
end;
$$;

comment on function private.require_team_role(uuid, public.team_role) is
'Caller''s team role if at least p_min_role; 404 for non-members, 403 for too low a role.';

create function private.hash_token(p_token text)
returns text
language sql
immutable
set search_path = ''
as $$
    select encode(sha256(convert_to(p_token, 'utf8')), 'hex')
$$;

comment on function private.hash_token(text) is 'sha256 hex of a secret token; only hashes are stored.';

create function private.new_token()
returns text
language sql
volatile
set search_path = ''
as $$
    -- two v4 uuids: 244 random bits from the core CSPRNG (pgcrypto is not everywhere)
    select replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')
$$;

comment on function private.new_token() is 'A random token with 244 bits of entropy, without pgcrypto.';

create trigger teams_touch_updated_at
before update on public.teams
for each row execute function private.touch_updated_at();

-- RLS -----------------------------------------------------------------------------------

alter table public.teams enable row level security;
alter table public.team_members enable row level security;
alter table public.invitations enable row level security;

-- policies ------------------------------------------------------------------------------

create policy "members can read their teams"
on public.teams for select to authenticated
using ((select private.is_active_user()) and id = any(array(select private.team_ids_for_caller())));

create policy "admins can rename their teams"
on public.teams for update to authenticated
using ((select private.is_active_user()) and id = any(array(select private.team_ids_for_caller('admin'))))
with check (id = any(array(select private.team_ids_for_caller('admin'))));

create policy "members can read the members of their teams"
on public.team_members for select to authenticated
using ((select private.is_active_user()) and team_id = any(array(select private.team_ids_for_caller())));

create policy "admins can read their teams' invitations"
on public.invitations for select to authenticated
using ((select private.is_active_user()) and team_id = any(array(select private.team_ids_for_caller('admin'))));

-- members share names: a teammate's profile is readable
create policy "members can read their teammates' profiles"
on public.profiles for select to authenticated
using (
    (select private.is_active_user())
    and id in (
        select tm.user_id from public.team_members as tm
        where tm.team_id = any(array(select private.team_ids_for_caller()))
    )
);

-- RPCs ----------------------------------------------------------------------------------

create function public.create_team(p_name text)
returns public.teams
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_team public.teams;
begin
    if p_name is null or char_length(btrim(p_name)) not between 1 and 100 then
        perform private.raise_error(400, 'team name must be 1 to 100 characters');
    end if;
    insert into public.teams (name, owner_id) values (btrim(p_name), v_uid) returning * into v_team;
    insert into public.team_members (team_id, user_id, role) values (v_team.id, v_uid, 'owner');
    perform private.audit('team.created', v_uid, 'team', v_team.id::text, v_team.id, '{}'::jsonb);
    return v_team;
end;
$$;

comment on function public.create_team(text) is 'Creates a team; the caller becomes its owner.';

grant execute on function public.create_team(text) to authenticated;

create function public.invite_member(p_team_id uuid, p_email text, p_role public.team_role default 'viewer')
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_email text := lower(btrim(p_email));
    v_token text := private.new_token();
    v_invitation public.invitations;
begin
    perform private.require_team_role(p_team_id, 'admin');
    if p_role is null or p_role = 'owner' then
        perform private.raise_error(400, 'role must be viewer, editor or admin; ownership is transferred, not invited');
    end if;
    if v_email is null or v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then
        perform private.raise_error(400, 'email must be a valid address like name@example.com');
    end if;
    if exists (
        select 1 from public.team_members as tm
        join public.profiles as p on p.id = tm.user_id
        where tm.team_id = p_team_id and lower(p.email) = v_email
    ) then
        perform private.raise_error(409, 'that user is already a member of the team');
    end if;

    -- a new invitation replaces a pending one for the same address
    delete from public.invitations
    where team_id = p_team_id and lower(email) = v_email and accepted_at is null;

    insert into public.invitations (team_id, email, role, token_hash, invited_by, expires_at)
    values (
        p_team_id, v_email, p_role, private.hash_token(v_token), v_uid,
        now() + (private.setting('invitation_ttl') #>> '{}')::interval
    )
    returning * into v_invitation;

    perform private.audit('team.member_invited', v_uid, 'invitation', v_invitation.id::text, p_team_id,
        jsonb_build_object('email', v_email, 'role', p_role));
    return jsonb_build_object(
        'invitation_id', v_invitation.id, 'team_id', p_team_id, 'email', v_email,
        'role', p_role, 'token', v_token, 'expires_at', v_invitation.expires_at
    );
end;
$$;

comment on function public.invite_member(uuid, text, public.team_role) is
'Admins invite an email at a role below owner; returns the token once (only its hash is kept).';

grant execute on function public.invite_member(uuid, text, public.team_role) to authenticated;

create function public.accept_invitation(p_token text)
returns public.team_members
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_invitation public.invitations;
    v_member public.team_members;
begin
    select * into v_invitation from public.invitations
    where token_hash = private.hash_token(coalesce(p_token, ''))
    for update;

    if not found then
        perform private.raise_error(404, 'invitation not found: check the token');
    end if;
    if v_invitation.accepted_at is not null then
        perform private.raise_error(410, 'this invitation has already been used');
    end if;
    if v_invitation.expires_at <= now() then
        perform private.raise_error(410, 'this invitation has expired: ask for a new one');
    end if;
    if lower(v_invitation.email) <> (select lower(email) from public.profiles where id = v_uid) then
        perform private.raise_error(403, 'this invitation was sent to another email address');
    end if;
    if private.team_role_of(v_invitation.team_id, v_uid) is not null then
        perform private.raise_error(409, 'you are already a member of this team');
    end if;

    update public.invitations set accepted_at = now(), accepted_by = v_uid where id = v_invitation.id;
    insert into public.team_members (team_id, user_id, role)
    values (v_invitation.team_id, v_uid, v_invitation.role)
    returning * into v_member;

    perform private.audit('team.invitation_accepted', v_uid, 'invitation', v_invitation.id::text,
        v_invitation.team_id, jsonb_build_object('role', v_invitation.role));
    return v_member;
end;
$$;

comment on function public.accept_invitation(text) is
'Joins the team of a valid, unexpired, unused invitation sent to the caller''s email.';

grant execute on function public.accept_invitation(text) to authenticated;

create function public.change_member_role(p_team_id uuid, p_user_id uuid, p_role public.team_role)
returns public.team_members
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_my_role public.team_role := private.require_team_role(p_team_id, 'admin');
    v_target_role public.team_role := private.team_role_of(p_team_id, p_user_id);
    v_member public.team_members;
begin
    if p_role is null then
        perform private.raise_error(400, 'role must be one of viewer, editor, admin, owner');
    end if;
    if v_target_role is null then
        perform private.raise_error(404, 'member not found in this team');
    end if;
    if v_target_role = 'owner' then
        perform private.raise_error(409, 'the owner cannot be demoted: the owner transfers ownership instead');
    end if;
    if p_role = 'owner' and v_my_role <> 'owner' then
        perform private.raise_error(403, 'only the owner can make someone owner');
    end if;
    if v_my_role <> 'owner' and v_target_role >= v_my_role then
        perform private.raise_error(403, 'admins can change only editors and viewers');
    end if;

    if p_role = 'owner' then
        -- ownership moves: exactly one owner, the previous one stays as admin
        update public.team_members set role = 'admin' where team_id = p_team_id and user_id = v_uid;
        update public.teams set owner_id = p_user_id, updated_at = now() where id = p_team_id;
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
'Owner/admin changes a member''s role; admins cannot grant owner; making someone owner transfers ownership.';

grant execute on function public.change_member_role(uuid, uuid, public.team_role) to authenticated;

create function public.remove_member(p_team_id uuid, p_user_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_my_role public.team_role := private.require_team_role(p_team_id, 'admin');
    v_target_role public.team_role := private.team_role_of(p_team_id, p_user_id);
begin
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

comment on function public.remove_member(uuid, uuid) is 'Owner/admin removes a lower-ranked member; never the owner.';

grant execute on function public.remove_member(uuid, uuid) to authenticated;

create function public.leave_team(p_team_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_role public.team_role := private.require_team_role(p_team_id, 'viewer');
begin
    if v_role = 'owner' then
        perform private.raise_error(409, 'the owner cannot leave: transfer ownership first');
    end if;
    delete from public.team_members where team_id = p_team_id and user_id = v_uid;
    perform private.audit('team.member_left', v_uid, 'user', v_uid::text, p_team_id, '{}'::jsonb);
end;
$$;

comment on function public.leave_team(uuid) is 'The caller leaves a team; the owner must transfer ownership first.';

grant execute on function public.leave_team(uuid) to authenticated;
