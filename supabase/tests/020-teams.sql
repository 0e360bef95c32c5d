-- Teams and members: create_team, who reads what, renaming, change_member_role,
-- remove_member, leave_team; exactly one owner; revocation in the next statement.
begin;
select plan(73);

select tests.create_user('owner@velro.test') as towner \gset
select tests.create_user('admin@velro.test') as tadmin \gset
select tests.create_user('editor@velro.test') as teditor \gset
select tests.create_user('viewer@velro.test') as tviewer \gset
select tests.create_user('other@velro.test') as other \gset
select tests.create_user('stranger@velro.test') as stranger \gset
select tests.create_user('sue@velro.test') as sue \gset

-- create_team -------------------------------------------------------------------------------

select tests.authenticate_as(:'towner');
select id as team from public.create_team('  Alpha  ') \gset
select tests.authenticate_as(:'other');
select id as other_team from public.create_team('Beta') \gset

select tests.clear_authentication();
select results_eq(
    format('select name, owner_id from public.teams where id = %L', :'team'),
    format($$values ('Alpha', %L::uuid)$$, :'towner'),
    'create_team trims the name and makes the caller its owner'
);
select results_eq(
    format('select user_id, role::text from public.team_members where team_id = %L', :'team'),
    format($$values (%L::uuid, 'owner')$$, :'towner'),
    'the creator is the one owner member'
);
select ok(
    exists (
        select 1 from private.audit_events
        where event = 'team.created' and actor_id = :'towner' and team_id = :'team'
    ),
    'team creation is audited'
);

insert into public.team_members (team_id, user_id, role) values
(:'team', :'tadmin', 'admin'),
(:'team', :'teditor', 'editor'),
(:'team', :'tviewer', 'viewer'),
(:'team', :'sue', 'editor');
update public.profiles set status = 'suspended' where id = :'sue';

select tests.authenticate_as(:'sue');
select throws_ok(
    $$select public.create_team('Sue''s')$$, 'PT403', 'this account is suspended',
    'a suspended user cannot create a team'
);
select tests.authenticate_as_anon();
select throws_ok(
    $$select public.create_team('Anon''s')$$, '42501', 'permission denied for function create_team',
    'anon cannot create a team'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    $$select public.create_team('   ')$$, 'PT400', 'team name must be 1 to 100 characters',
    'a blank team name is refused'
);
select throws_ok(
    format('select public.create_team(%L)', repeat('x', 101)), 'PT400', 'team name must be 1 to 100 characters',
    'a team name over 100 characters is refused'
);
select throws_ok(
    'select public.create_team(null)', 'PT400', 'team name must be 1 to 100 characters',
    'a missing team name is refused'
);
select throws_ok(
    format($$insert into public.teams (name, owner_id) values ('Direct', %L)$$, :'stranger'),
    '42501', 'permission denied for table teams', 'teams are created only through create_team'
);
select is_empty('select id from public.teams', 'the refused creations left the stranger with no team');

-- reading -------------------------------------------------------------------------------------

select tests.authenticate_as(:'towner');
select results_eq('select id from public.teams', format('values (%L::uuid)', :'team'), 'the owner reads the team');
select is((select count(*) from public.team_members), 5::bigint, 'the owner reads all five members');
select tests.authenticate_as(:'tadmin');
select results_eq('select id from public.teams', format('values (%L::uuid)', :'team'), 'an admin reads the team');
select tests.authenticate_as(:'teditor');
select results_eq('select id from public.teams', format('values (%L::uuid)', :'team'), 'an editor reads the team');
select tests.authenticate_as(:'tviewer');
select results_eq('select id from public.teams', format('values (%L::uuid)', :'team'), 'a viewer reads the team');
select is((select count(*) from public.team_members), 5::bigint, 'a viewer reads the member list');
select tests.authenticate_as(:'other');
select results_eq(
    'select id from public.teams', format('values (%L::uuid)', :'other_team'),
    'a member of another team reads only his own team'
);
select results_eq(
    'select team_id, user_id from public.team_members', format('values (%L::uuid, %L::uuid)', :'other_team', :'other'),
    'and only his own team''s members'
);
select tests.authenticate_as(:'stranger');
select is_empty('select id from public.teams', 'a stranger reads no team');
select is_empty('select user_id from public.team_members', 'a stranger reads no member');
select tests.authenticate_as(:'sue');
select is_empty('select id from public.teams', 'a suspended member reads no team');
select is_empty('select user_id from public.team_members', 'a suspended member reads no member');
select tests.authenticate_as_anon();
select throws_ok('select id from public.teams', '42501', 'permission denied for table teams', 'anon cannot read teams');
select throws_ok(
    'select user_id from public.team_members', '42501', 'permission denied for table team_members',
    'anon cannot read members'
);

-- renaming ------------------------------------------------------------------------------------

select tests.authenticate_as(:'tadmin');
select results_eq(
    $$update public.teams set name = 'Alpha Squad' returning name$$, $$values ('Alpha Squad')$$,
    'an admin renames the team'
);
select throws_ok(
    format('update public.teams set owner_id = %L', :'tadmin'), '42501', 'permission denied for table teams',
    'nobody changes owner_id directly'
);
select tests.authenticate_as(:'teditor');
select is_empty($$update public.teams set name = 'Editor''s' returning id$$, 'an editor cannot rename the team');
select tests.authenticate_as(:'stranger');
select is_empty($$update public.teams set name = 'Mine' returning id$$, 'a stranger cannot rename the team');
select tests.authenticate_as(:'sue');
select is_empty($$update public.teams set name = 'Sue''s' returning id$$, 'a suspended member cannot rename the team');

-- members change only through the RPCs
select tests.authenticate_as(:'towner');
select throws_ok(
    format($$insert into public.team_members (team_id, user_id, role) values (%L, %L, 'admin')$$, :'team', :'stranger'),
    '42501', 'permission denied for table team_members', 'even the owner cannot insert members directly'
);
select throws_ok(
    $$update public.team_members set role = 'owner'$$, '42501', 'permission denied for table team_members',
    'nor update roles directly'
);
select throws_ok(
    'delete from public.team_members', '42501', 'permission denied for table team_members',
    'nor delete members directly'
);

-- change_member_role ----------------------------------------------------------------------------

select tests.authenticate_as(:'tadmin');
select results_eq(
    format($$select role::text from public.change_member_role(%L, %L, 'editor')$$, :'team', :'tviewer'),
    $$values ('editor')$$,
    'an admin promotes a viewer to editor'
);
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'owner')$$, :'team', :'teditor'),
    'PT400', 'ownership moves only by an explicit transfer: use transfer_team_ownership',
    'an admin cannot grant owner (ownership moves only by transfer)'
);
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'owner')$$, :'team', :'tadmin'),
    'PT400', 'ownership moves only by an explicit transfer: use transfer_team_ownership',
    'an admin cannot make herself owner'
);
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'viewer')$$, :'team', :'towner'),
    'PT409', 'the owner cannot be demoted: the owner transfers ownership instead', 'an admin cannot demote the owner'
);
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'viewer')$$, :'team', :'stranger'),
    'PT404', 'member not found in this team', 'changing a non-member is 404'
);
select tests.authenticate_as(:'teditor');
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'admin')$$, :'team', :'teditor'),
    'PT403', 'this needs the admin role or higher in the team', 'an editor cannot change roles, not even her own'
);
select tests.authenticate_as(:'tviewer');
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'admin')$$, :'team', :'tviewer'),
    'PT403', 'this needs the admin role or higher in the team', 'a (now editor) member cannot promote herself'
);
select tests.authenticate_as(:'other');
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'viewer')$$, :'team', :'teditor'),
    'PT404', 'team not found', 'a member of another team learns nothing (404)'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'viewer')$$, :'team', :'teditor'),
    'PT404', 'team not found', 'a stranger learns nothing (404)'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'viewer')$$, :'team', :'teditor'),
    'PT403', 'this account is suspended', 'a suspended member cannot change roles'
);
select tests.authenticate_as_anon();
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'viewer')$$, :'team', :'teditor'),
    '42501', 'permission denied for function change_member_role', 'anon cannot change roles'
);

-- an admin cannot touch another admin
select tests.authenticate_as(:'towner');
select lives_ok(
    format($$select public.change_member_role(%L, %L, 'admin')$$, :'team', :'teditor'),
    'the owner makes the editor an admin'
);
select tests.authenticate_as(:'tadmin');
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'viewer')$$, :'team', :'teditor'),
    'PT403', 'admins can change only editors and viewers', 'an admin cannot demote another admin'
);
select tests.authenticate_as(:'towner');
select throws_ok(
    format($$select public.change_member_role(%L, %L, 'admin')$$, :'team', :'towner'),
    'PT409', 'the owner cannot be demoted: the owner transfers ownership instead', 'the owner cannot demote herself'
);
select lives_ok(
    format($$select public.change_member_role(%L, %L, 'editor')$$, :'team', :'teditor'),
    'the owner demotes an admin'
);

select tests.clear_authentication();
select set_eq(
    format('select user_id, role::text from public.team_members where team_id = %L', :'team'),
    format(
        $$values (%L::uuid, 'owner'), (%L::uuid, 'admin'), (%L::uuid, 'editor'), (%L::uuid, 'editor'),
        (%L::uuid, 'editor')$$,
        :'towner', :'tadmin', :'teditor', :'tviewer', :'sue'
    ),
    'after the refused calls only the allowed role changes are in place'
);
select ok(
    exists (
        select 1 from private.audit_events
        where
            event = 'team.role_changed' and actor_id = :'tadmin' and subject_id = :'tviewer'
            and details = '{"from": "viewer", "to": "editor"}'::jsonb
    ),
    'role changes are audited with from and to'
);

-- ownership transfer: still exactly one owner
select tests.authenticate_as(:'towner');
select results_eq(
    format('select owner_id from public.transfer_team_ownership(%L, %L)', :'team', :'tadmin'),
    format('values (%L::uuid)', :'tadmin'),
    'the owner transfers ownership to the admin'
);
select tests.clear_authentication();
select results_eq(
    format($$select user_id from public.team_members where team_id = %L and role = 'owner'$$, :'team'),
    format('values (%L::uuid)', :'tadmin'),
    'exactly one owner after the transfer'
);
select results_eq(
    format('select owner_id from public.teams where id = %L', :'team'),
    format('values (%L::uuid)', :'tadmin'),
    'teams.owner_id follows the transfer'
);
select is(
    (select role::text from public.team_members where team_id = :'team' and user_id = :'towner'), 'admin',
    'the previous owner stays as admin'
);
select throws_ok(
    format($$insert into public.team_members (team_id, user_id, role) values (%L, %L, 'owner')$$, :'team', :'stranger'),
    '23505', null, 'the database itself refuses a second owner'
);
select tests.authenticate_as(:'towner');
select throws_ok(
    format('select public.remove_member(%L, %L)', :'team', :'tadmin'),
    'PT409', 'the owner cannot be removed: transfer ownership first', 'the former owner cannot remove the new owner'
);

-- remove_member ----------------------------------------------------------------------------------

select tests.authenticate_as(:'teditor');
select throws_ok(
    format('select public.remove_member(%L, %L)', :'team', :'tviewer'),
    'PT403', 'this needs the admin role or higher in the team', 'an editor cannot remove members'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    format('select public.remove_member(%L, %L)', :'team', :'tviewer'),
    'PT404', 'team not found', 'a stranger cannot remove members (404)'
);
select tests.authenticate_as(:'other');
select throws_ok(
    format('select public.remove_member(%L, %L)', :'team', :'tviewer'),
    'PT404', 'team not found', 'a member of another team cannot remove members (404)'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    format('select public.remove_member(%L, %L)', :'team', :'tviewer'),
    'PT403', 'this account is suspended', 'a suspended member cannot remove members'
);
select throws_ok(
    format('select public.leave_team(%L)', :'team'),
    'PT403', 'this account is suspended', 'a suspended member cannot even leave (an operator reactivates first)'
);
select tests.authenticate_as_anon();
select throws_ok(
    format('select public.remove_member(%L, %L)', :'team', :'tviewer'),
    '42501', 'permission denied for function remove_member', 'anon cannot remove members'
);
select throws_ok(
    format('select public.leave_team(%L)', :'team'), '42501', 'permission denied for function leave_team',
    'anon cannot leave a team'
);
select tests.clear_authentication();
select is(
    (select count(*) from public.team_members where team_id = :'team'), 5::bigint,
    'the refused removals and leaves changed nothing'
);
select tests.authenticate_as(:'towner');
-- towner is now an admin: admins cannot remove admins
select tests.clear_authentication();
update public.team_members set role = 'admin' where team_id = :'team' and user_id = :'teditor';
select tests.authenticate_as(:'towner');
select throws_ok(
    format('select public.remove_member(%L, %L)', :'team', :'teditor'),
    'PT403', 'admins can remove only editors and viewers', 'an admin cannot remove another admin'
);
select throws_ok(
    format('select public.remove_member(%L, %L)', :'team', :'stranger'),
    'PT404', 'member not found in this team', 'removing a non-member is 404'
);
select tests.authenticate_as(:'tviewer');
select is((select count(*) from public.teams), 1::bigint, 'the member about to be removed still reads the team');
select tests.authenticate_as(:'towner');
select lives_ok(format('select public.remove_member(%L, %L)', :'team', :'tviewer'), 'an admin removes an editor');
select tests.authenticate_as(:'tviewer');
select is_empty('select id from public.teams', 'the removed member reads no team from the next statement on');
select throws_ok(
    format('select public.leave_team(%L)', :'team'), 'PT404', 'team not found',
    'and is a stranger to it'
);

-- leave_team ---------------------------------------------------------------------------------------

select tests.authenticate_as(:'tadmin');
select throws_ok(
    format('select public.leave_team(%L)', :'team'), 'PT409', 'the owner cannot leave: transfer ownership first',
    'the owner cannot leave'
);
select tests.authenticate_as(:'teditor');
select lives_ok(format('select public.leave_team(%L)', :'team'), 'an admin leaves');
select is_empty('select id from public.teams', 'and reads no team from the next statement on');

-- suspension ---------------------------------------------------------------------------------------

select tests.clear_authentication();
update public.profiles set status = 'suspended' where id = :'towner';
select tests.authenticate_as(:'towner');
select is_empty('select id from public.teams', 'a member suspended mid-session reads no team in the next statement');

select * from finish();
rollback;
