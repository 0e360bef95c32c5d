-- Role grants and ownership: only the owner makes or unmakes admins, admins move editors
-- and viewers only, ownership moves only by transfer_team_ownership (audited; the old
-- owner stays as admin), and a team always has exactly one owner, who is teams.owner_id.
begin;
select plan(36);

select * from tests.create_world() \gset
select tests.create_user('admin2@velro.test') as tadmin2 \gset
select tests.create_user('zed@velro.test') as zed \gset
insert into public.team_members (team_id, user_id, role) values
('a0000000-0000-4000-8000-000000000001', :'tadmin2', 'admin'),
('a0000000-0000-4000-8000-000000000001', :'zed', 'viewer');
update public.profiles set status = 'suspended' where id = :'zed';

\set team 'a0000000-0000-4000-8000-000000000001'

-- who makes admins ----------------------------------------------------------------------------

select tests.authenticate_as(:'tadmin');
select results_eq(
    format($$select role::text from public.change_member_role(%L, %L, 'editor')$$, :'team', :'tviewer'),
    $$values ('editor')$$, 'an admin promotes a viewer to editor'
);
select lives_ok(
    format($$select public.change_member_role(%L, %L, 'viewer')$$, :'team', :'tviewer'),
    'and demotes her back to viewer'
);
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'admin')$$, :'team', :'teditor'),
    'PT403', 'only the owner can make someone admin', 'an admin cannot make an editor admin'
);
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'editor')$$, :'team', :'tadmin2'),
    'PT403', 'admins can change only editors and viewers', 'an admin cannot demote another admin'
);
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'viewer')$$, :'team', :'tadmin'),
    'PT403', 'admins can change only editors and viewers', 'an admin cannot demote herself'
);
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'owner')$$, :'team', :'teditor'),
    'PT400', 'ownership moves only by an explicit transfer: use transfer_team_ownership',
    'nobody is made owner by a role change'
);
select tests.authenticate_as(:'teditor');
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'viewer')$$, :'team', :'tviewer'),
    'PT403', 'this needs the admin role or higher in the team', 'an editor changes no role'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'admin')$$, :'team', :'teditor'),
    'PT403', 'this account is suspended', 'a suspended admin changes no role'
);
select tests.clear_authentication();
select results_eq(
    $$select user_id, role::text from public.team_members
    where team_id = 'a0000000-0000-4000-8000-000000000001' and role in ('admin', 'editor') order by role, user_id$$,
    format(
        $$select * from (values (%L::uuid, 'editor'), (%L::uuid, 'admin'), (%L::uuid, 'admin'), (%L::uuid, 'admin'))
        as v (u, r) order by r, u$$,
        :'teditor', :'tadmin', :'tadmin2', :'sue'
    ),
    'the refused calls changed no role'
);

select tests.authenticate_as(:'towner');
select results_eq(
    format($$select role::text from public.change_member_role(%L, %L, 'admin')$$, :'team', :'teditor'),
    $$values ('admin')$$, 'the owner makes an editor admin'
);
select results_eq(
    format($$select role::text from public.change_member_role(%L, %L, 'editor')$$, :'team', :'teditor'),
    $$values ('editor')$$, 'and unmakes her'
);
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'owner')$$, :'team', :'tadmin'),
    'PT400', 'ownership moves only by an explicit transfer: use transfer_team_ownership',
    'not even the owner makes an owner by a role change'
);
select tests.clear_authentication();
select ok(
    exists (
        select 1 from private.audit_events
        where
            event = 'team.role_changed' and actor_id = :'towner' and subject_id = :'teditor'
            and details = '{"from": "editor", "to": "admin"}'::jsonb
    ),
    'making an admin is audited'
);

-- transfer_team_ownership ---------------------------------------------------------------------

select tests.authenticate_as(:'tadmin');
select throws_ok(
    format('select public.transfer_team_ownership(%L, %L)', :'team', :'tadmin'),
    'PT403', 'only the team owner can transfer ownership', 'an admin cannot take ownership'
);
select tests.authenticate_as(:'teditor');
select throws_ok(
    format('select public.transfer_team_ownership(%L, %L)', :'team', :'tadmin'),
    'PT403', 'only the team owner can transfer ownership', 'an editor cannot transfer'
);
select tests.authenticate_as(:'other');
select throws_ok(
    format('select public.transfer_team_ownership(%L, %L)', :'team', :'other'),
    'PT404', 'team not found', 'a member of another team learns nothing (404)'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    format('select public.transfer_team_ownership(%L, %L)', :'team', :'stranger'),
    'PT404', 'team not found', 'a stranger learns nothing (404)'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    format('select public.transfer_team_ownership(%L, %L)', :'team', :'sue'),
    'PT403', 'this account is suspended', 'a suspended member cannot transfer'
);
select tests.authenticate_as_anon();
select throws_ok(
    format('select public.transfer_team_ownership(%L, %L)', :'team', :'stranger'),
    '42501', 'permission denied for function transfer_team_ownership', 'anon cannot transfer'
);
select tests.authenticate_as(:'towner');
select throws_ok(
    format('select public.transfer_team_ownership(%L, %L)', :'team', :'stranger'),
    'PT404', 'member not found in this team: ownership goes to a member', 'ownership goes only to a member'
);
select throws_ok(
    format('select public.transfer_team_ownership(%L, %L)', :'team', :'towner'),
    'PT409', 'you already own this team', 'the owner cannot transfer to herself'
);
select throws_ok(
    format('select public.transfer_team_ownership(%L, %L)', :'team', :'zed'),
    'PT409', 'a suspended member cannot become the owner', 'nor to a suspended member'
);
select tests.clear_authentication();
select results_eq(
    $$select user_id from public.team_members
    where team_id = 'a0000000-0000-4000-8000-000000000001' and role = 'owner'$$,
    format('values (%L::uuid)', :'towner'),
    'the refused transfers left the owner in place'
);

select tests.authenticate_as(:'towner');
select results_eq(
    format('select id, owner_id from public.transfer_team_ownership(%L, %L)', :'team', :'teditor'),
    format('values (%L::uuid, %L::uuid)', :'team', :'teditor'),
    'the owner transfers the team to an editor'
);
select tests.clear_authentication();
select set_eq(
    $$select user_id, role::text from public.team_members
    where team_id = 'a0000000-0000-4000-8000-000000000001' and user_id in (
        select owner_id from public.teams where id = 'a0000000-0000-4000-8000-000000000001'
    ) or (team_id = 'a0000000-0000-4000-8000-000000000001' and role = 'owner')$$,
    format($$values (%L::uuid, 'owner')$$, :'teditor'),
    'exactly one owner, who is teams.owner_id'
);
select is(
    (select role::text from public.team_members where team_id = :'team' and user_id = :'towner'), 'admin',
    'the old owner stays as admin'
);
select ok(
    exists (
        select 1 from private.audit_events
        where
            event = 'team.ownership_transferred' and actor_id = :'towner' and team_id = :'team'
            and details = jsonb_build_object('from', :'towner'::uuid, 'to', :'teditor'::uuid, 'new_owner_was', 'editor')
    ),
    'the transfer is audited with both owners'
);
select tests.authenticate_as(:'towner');
select throws_ok(
    format('select public.transfer_team_ownership(%L, %L)', :'team', :'towner'),
    'PT403', 'only the team owner can transfer ownership', 'the old owner can transfer no more'
);
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'editor')$$, :'team', :'tadmin'),
    'PT403', 'admins can change only editors and viewers', 'and, as an admin now, unmakes no admin'
);
select tests.authenticate_as(:'teditor');
select lives_ok(
    format('select public.transfer_team_ownership(%L, %L)', :'team', :'towner'),
    'the new owner hands the team back'
);
select tests.clear_authentication();
select is(
    (select owner_id from public.teams where id = :'team'), :'towner'::uuid,
    'ownership came back'
);

-- the database keeps exactly one owner, whoever writes ---------------------------------------

set constraints public.team_members_have_one_owner, public.teams_have_one_owner immediate;
select throws_ok(
    format('delete from public.team_members where team_id = %L and user_id = %L', :'team', :'towner'),
    'PT409', 'a team has exactly one owner, who is teams.owner_id: transfer ownership instead',
    'removing the owner member directly is refused'
);
select throws_ok(
    format($$update public.team_members set role = 'admin' where team_id = %L and user_id = %L$$, :'team', :'towner'),
    'PT409', 'a team has exactly one owner, who is teams.owner_id: transfer ownership instead',
    'demoting the owner directly is refused'
);
select throws_ok(
    format('update public.teams set owner_id = %L where id = %L', :'tadmin', :'team'),
    'PT409', 'a team has exactly one owner, who is teams.owner_id: transfer ownership instead',
    'pointing owner_id at someone who is not the owner member is refused'
);
select throws_ok(
    format($$insert into public.team_members (team_id, user_id, role) values (%L, %L, 'owner')$$, :'team', :'stranger'),
    '23505', null, 'a second owner is refused by the unique index'
);
select lives_ok(
    format('delete from public.teams where id = %L', :'team'),
    'deleting the whole team takes its owner along without complaint'
);
set constraints public.team_members_have_one_owner, public.teams_have_one_owner deferred;

select * from finish();
rollback;
