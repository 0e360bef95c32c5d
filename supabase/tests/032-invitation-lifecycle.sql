-- The invitation lifecycle: only the owner invites admins; admins list a team's pending
-- invitations (a page at a time) and revoke them; an inviter who is removed, leaves, is
-- demoted below admin, suspended or deleted takes their pending invitations along, in the
-- same transaction; accepting needs a confirmed email that matches; emails are at most
-- 254 characters.
begin;
select plan(48);

select tests.create_user('owner@velro.test') as towner \gset
select tests.create_user('admin@velro.test') as tadmin \gset
select tests.create_user('admin2@velro.test') as tadmin2 \gset
select tests.create_user('admin3@velro.test') as tadmin3 \gset
select tests.create_user('admin4@velro.test') as tadmin4 \gset
select tests.create_user('editor@velro.test') as teditor \gset
select tests.create_user('viewer@velro.test') as tviewer \gset
select tests.create_user('sue@velro.test') as sue \gset
select tests.create_user('stranger@velro.test') as stranger \gset
select tests.create_user('other@velro.test') as other \gset
select tests.create_user('new@velro.test') as newbie \gset
select tests.create_user('unconfirmed@velro.test') as unconfirmed \gset

update auth.users set email_confirmed_at = null where id = :'unconfirmed';

\set team 'a0000000-0000-4000-8000-000000000001'
\set beta 'b0000000-0000-4000-8000-000000000002'

insert into public.teams (id, name, owner_id) values
(:'team', 'Alpha', :'towner'),
(:'beta', 'Beta', :'other');
insert into public.team_members (team_id, user_id, role) values
(:'team', :'towner', 'owner'),
(:'team', :'tadmin', 'admin'),
(:'team', :'tadmin2', 'admin'),
(:'team', :'tadmin3', 'admin'),
(:'team', :'tadmin4', 'admin'),
(:'team', :'teditor', 'editor'),
(:'team', :'tviewer', 'viewer'),
(:'team', :'sue', 'admin'),
(:'beta', :'other', 'owner'),
(:'beta', :'tadmin3', 'admin');
update public.profiles set status = 'suspended' where id = :'sue';

-- who invites at which role -------------------------------------------------------------------

select tests.authenticate_as(:'tadmin');
select throws_ok(
    format($$select public.invite_member(%L, 'x@velro.test', 'admin')$$, :'team'),
    'PT403', 'only the owner can invite admins', 'an admin cannot invite an admin (only the owner makes admins)'
);
select throws_ok(
    format('select public.invite_member(%L, %L)', :'team', repeat('a', 244) || '@velro.test'),
    'PT400', 'email must be at most 254 characters', 'an address over 254 characters is refused'
);
select
    invitation ->> 'token' as first_token,
    invitation ->> 'invitation_id' as first_id
from (select public.invite_member(:'team', 'first@velro.test', 'editor') as invitation) as i \gset
select
    invitation ->> 'token' as new_token,
    invitation ->> 'invitation_id' as new_id
from (select public.invite_member(:'team', 'new@velro.test', 'viewer') as invitation) as i \gset
select invitation ->> 'token' as unconfirmed_token
from (select public.invite_member(:'team', 'unconfirmed@velro.test', 'viewer') as invitation) as i \gset
select tests.authenticate_as(:'towner');
select invitation ->> 'invitation_id' as owner_invitation
from (select public.invite_member(:'team', 'future-admin@velro.test', 'admin') as invitation) as i \gset
select ok(:'owner_invitation' is not null, 'the owner invites an admin');
select tests.clear_authentication();
select throws_ok(
    format(
        $$insert into public.invitations (team_id, email, role, token_hash, expires_at)
        values (%L, %L, 'viewer', 'h', now() + interval '1 day')$$,
        :'team', repeat('b', 244) || '@velro.test'
    ),
    '23514', null, 'the table itself refuses an address over 254 characters'
);

-- list_pending_invitations ----------------------------------------------------------------------

select is(
    pg_get_function_result('public.list_pending_invitations(uuid, integer, timestamptz, uuid)'::regprocedure),
    'TABLE(id uuid, team_id uuid, email text, role team_role, invited_by uuid, '
    || 'expires_at timestamp with time zone, created_at timestamp with time zone)',
    'the list shows the invitation, never its token or hash'
);
select tests.authenticate_as(:'tadmin2');
select set_eq(
    format('select email, role::text, invited_by from public.list_pending_invitations(%L)', :'team'),
    format(
        $$values ('first@velro.test', 'editor', %1$L::uuid), ('new@velro.test', 'viewer', %1$L::uuid),
        ('unconfirmed@velro.test', 'viewer', %1$L::uuid), ('future-admin@velro.test', 'admin', %2$L::uuid)$$,
        :'tadmin', :'towner'
    ),
    'an admin lists every pending invitation of the team, whoever sent it'
);
select is(
    (select count(*) from public.list_pending_invitations(:'team', 2)), 2::bigint, 'a page holds at most the limit'
);
select
    created_at as after_created,
    id as after_id
from public.list_pending_invitations(:'team', 2)
order by created_at desc, id desc offset 1 \gset
select is_empty(
    format(
        $$select id from public.list_pending_invitations(%1$L, 10, %2$L, %3$L)
        intersect select id from public.list_pending_invitations(%1$L, 2)$$,
        :'team', :'after_created', :'after_id'
    ),
    'the next page does not repeat the first'
);
select is(
    (select count(*) from public.list_pending_invitations(:'team', 10, :'after_created', :'after_id')), 2::bigint,
    'and holds the rest'
);
select throws_ok(
    format('select * from public.list_pending_invitations(%L, 0)', :'team'),
    'PT400', 'limit must be between 1 and 1000', 'a limit of 0 is refused'
);
select throws_ok(
    format('select * from public.list_pending_invitations(%L, 10, now())', :'team'),
    'PT400', 'a cursor needs its created_at and id together', 'half a cursor is refused'
);
select tests.authenticate_as(:'teditor');
select throws_ok(
    format('select * from public.list_pending_invitations(%L)', :'team'),
    'PT403', 'this needs the admin role or higher in the team', 'an editor lists no invitations'
);
select tests.authenticate_as(:'tviewer');
select throws_ok(
    format('select * from public.list_pending_invitations(%L)', :'team'),
    'PT403', 'this needs the admin role or higher in the team', 'a viewer lists no invitations'
);
select tests.authenticate_as(:'other');
select throws_ok(
    format('select * from public.list_pending_invitations(%L)', :'team'),
    'PT404', 'team not found', 'a member of another team learns nothing (404)'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    format('select * from public.list_pending_invitations(%L)', :'team'),
    'PT404', 'team not found', 'a stranger learns nothing (404)'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    format('select * from public.list_pending_invitations(%L)', :'team'),
    'PT403', 'this account is suspended', 'a suspended admin lists nothing'
);
select tests.authenticate_as_anon();
select throws_ok(
    format('select * from public.list_pending_invitations(%L)', :'team'),
    '42501', 'permission denied for function list_pending_invitations', 'anon cannot list'
);
select tests.authenticate_as_service_role();
select throws_ok(
    format('select * from public.revoke_invitation(%L, %L)', :'team', :'first_id'),
    '42501', 'permission denied for function revoke_invitation', 'the service role is not granted revoke'
);

-- accepting needs a confirmed email that matches -------------------------------------------------

select tests.authenticate_as(:'unconfirmed');
select throws_ok(
    format('select public.accept_invitation(%L)', :'new_token'),
    'PT403', 'this invitation was sent to another email address', 'another address is refused first'
);
select throws_ok(
    format('select public.accept_invitation(%L)', :'unconfirmed_token'),
    'PT403', 'confirm your email address first: accepting an invitation needs a confirmed email',
    'the invited address, unconfirmed, cannot accept (a sign-up with someone else''s address gains nothing)'
);
select tests.clear_authentication();
update auth.users set email_confirmed_at = now() where id = :'unconfirmed';
select tests.authenticate_as(:'unconfirmed');
select lives_ok(
    format('select public.accept_invitation(%L)', :'unconfirmed_token'), 'once confirmed, it accepts'
);

-- revoke_invitation -----------------------------------------------------------------------------

select tests.authenticate_as(:'teditor');
select throws_ok(
    format('select public.revoke_invitation(%L, %L)', :'team', :'first_id'),
    'PT403', 'this needs the admin role or higher in the team', 'an editor cannot revoke'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    format('select public.revoke_invitation(%L, %L)', :'team', :'first_id'),
    'PT404', 'team not found', 'a stranger cannot revoke (404)'
);
select tests.authenticate_as(:'other');
select throws_ok(
    format('select public.revoke_invitation(%L, %L)', :'beta', :'first_id'),
    'PT404', 'invitation not found in this team', 'another team''s owner cannot revoke it through her own team'
);
select tests.authenticate_as_anon();
select throws_ok(
    format('select public.revoke_invitation(%L, %L)', :'team', :'first_id'),
    '42501', 'permission denied for function revoke_invitation', 'anon cannot revoke'
);
select tests.clear_authentication();
select is(
    (select revoked_at from public.invitations where id = :'first_id'), null,
    'the refused revocations left the invitation pending'
);
select tests.authenticate_as(:'tadmin2');
select lives_ok(
    format('select public.revoke_invitation(%L, %L)', :'team', :'first_id'),
    'an admin revokes an invitation another admin sent'
);
select throws_ok(
    format('select public.revoke_invitation(%L, %L)', :'team', :'first_id'),
    'PT404', 'invitation not found in this team', 'a revoked invitation cannot be revoked again'
);
select throws_ok(
    format(
        'select public.revoke_invitation(%L, (select id from public.invitations where accepted_at is not null))',
        :'team'
    ),
    'PT409', 'this invitation has already been accepted: remove the member instead',
    'an accepted invitation is not revoked'
);
select tests.clear_authentication();
select ok(
    exists (
        select 1 from private.audit_events
        where
            event = 'team.invitation_revoked' and actor_id = :'tadmin2' and subject_id = :'first_id'
            and details ->> 'reason' = 'revoked'
    ),
    'the revocation is audited'
);
update auth.users set email = 'first@velro.test' where id = :'stranger';
select tests.authenticate_as(:'stranger');
select throws_ok(
    format('select public.accept_invitation(%L)', :'first_token'),
    'PT410', 'this invitation was revoked: ask the team for a new one', 'a revoked token is gone'
);

-- an inviter who loses the authority takes their invitations along ----------------------------------

-- demoted below admin: tadmin's remaining invitation (new@) goes
select tests.authenticate_as(:'towner');
select lives_ok(
    format($$select public.change_member_role(%L, %L, 'editor')$$, :'team', :'tadmin'),
    'the owner demotes the admin who invited new@'
);
select isnt(
    (select revoked_at from public.invitations where id = :'new_id'), null,
    'her pending invitation is revoked in the same transaction'
);
select tests.authenticate_as(:'newbie');
select throws_ok(
    format('select public.accept_invitation(%L)', :'new_token'),
    'PT410', 'this invitation was revoked: ask the team for a new one', 'and can no longer be accepted'
);
select tests.clear_authentication();
select ok(
    exists (
        select 1 from private.audit_events
        where event = 'team.invitation_revoked' and subject_id = :'new_id' and details ->> 'reason' = 'inviter_demoted'
    ),
    'the automatic revocation is audited with its reason'
);
select isnt(
    (select accepted_at from public.invitations where email = 'unconfirmed@velro.test'), null,
    'an invitation she sent that was already accepted stays accepted'
);

-- removed, left
select tests.authenticate_as(:'tadmin2');
select invitation ->> 'invitation_id' as removed_id
from (select public.invite_member(:'team', 'removed@velro.test') as invitation) as i \gset
select tests.authenticate_as(:'towner');
select lives_ok(format('select public.remove_member(%L, %L)', :'team', :'tadmin2'), 'the owner removes an admin');
select tests.clear_authentication();
select isnt(
    (select revoked_at from public.invitations where id = :'removed_id'), null, 'a removed admin''s invitations go'
);

select tests.authenticate_as(:'tadmin4');
select invitation ->> 'invitation_id' as left_id
from (select public.invite_member(:'team', 'left@velro.test') as invitation) as i \gset
select lives_ok(format('select public.leave_team(%L)', :'team'), 'an admin leaves');
select tests.clear_authentication();
select isnt(
    (select revoked_at from public.invitations where id = :'left_id'), null, 'so do the invitations of one who left'
);

-- suspended: in every team
select tests.authenticate_as(:'tadmin3');
select invitation ->> 'invitation_id' as alpha_id
from (select public.invite_member(:'team', 'alpha@velro.test') as invitation) as i \gset
select invitation ->> 'invitation_id' as beta_id
from (select public.invite_member(:'beta', 'beta@velro.test') as invitation) as i \gset
select tests.clear_authentication();
update public.profiles set status = 'suspended' where id = :'tadmin3';
select is(
    (select count(*) from public.invitations where id in (:'alpha_id', :'beta_id') and revoked_at is not null),
    2::bigint,
    'a suspended admin''s invitations are revoked in every team'
);

-- deleted
update public.profiles set status = 'active' where id = :'tadmin3';
select tests.authenticate_as(:'tadmin3');
select invitation ->> 'invitation_id' as deleted_id
from (select public.invite_member(:'team', 'deleted@velro.test') as invitation) as i \gset
select tests.clear_authentication();
delete from auth.users where id = :'tadmin3';
select results_eq(
    format('select invited_by, revoked_at is not null from public.invitations where id = %L', :'deleted_id'),
    'values (null::uuid, true)',
    'a deleted admin''s invitations are revoked before the account goes'
);

-- the owner who hands the team on stays an admin: she keeps the invitations an admin may
-- send, and the admin invitations only an owner could send go with the ownership
select tests.authenticate_as(:'towner');
select invitation ->> 'invitation_id' as owner_viewer_invitation
from (select public.invite_member(:'team', 'future-viewer@velro.test') as invitation) as i \gset
select lives_ok(
    format('select public.transfer_team_ownership(%L, %L)', :'team', :'teditor'), 'the owner hands the team on'
);
select tests.clear_authentication();
select is(
    (select revoked_at from public.invitations where id = :'owner_viewer_invitation'), null,
    'the old owner, now admin, keeps her pending viewer invitation'
);
select isnt(
    (select revoked_at from public.invitations where id = :'owner_invitation'), null,
    'her pending admin invitation is revoked with the ownership'
);
select ok(
    exists (
        select 1 from private.audit_events
        where
            event = 'team.invitation_revoked' and subject_id = :'owner_invitation'
            and details ->> 'reason' = 'inviter_no_longer_owner'
    ),
    'and audited with its reason'
);
select is(
    (select count(*) from public.invitations where team_id = :'team' and accepted_at is null and revoked_at is null),
    1::bigint, 'exactly one pending invitation is left'
);
select lives_ok(
    format('delete from public.teams where id = %L', :'beta'),
    'a team deleted with its admins and invitations goes without a revocation error'
);

select * from finish();
rollback;
