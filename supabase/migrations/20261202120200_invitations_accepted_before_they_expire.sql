-- An invitation is accepted only while it is valid at the moment of acceptance.
--
-- accept_invitation compared expires_at with now(), the start of the caller's transaction.
-- A transaction begun before an invitation expired could accept it later, however long it
-- stayed open; so could a call that waited for the team's lock past the expiry. Now the
-- expiry is judged with clock_timestamp(), read once the team's lock and the invitation's
-- row lock are held: nothing can change the invitation after that, and the moment it
-- names is the moment the acceptance is decided, later than both the transaction's and the
-- statement's start (statement_timestamp() would still let an acceptance that waited for
-- the lock through). accepted_at records that same moment, so an accepted invitation was
-- always accepted before it expired.

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
    v_now timestamptz;
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
    -- judged now, under the locks: not at the start of a transaction that may have waited
    v_now := clock_timestamp();
    if v_invitation.expires_at <= v_now then
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

    update public.invitations set accepted_at = v_now, accepted_by = v_uid where id = v_invitation.id;
    insert into public.team_members (team_id, user_id, role)
    values (v_invitation.team_id, v_uid, v_invitation.role)
    returning * into v_member;

    perform private.audit('team.invitation_accepted', v_uid, 'invitation', v_invitation.id::text,
        v_invitation.team_id, jsonb_build_object('role', v_invitation.role));
    return v_member;
end;
$$;

comment on function public.accept_invitation(text) is
'Joins the team of a pending invitation sent to the caller''s confirmed email, unexpired when accepted '
'(clock_timestamp(), not the transaction''s start).';
