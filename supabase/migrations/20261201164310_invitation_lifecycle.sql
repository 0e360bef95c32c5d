-- Invitations with a lifecycle.
--
-- An invitation is pending until it is accepted, revoked or expires. Admins list a team's
-- pending invitations and revoke them. An invitation carries its inviter's authority, so
-- when the inviter is removed from the team, demoted below admin, suspended or deleted,
-- their pending invitations are revoked in the same transaction. Only the owner invites
-- admins (only the owner makes admins). Accepting needs a confirmed email address
-- (auth.users.email_confirmed_at) equal to the invited one: an unconfirmed sign-up with
-- someone else's address accepts nothing. Emails are at most 254 characters (RFC 5321).

-- tables --------------------------------------------------------------------------------

alter table public.invitations add column revoked_at timestamptz;

comment on column public.invitations.revoked_at is
'When an admin revoked it, or its inviter lost the authority to invite; null while valid.';

-- rows written before the limit are left as they are; new ones are checked
alter table public.invitations
add constraint invitations_email_length check (char_length(email) <= 254) not valid;

-- indexes -------------------------------------------------------------------------------

-- one pending invitation per address and team; revoked and accepted ones are history
drop index public.invitations_one_pending_per_email_key;
create unique index invitations_one_pending_per_email_key
on public.invitations (team_id, lower(email)) where accepted_at is null and revoked_at is null;

-- the pending list pages newest first
create index invitations_pending_team_id_idx
on public.invitations (team_id, created_at desc, id desc) where accepted_at is null and revoked_at is null;

-- revoking an inviter's invitations looks them up by inviter
create index invitations_pending_invited_by_idx
on public.invitations (invited_by) where accepted_at is null and revoked_at is null;

-- grants --------------------------------------------------------------------------------

grant select (revoked_at) on public.invitations to authenticated;

-- helpers -------------------------------------------------------------------------------

create function private.revoke_pending_invitations(p_inviter_id uuid, p_team_id uuid, p_reason text)
returns void
language plpgsql
set search_path = ''
as $$
declare
    v_invitation public.invitations;
begin
    for v_invitation in
        update public.invitations
        set revoked_at = now()
        where
            invited_by = p_inviter_id
            and (p_team_id is null or team_id = p_team_id)
            and accepted_at is null
            and revoked_at is null
        returning *
    loop
        perform private.audit('team.invitation_revoked', (select auth.uid()), 'invitation',
            v_invitation.id::text, v_invitation.team_id,
            jsonb_build_object('email', v_invitation.email, 'reason', p_reason, 'invited_by', p_inviter_id));
    end loop;
end;
$$;

comment on function private.revoke_pending_invitations(uuid, uuid, text) is
'Revokes (and audits) the pending invitations an inviter sent, in one team or in all (p_team_id null).';

create function private.on_inviter_membership_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    if old.role < 'admin' then
        return null;
    end if;
    if tg_op = 'DELETE' then
        -- a deleted team takes its invitations along; a deleted user was handled before
        if exists (select 1 from public.teams where id = old.team_id)
            and exists (select 1 from public.profiles where id = old.user_id) then
            perform private.revoke_pending_invitations(old.user_id, old.team_id, 'inviter_removed');
        end if;
    elsif new.role < 'admin' then
        perform private.revoke_pending_invitations(old.user_id, old.team_id, 'inviter_demoted');
    end if;
    return null;
end;
$$;

comment on function private.on_inviter_membership_change() is
'Trigger: an admin who leaves, is removed or is demoted below admin takes their pending invitations along.';

create function private.on_inviter_suspended()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.revoke_pending_invitations(new.id, null, 'inviter_suspended');
    return null;
end;
$$;

comment on function private.on_inviter_suspended() is
'Trigger: a suspended user''s pending invitations, in every team, are revoked with the suspension.';

create function private.on_inviter_deleted()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    -- before the delete: afterwards the foreign key has already forgotten the inviter
    perform private.revoke_pending_invitations(old.id, null, 'inviter_deleted');
    return old;
end;
$$;

comment on function private.on_inviter_deleted() is
'Trigger: a deleted user''s pending invitations are revoked before the row goes.';

-- triggers ------------------------------------------------------------------------------

create trigger team_members_revoke_invitations
after update of role or delete on public.team_members
for each row execute function private.on_inviter_membership_change();

create trigger profiles_revoke_invitations_on_suspension
after update of status on public.profiles
for each row when (new.status = 'suspended' and old.status <> 'suspended')
execute function private.on_inviter_suspended();

create trigger profiles_revoke_invitations_on_delete
before delete on public.profiles
for each row execute function private.on_inviter_deleted();

-- RPCs ----------------------------------------------------------------------------------

create or replace function public.invite_member(
    p_team_id uuid, p_email text, p_role public.team_role default 'viewer'
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_email text := lower(btrim(p_email));
    v_token text := private.new_token();
    v_my_role public.team_role;
    v_invitation public.invitations;
begin
    -- a suspension or a demotion of the inviter that commits first is seen here, and one
    -- that commits later sees this invitation and revokes it
    perform 1 from public.profiles where id = v_uid and status = 'active' for share;
    if not found then
        perform private.raise_error(403, 'this account is suspended');
    end if;
    perform private.lock_team(p_team_id);
    v_my_role := private.require_team_role(p_team_id, 'admin');
    if p_role is null or p_role = 'owner' then
        perform private.raise_error(400, 'role must be viewer, editor or admin; ownership is transferred, not invited');
    end if;
    if p_role = 'admin' and v_my_role <> 'owner' then
        perform private.raise_error(403, 'only the owner can invite admins');
    end if;
    if v_email is null or v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then
        perform private.raise_error(400, 'email must be a valid address like name@example.com');
    end if;
    if char_length(v_email) > 254 then
        perform private.raise_error(400, 'email must be at most 254 characters');
    end if;
    if exists (
        select 1 from public.team_members as tm
        inner join public.profiles as p on tm.user_id = p.id
        where tm.team_id = p_team_id and lower(p.email) = v_email
    ) then
        perform private.raise_error(409, 'that user is already a member of the team');
    end if;

    -- a new invitation replaces a pending one for the same address
    for v_invitation in
        update public.invitations set revoked_at = now()
        where team_id = p_team_id and lower(email) = v_email and accepted_at is null and revoked_at is null
        returning *
    loop
        perform private.audit('team.invitation_revoked', v_uid, 'invitation', v_invitation.id::text, p_team_id,
            jsonb_build_object('email', v_email, 'reason', 'replaced'));
    end loop;

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
'Admins invite an email at viewer or editor, the owner also at admin; returns the token once (only its hash is kept).';

create or replace function public.accept_invitation(p_token text)
returns public.team_members
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_invitation public.invitations;
    v_user auth.users;
    v_member public.team_members;
begin
    select * into v_invitation from public.invitations
    where token_hash = private.hash_token(coalesce(p_token, ''));
    if not found then
        perform private.raise_error(404, 'invitation not found: check the token');
    end if;
    perform private.lock_team(v_invitation.team_id);
    -- read again under the lock: a revocation or acceptance may have committed meanwhile
    select * into v_invitation from public.invitations where id = v_invitation.id for update;
    if not found then
        perform private.raise_error(404, 'invitation not found: check the token');
    end if;

    if v_invitation.accepted_at is not null then
        perform private.raise_error(410, 'this invitation has already been used');
    end if;
    if v_invitation.revoked_at is not null then
        perform private.raise_error(410, 'this invitation was revoked: ask the team for a new one');
    end if;
    if v_invitation.expires_at <= now() then
        perform private.raise_error(410, 'this invitation has expired: ask for a new one');
    end if;
    select * into v_user from auth.users where id = v_uid;
    if lower(v_invitation.email) is distinct from lower(v_user.email) then
        perform private.raise_error(403, 'this invitation was sent to another email address');
    end if;
    if v_user.email_confirmed_at is null then
        perform private.raise_error(403, 'confirm your email address first: accepting an invitation needs a confirmed email');
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
'Joins the team of a pending, unexpired invitation sent to the caller''s confirmed email.';

create function public.list_pending_invitations(
    p_team_id uuid,
    p_limit integer default 50,
    p_after_created_at timestamptz default null,
    p_after_id uuid default null
)
returns table (
    id uuid,
    team_id uuid,
    email text,
    role public.team_role,
    invited_by uuid,
    expires_at timestamptz,
    created_at timestamptz
)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
    perform private.require_active_user();
    perform private.require_team_role(p_team_id, 'admin');
    if p_limit is null or p_limit not between 1 and 1000 then
        perform private.raise_error(400, 'limit must be between 1 and 1000');
    end if;
    if num_nonnulls(p_after_created_at, p_after_id) not in (0, 2) then
        perform private.raise_error(400, 'a cursor needs its created_at and id together');
    end if;

    return query
    select i.id, i.team_id, i.email, i.role, i.invited_by, i.expires_at, i.created_at
    from public.invitations as i
    where
        i.team_id = p_team_id
        and i.accepted_at is null
        and i.revoked_at is null
        and i.expires_at > now()
        and (p_after_id is null or (i.created_at, i.id) < (p_after_created_at, p_after_id))
    order by i.created_at desc, i.id desc
    limit p_limit;
end;
$$;

comment on function public.list_pending_invitations(uuid, integer, timestamptz, uuid) is
'A page of a team''s pending invitations, newest first; admins only (404 for non-members, 403 below admin).';

revoke execute on function public.list_pending_invitations(uuid, integer, timestamptz, uuid)
from public, anon, service_role;
grant execute on function public.list_pending_invitations(uuid, integer, timestamptz, uuid) to authenticated;

create function public.revoke_invitation(p_team_id uuid, p_invitation_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_invitation public.invitations;
begin
    perform private.lock_team(p_team_id);
    perform private.require_team_role(p_team_id, 'admin');
    select * into v_invitation from public.invitations
    where id = p_invitation_id and team_id = p_team_id
    for update;
    if not found or v_invitation.revoked_at is not null then
        perform private.raise_error(404, 'invitation not found in this team');
    end if;
    if v_invitation.accepted_at is not null then
        perform private.raise_error(409, 'this invitation has already been accepted: remove the member instead');
    end if;

    update public.invitations set revoked_at = now() where id = p_invitation_id;
    perform private.audit('team.invitation_revoked', v_uid, 'invitation', p_invitation_id::text, p_team_id,
        jsonb_build_object('email', v_invitation.email, 'reason', 'revoked'));
end;
$$;

comment on function public.revoke_invitation(uuid, uuid) is
'Admins revoke a team''s invitation that is not yet accepted; its token stops working at once.';

revoke execute on function public.revoke_invitation(uuid, uuid) from public, anon, service_role;
grant execute on function public.revoke_invitation(uuid, uuid) to authenticated;
