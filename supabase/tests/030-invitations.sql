-- Invitations: only admins invite, the token is returned once and only its hash is kept,
-- acceptance is one-time, bound to the invited email, and ends at expiry.
begin;
select plan(45);

select * from tests.create_world() \gset
select tests.create_user('new@velro.test') as newbie \gset
select tests.create_user('late@velro.test') as late \gset

-- inviting ----------------------------------------------------------------------------------

select tests.authenticate_as(:'tadmin');
select
    invitation ->> 'token' as token,
    invitation ->> 'invitation_id' as invitation_id,
    invitation
from (
    select public.invite_member('a0000000-0000-4000-8000-000000000001', ' New@Velro.test ', 'editor') as invitation
) as i \gset

select ok(:'token' ~ '^[0-9a-f]{64}$', 'invite_member returns a 64-hex-digit token');
select is(
    (:'invitation'::jsonb - 'token' - 'invitation_id' - 'expires_at'),
    '{"team_id": "a0000000-0000-4000-8000-000000000001", "email": "new@velro.test", "role": "editor"}'::jsonb,
    'the answer names the team, the normalised email and the role'
);
select ok(
    (:'invitation'::jsonb ->> 'expires_at')::timestamptz between now() + interval '7 days' - interval '1 minute'
    and now() + interval '7 days' + interval '1 minute',
    'the invitation expires in 7 days'
);
select results_eq(
    'select id, email, role::text, accepted_at from public.invitations',
    format($$values (%L::uuid, 'new@velro.test', 'editor', null::timestamptz)$$, :'invitation_id'),
    'an admin reads the team''s pending invitation'
);
select throws_ok(
    'select token_hash from public.invitations', '42501', 'permission denied for table invitations',
    'the token hash is out of the API''s reach'
);

select tests.clear_authentication();
select is(
    (select token_hash from public.invitations where id = :'invitation_id'),
    encode(sha256(convert_to(:'token', 'utf8')), 'hex'),
    'only the sha256 of the token is stored'
);
select is_empty(
    format(
        $$select 1 from public.invitations as i where to_jsonb(i)::text like '%%' || %1$L || '%%'
        union all select 1 from private.audit_events as a where to_jsonb(a)::text like '%%' || %1$L || '%%'$$,
        :'token'
    ),
    'the token itself is stored nowhere, not in the audit log either'
);
select ok(
    exists (
        select 1 from private.audit_events
        where event = 'team.member_invited' and actor_id = :'tadmin' and subject_id = :'invitation_id'
    ),
    'the invitation is audited'
);

-- who may read invitations
select tests.authenticate_as(:'towner');
select is((select count(*) from public.invitations), 1::bigint, 'the owner reads the invitation');
select tests.authenticate_as(:'teditor');
select is_empty('select id from public.invitations', 'an editor reads no invitation');
select tests.authenticate_as(:'tviewer');
select is_empty('select id from public.invitations', 'a viewer reads no invitation');
select tests.authenticate_as(:'other');
select is_empty('select id from public.invitations', 'a member of another team reads no invitation');
select tests.authenticate_as(:'newbie');
select is_empty('select id from public.invitations', 'the invitee reads no invitation (the token is her proof)');
select tests.authenticate_as(:'sue');
select is_empty('select id from public.invitations', 'a suspended admin reads no invitation');
select tests.authenticate_as_anon();
select throws_ok(
    'select id from public.invitations', '42501', 'permission denied for table invitations',
    'anon cannot read invitations'
);

-- who may invite
select tests.authenticate_as(:'towner');
select lives_ok(
    $$select public.invite_member('a0000000-0000-4000-8000-000000000001', 'late@velro.test', 'admin')$$,
    'the owner invites an admin'
);
select throws_ok(
    $$select public.invite_member('a0000000-0000-4000-8000-000000000001', 'x@velro.test', 'owner')$$,
    'PT400', 'role must be viewer, editor or admin; ownership is transferred, not invited',
    'nobody invites an owner'
);
select throws_ok(
    $$select public.invite_member('a0000000-0000-4000-8000-000000000001', 'x@velro.test', 'superuser')$$,
    '22P02', 'invalid input value for enum team_role: "superuser"', 'a role outside the enum is refused'
);
select throws_ok(
    $$select public.invite_member('a0000000-0000-4000-8000-000000000001', 'not an email', 'viewer')$$,
    'PT400', 'email must be a valid address like name@example.com', 'an invalid email is refused'
);
select throws_ok(
    $$select public.invite_member('a0000000-0000-4000-8000-000000000001', 'Viewer@velro.test', 'viewer')$$,
    'PT409', 'that user is already a member of the team', 'inviting a member is a conflict'
);
select tests.authenticate_as(:'teditor');
select throws_ok(
    $$select public.invite_member('a0000000-0000-4000-8000-000000000001', 'x@velro.test', 'viewer')$$,
    'PT403', 'this needs the admin role or higher in the team', 'an editor cannot invite'
);
select tests.authenticate_as(:'tviewer');
select throws_ok(
    $$select public.invite_member('a0000000-0000-4000-8000-000000000001', 'x@velro.test', 'viewer')$$,
    'PT403', 'this needs the admin role or higher in the team', 'a viewer cannot invite'
);
select tests.authenticate_as(:'other');
select throws_ok(
    $$select public.invite_member('a0000000-0000-4000-8000-000000000001', 'x@velro.test', 'viewer')$$,
    'PT404', 'team not found', 'a member of another team cannot invite (404)'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    $$select public.invite_member('a0000000-0000-4000-8000-000000000001', 'x@velro.test', 'viewer')$$,
    'PT404', 'team not found', 'a stranger cannot invite (404)'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    $$select public.invite_member('a0000000-0000-4000-8000-000000000001', 'x@velro.test', 'viewer')$$,
    'PT403', 'this account is suspended', 'a suspended admin cannot invite'
);
select tests.authenticate_as_anon();
select throws_ok(
    $$select public.invite_member('a0000000-0000-4000-8000-000000000001', 'x@velro.test', 'viewer')$$,
    '42501', 'permission denied for function invite_member', 'anon cannot invite'
);
select tests.authenticate_as(:'towner');
select throws_ok(
    $$insert into public.invitations (team_id, email, role, token_hash, expires_at)
    values ('a0000000-0000-4000-8000-000000000001', 'x@velro.test', 'viewer', 'h', now() + interval '1 day')$$,
    '42501', 'permission denied for table invitations', 'invitations are made only by invite_member'
);
select tests.clear_authentication();
select is(
    (select count(*) from public.invitations), 2::bigint,
    'the refused invitations wrote nothing: only the two allowed ones exist'
);

-- accepting ---------------------------------------------------------------------------------

select tests.authenticate_as(:'stranger');
select throws_ok(
    format('select public.accept_invitation(%L)', :'token'),
    'PT403', 'this invitation was sent to another email address', 'someone else cannot use the token'
);
select throws_ok(
    format('select public.accept_invitation(%L)', :'token' || 'x'),
    'PT404', 'invitation not found: check the token', 'a wrong token is 404'
);
select throws_ok(
    'select public.accept_invitation(null)',
    'PT404', 'invitation not found: check the token', 'a missing token is 404'
);
select tests.authenticate_as_anon();
select throws_ok(
    format('select public.accept_invitation(%L)', :'token'),
    '42501', 'permission denied for function accept_invitation', 'anon cannot accept'
);
select tests.clear_authentication();
select results_eq(
    format('select accepted_at, accepted_by from public.invitations where id = %L', :'invitation_id'),
    'values (null::timestamptz, null::uuid)',
    'the refused acceptances left the invitation unused'
);

select tests.authenticate_as(:'newbie');
select is_empty('select id from public.teams', 'before accepting, the invitee reads no team');
select results_eq(
    format('select team_id, user_id, role::text from public.accept_invitation(%L)', :'token'),
    format($$values ('a0000000-0000-4000-8000-000000000001'::uuid, %L::uuid, 'editor')$$, :'newbie'),
    'the invitee accepts (email matched case-insensitively) and joins at the invited role'
);
select is((select count(*) from public.teams), 1::bigint, 'and reads the team in the next statement');
select throws_ok(
    format('select public.accept_invitation(%L)', :'token'),
    'PT410', 'this invitation has already been used', 'the token cannot be used twice'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    format('select public.accept_invitation(%L)', :'token'),
    'PT410', 'this invitation has already been used', 'nor by anyone else'
);
select tests.clear_authentication();
select results_eq(
    format('select accepted_by from public.invitations where id = %L and accepted_at is not null', :'invitation_id'),
    format('values (%L::uuid)', :'newbie'),
    'the invitation records who accepted it'
);
select ok(
    exists (
        select 1 from private.audit_events
        where event = 'team.invitation_accepted' and actor_id = :'newbie' and subject_id = :'invitation_id'
    ),
    'the acceptance is audited'
);

-- expiry, replacement, suspended and already-member invitees --------------------------------

select tests.authenticate_as(:'tadmin');
select invitation ->> 'token' as late_token
from (
    select public.invite_member('a0000000-0000-4000-8000-000000000001', 'late@velro.test', 'viewer') as invitation
) as i
\gset
select tests.clear_authentication();
select is(
    (select count(*) from public.invitations where email = 'late@velro.test' and revoked_at is null), 1::bigint,
    'a new invitation replaces the pending one for the same address (the old one is revoked)'
);
update public.invitations set expires_at = now() - interval '1 minute' where email = 'late@velro.test';
select tests.authenticate_as(:'late');
select throws_ok(
    format('select public.accept_invitation(%L)', :'late_token'),
    'PT410', 'this invitation has expired: ask for a new one', 'an expired invitation is gone (410)'
);
select is_empty('select id from public.teams', 'and the invitee did not join');

select tests.authenticate_as(:'other');
select invitation ->> 'token' as sue_token
from (
    select public.invite_member('b0000000-0000-4000-8000-000000000002', 'sue@velro.test', 'viewer') as invitation
) as i
\gset
select tests.authenticate_as(:'sue');
select throws_ok(
    format('select public.accept_invitation(%L)', :'sue_token'),
    'PT403', 'this account is suspended', 'a suspended user cannot accept'
);

select tests.authenticate_as(:'other');
select invitation ->> 'token' as member_token
from (
    select public.invite_member('b0000000-0000-4000-8000-000000000002', 'stranger@velro.test', 'viewer') as invitation
) as i
\gset
select tests.clear_authentication();
insert into public.team_members (team_id, user_id, role)
values ('b0000000-0000-4000-8000-000000000002', :'stranger', 'editor');
select tests.authenticate_as(:'stranger');
select throws_ok(
    format('select public.accept_invitation(%L)', :'member_token'),
    'PT409', 'you are already a member of this team', 'a member cannot accept a second time to change role'
);

select * from finish();
rollback;
