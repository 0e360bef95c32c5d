-- An invitation stays valid only while its inviter could still send it.
--
-- Only a team's owner may invite an admin. The trigger on team_members revoked an inviter's
-- pending invitations when they left, were removed or fell below admin, but an owner who
-- hands the team on stays an admin: her pending admin invitations stayed valid, and whoever
-- accepted one became an admin the new owner never approved. Now stepping down from owner
-- revokes the admin invitations she sent to that team (audited with the reason
-- inviter_no_longer_owner); her viewer and editor invitations stay, since an admin may
-- still send those. transfer_team_ownership holds the team's lock, as invite_member does,
-- so no invitation can slip in between. Invitations already expired are left as they are:
-- they can no longer be accepted, and revoking them would only cost the statement time.

drop function private.revoke_pending_invitations(uuid, uuid, text);

create function private.revoke_pending_invitations(
    p_inviter_id uuid, p_team_id uuid, p_reason text, p_role public.team_role default null
)
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
            and (p_role is null or role = p_role)
            and accepted_at is null
            and revoked_at is null
            and expires_at > now()  -- an expired one can no longer be accepted anyway
        returning *
    loop
        perform private.audit('team.invitation_revoked', (select auth.uid()), 'invitation',
            v_invitation.id::text, v_invitation.team_id,
            jsonb_build_object('email', v_invitation.email, 'reason', p_reason, 'invited_by', p_inviter_id));
    end loop;
end;
$$;
comment on function private.revoke_pending_invitations(uuid, uuid, text, public.team_role) is
'Revokes (and audits) the pending invitations an inviter sent, in one team or in all (p_team_id null), '
'of one role or of any (p_role null).';

revoke all on function private.revoke_pending_invitations(uuid, uuid, text, public.team_role)
from public, anon, authenticated, service_role;

create or replace function private.on_inviter_membership_change()
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
    elsif old.role = 'owner' and new.role <> 'owner' then
        perform private.revoke_pending_invitations(old.user_id, old.team_id, 'inviter_no_longer_owner', 'admin');
    end if;
    return null;
end;
$$;
comment on function private.on_inviter_membership_change() is
'Trigger: an admin who leaves, is removed or is demoted below admin takes their pending invitations along; '
'an owner who steps down takes the admin invitations only an owner could send.';
