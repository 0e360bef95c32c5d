-- Projects and their team links: creating, reading, updating and deleting through RLS,
-- link_project_team/unlink_project_team, authorize_project, visibility, and revocation in
-- the next statement.
begin;
select plan(90);

select tests.create_user('powner@velro.test') as powner \gset
select tests.create_user('towner@velro.test') as towner \gset
select tests.create_user('tadmin@velro.test') as tadmin \gset
select tests.create_user('teditor@velro.test') as teditor \gset
select tests.create_user('tviewer@velro.test') as tviewer \gset
select tests.create_user('other@velro.test') as other \gset
select tests.create_user('stranger@velro.test') as stranger \gset
select tests.create_user('sue@velro.test') as sue \gset

-- team Alpha: the project owner is an editor in it; Beta is another team; in Gamma she is
-- only a viewer
insert into public.teams (id, name, owner_id) values
('a0000000-0000-4000-8000-000000000001', 'Alpha', :'towner'),
('b0000000-0000-4000-8000-000000000002', 'Beta', :'other'),
('e0000000-0000-4000-8000-000000000005', 'Gamma', :'other');
insert into public.team_members (team_id, user_id, role) values
('a0000000-0000-4000-8000-000000000001', :'towner', 'owner'),
('a0000000-0000-4000-8000-000000000001', :'tadmin', 'admin'),
('a0000000-0000-4000-8000-000000000001', :'teditor', 'editor'),
('a0000000-0000-4000-8000-000000000001', :'tviewer', 'viewer'),
('a0000000-0000-4000-8000-000000000001', :'powner', 'editor'),
('a0000000-0000-4000-8000-000000000001', :'sue', 'admin'),
('b0000000-0000-4000-8000-000000000002', :'other', 'owner'),
('e0000000-0000-4000-8000-000000000005', :'other', 'owner'),
('e0000000-0000-4000-8000-000000000005', :'powner', 'viewer');
update public.profiles set status = 'suspended' where id = :'sue';

-- creating ----------------------------------------------------------------------------------

select tests.authenticate_as(:'powner');
insert into public.projects (name, description) values ('Launch', 'Spring campaign') returning id as project \gset
select results_eq(
    'select owner_id, visibility::text from public.projects',
    format($$values (%L::uuid, 'private')$$, :'powner'),
    'a user creates a project: she owns it and it starts private'
);
select throws_ok(
    format($$insert into public.projects (name, owner_id) values ('Theirs', %L)$$, :'stranger'),
    '42501', 'permission denied for table projects', 'nobody creates a project in someone else''s name'
);
select throws_ok(
    $$insert into public.projects (name) values ('   ')$$, '23514', null,
    'a blank project name violates the check constraint'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    $$insert into public.projects (name) values ('Sue''s')$$, '42501',
    'new row violates row-level security policy for table "projects"', 'a suspended user cannot create projects'
);
select tests.authenticate_as_anon();
select throws_ok(
    $$insert into public.projects (name) values ('Anon''s')$$, '42501', 'permission denied for table projects',
    'anon cannot create projects'
);
select tests.clear_authentication();
select is((select count(*) from public.projects), 1::bigint, 'the refused inserts wrote nothing');

-- a private project: owner only --------------------------------------------------------------

select tests.authenticate_as(:'powner');
select is(
    public.authorize_project(:'project'),
    '{"access_granted": true, "access_method": "project_owner", "effective_role": "owner",
      "permissions": ["read", "write", "share", "delete"]}'::jsonb,
    'the owner holds the project as owner'
);
select tests.authenticate_as(:'towner');
select is_empty('select id from public.projects', 'a team owner does not see an unlinked private project');
select is(
    public.authorize_project(:'project'),
    '{"access_granted": false, "access_method": null, "effective_role": null, "permissions": []}'::jsonb,
    'and authorize_project denies it'
);

-- linking -------------------------------------------------------------------------------------

select tests.authenticate_as(:'teditor');
select throws_ok(
    format($$select public.link_project_team(%L, 'a0000000-0000-4000-8000-000000000001', 'admin')$$, :'project'),
    'PT404', 'project not found', 'a team member cannot link a project she cannot read (404)'
);
select tests.authenticate_as(:'powner');
select throws_ok(
    format($$select public.link_project_team(%L, 'b0000000-0000-4000-8000-000000000002', 'viewer')$$, :'project'),
    'PT404', 'team not found', 'the owner cannot link to a team she is not in'
);
select throws_ok(
    format($$select public.link_project_team(%L, 'e0000000-0000-4000-8000-000000000005', 'viewer')$$, :'project'),
    'PT403', 'this needs the editor role or higher in the team', 'linking into a team needs at least editor there'
);
select throws_ok(
    format($$select public.link_project_team(%L, 'a0000000-0000-4000-8000-000000000001', 'owner')$$, :'project'),
    'PT400', 'access_level must be viewer, editor or admin', 'a link cannot grant owner'
);
select tests.clear_authentication();
select results_eq(
    format('select visibility::text from public.projects where id = %L', :'project'), $$values ('private')$$,
    'the refused links changed nothing'
);
select tests.authenticate_as(:'powner');
select results_eq(
    format(
        $$select project_id, team_id, access_level::text, linked_by
        from public.link_project_team(%L, 'a0000000-0000-4000-8000-000000000001', 'admin')$$, :'project'
    ),
    format(
        $$values (%L::uuid, 'a0000000-0000-4000-8000-000000000001'::uuid, 'admin', %L::uuid)$$, :'project', :'powner'
    ),
    'the owner links the project to her team at admin level'
);
select results_eq(
    format('select visibility::text from public.projects where id = %L', :'project'), $$values ('team')$$,
    'linking makes a private project team-visible'
);

-- each team role, through the link: least(team role, link level)
select tests.authenticate_as(:'towner');
select results_eq('select id from public.projects', format('values (%L::uuid)', :'project'), 'the team owner reads it');
select is(
    public.authorize_project(:'project') - 'permissions',
    '{"access_granted": true, "access_method": "project_team", "effective_role": "admin"}'::jsonb,
    'the team owner gets admin, capped by the link level'
);
select tests.authenticate_as(:'tadmin');
select results_eq('select id from public.projects', format('values (%L::uuid)', :'project'), 'a team admin reads it');
select is(public.authorize_project(:'project') ->> 'effective_role', 'admin', 'as admin');
select tests.authenticate_as(:'teditor');
select results_eq('select id from public.projects', format('values (%L::uuid)', :'project'), 'a team editor reads it');
select is(
    public.authorize_project(:'project'),
    '{"access_granted": true, "access_method": "project_team", "effective_role": "editor",
      "permissions": ["read", "write"]}'::jsonb,
    'as editor, with read and write'
);
select tests.authenticate_as(:'tviewer');
select results_eq('select id from public.projects', format('values (%L::uuid)', :'project'), 'a team viewer reads it');
select is(
    public.authorize_project(:'project'),
    '{"access_granted": true, "access_method": "project_team", "effective_role": "viewer",
      "permissions": ["read"]}'::jsonb,
    'as viewer, read only'
);
select results_eq(
    'select team_id from public.project_teams', $$values ('a0000000-0000-4000-8000-000000000001'::uuid)$$,
    'readers of the project read its team link'
);
select tests.authenticate_as(:'powner');
select is(
    public.authorize_project(:'project') ->> 'access_method', 'project_owner',
    'the owner stays owner, not team editor'
);
select tests.authenticate_as(:'other');
select is_empty('select id from public.projects', 'a member of another team reads nothing');
select is_empty('select project_id from public.project_teams', 'nor its links');
select is(public.authorize_project(:'project') ->> 'access_granted', 'false', 'and is denied');
select tests.authenticate_as(:'stranger');
select is_empty('select id from public.projects', 'a stranger reads nothing');
select is_empty('select project_id from public.project_teams', 'nor its links');
select tests.authenticate_as(:'sue');
select is_empty('select id from public.projects', 'a suspended team admin reads nothing');
select is(public.authorize_project(:'project') ->> 'access_granted', 'false', 'and is denied');
select tests.authenticate_as_anon();
select throws_ok(
    'select id from public.projects', '42501', 'permission denied for table projects', 'anon cannot read projects'
);
select throws_ok(
    'select project_id from public.project_teams', '42501', 'permission denied for table project_teams',
    'anon cannot read links'
);
select throws_ok(
    format('select public.authorize_project(%L)', :'project'), '42501',
    'permission denied for function authorize_project', 'anon cannot call authorize_project'
);

-- links change only through the RPCs
select tests.authenticate_as(:'powner');
select throws_ok(
    format(
        $$insert into public.project_teams (project_id, team_id, access_level)
        values (%L, 'b0000000-0000-4000-8000-000000000002', 'admin')$$,
        :'project'
    ),
    '42501', 'permission denied for table project_teams', 'links are not inserted directly'
);
select throws_ok(
    $$update public.project_teams set access_level = 'admin'$$, '42501', 'permission denied for table project_teams',
    'nor updated directly'
);
select throws_ok(
    'delete from public.project_teams', '42501', 'permission denied for table project_teams',
    'nor deleted directly'
);
select throws_ok(
    'select * from private.check_access()', '42501', 'permission denied for function check_access',
    'the operators'' drift check is not callable by users'
);

-- updating --------------------------------------------------------------------------------------

select tests.authenticate_as(:'tadmin');
select is_empty(
    $$update public.projects set name = 'Admin''s' returning id$$,
    'a team admin (through an admin link) cannot rename the project: its shape is the owner''s'
);
select is_empty(
    $$update public.projects set visibility = 'public' returning id$$, 'nor make it public'
);
select throws_ok(
    format($$select public.link_project_team(%L, 'a0000000-0000-4000-8000-000000000001', 'admin')$$, :'project'),
    'PT403', 'this needs the owner role on the project', 'nor link it to a team'
);
select is_empty('delete from public.projects returning id', 'nor delete it');
select throws_ok(
    format('update public.projects set owner_id = %L', :'tadmin'), '42501', 'permission denied for table projects',
    'nobody takes over a project by updating owner_id'
);
select tests.authenticate_as(:'teditor');
select is_empty($$update public.projects set name = 'Editor''s' returning id$$, 'an editor cannot update the project');
select throws_ok(
    format($$select public.link_project_team(%L, 'a0000000-0000-4000-8000-000000000001', 'admin')$$, :'project'),
    'PT403', 'this needs the owner role on the project', 'an editor cannot change the link (403: she can read it)'
);
select tests.authenticate_as(:'tviewer');
select is_empty($$update public.projects set name = 'Viewer''s' returning id$$, 'a viewer cannot update the project');
select tests.authenticate_as(:'stranger');
select is_empty($$update public.projects set name = 'Mine' returning id$$, 'a stranger cannot update the project');
select is_empty('delete from public.projects returning id', 'a stranger cannot delete the project');
select tests.authenticate_as(:'teditor');
select is_empty('delete from public.projects returning id', 'an editor cannot delete the project');
select tests.authenticate_as(:'powner');
select results_eq(
    $$update public.projects set name = 'Launch 2' returning name$$, $$values ('Launch 2')$$,
    'the owner renames it'
);
select tests.clear_authentication();
select results_eq(
    format('select name, visibility::text from public.projects where id = %L', :'project'),
    $$values ('Launch 2', 'team')$$,
    'only the owner''s rename went through'
);

-- lowering the link level takes effect at once
select tests.authenticate_as(:'powner');
select lives_ok(
    format($$select public.link_project_team(%L, 'a0000000-0000-4000-8000-000000000001', 'viewer')$$, :'project'),
    'linking again changes the level'
);
select tests.authenticate_as(:'towner');
select is(public.authorize_project(:'project') ->> 'effective_role', 'viewer', 'the team owner is now a viewer');
select is_empty($$update public.projects set name = 'Owner''s' returning id$$, 'and can no longer update it');
select tests.authenticate_as(:'powner');
select lives_ok(
    format($$select public.link_project_team(%L, 'a0000000-0000-4000-8000-000000000001', 'editor')$$, :'project'),
    'back to editor level'
);

-- revocation: membership, visibility, unlink, suspension ------------------------------------------

select tests.authenticate_as(:'towner');
select lives_ok(
    format($$select public.remove_member('a0000000-0000-4000-8000-000000000001', %L)$$, :'tviewer'),
    'the team owner removes the viewer'
);
select tests.authenticate_as(:'tviewer');
select is_empty('select id from public.projects', 'the removed member reads the project no more (next statement)');
select is(public.authorize_project(:'project') ->> 'access_granted', 'false', 'and is denied');

select tests.authenticate_as(:'powner');
select lives_ok(
    format($$update public.projects set visibility = 'private' where id = %L$$, :'project'),
    'the owner makes the project private'
);
select tests.authenticate_as(:'teditor');
select is_empty('select id from public.projects', 'linked teams lose it in the next statement');
select is(public.authorize_project(:'project') ->> 'access_granted', 'false', 'authorize_project agrees');
select is_empty('select project_id from public.project_teams', 'and its link is hidden from the team');
select tests.authenticate_as(:'powner');
select results_eq(
    'select team_id from public.project_teams', $$values ('a0000000-0000-4000-8000-000000000001'::uuid)$$,
    'while its owner still sees the link she made'
);

select tests.authenticate_as(:'powner');
select lives_ok(
    format($$update public.projects set visibility = 'public' where id = %L$$, :'project'),
    'the owner makes the project public'
);
select tests.authenticate_as(:'stranger');
select results_eq(
    'select id from public.projects', format('values (%L::uuid)', :'project'),
    'any signed-in user reads a public project'
);
select is(
    public.authorize_project(:'project'),
    '{"access_granted": true, "access_method": "public", "effective_role": "viewer", "permissions": ["read"]}'::jsonb,
    'as a viewer via public'
);
select is_empty($$update public.projects set name = 'Stranger''s' returning id$$, 'but cannot update it');
select tests.authenticate_as(:'teditor');
select is(
    public.authorize_project(:'project') ->> 'effective_role', 'editor',
    'a linked editor keeps editor on a public project (highest wins)'
);
select tests.authenticate_as(:'sue');
select is_empty('select id from public.projects', 'a suspended user reads not even public projects');
select tests.authenticate_as_anon();
select throws_ok(
    'select id from public.projects', '42501', 'permission denied for table projects', 'anon reads no public project'
);

select tests.authenticate_as(:'powner');
select lives_ok(
    format($$update public.projects set visibility = 'team' where id = %L$$, :'project'),
    'back to team visibility'
);
select tests.authenticate_as(:'teditor');
select throws_ok(
    format($$select public.unlink_project_team(%L, 'a0000000-0000-4000-8000-000000000001')$$, :'project'),
    'PT403', 'this needs the owner role on the project', 'an editor of the team cannot unlink'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    format($$select public.unlink_project_team(%L, 'a0000000-0000-4000-8000-000000000001')$$, :'project'),
    'PT404', 'project not found', 'a stranger cannot unlink (404)'
);
select tests.authenticate_as(:'teditor');
select is((select count(*) from public.projects), 1::bigint, 'the refused unlinks changed nothing');
select tests.authenticate_as(:'tadmin');
select lives_ok(
    format($$select public.unlink_project_team(%L, 'a0000000-0000-4000-8000-000000000001')$$, :'project'),
    'an admin of the team takes the project out of her team'
);
select tests.authenticate_as(:'powner');
select lives_ok(
    format($$select public.link_project_team(%L, 'a0000000-0000-4000-8000-000000000001', 'editor')$$, :'project'),
    'the owner links it again'
);
select lives_ok(
    format($$select public.unlink_project_team(%L, 'a0000000-0000-4000-8000-000000000001')$$, :'project'),
    'the owner unlinks the team'
);
select throws_ok(
    format($$select public.unlink_project_team(%L, 'a0000000-0000-4000-8000-000000000001')$$, :'project'),
    'PT404', 'this project is not linked to that team', 'unlinking twice is 404'
);
select tests.authenticate_as(:'teditor');
select is_empty('select id from public.projects', 'the unlinked team loses the project in the next statement');
select tests.authenticate_as(:'towner');
select is_empty('select id from public.projects', 'every member of it');
select tests.authenticate_as(:'sue');
select throws_ok(
    format($$select public.unlink_project_team(%L, 'a0000000-0000-4000-8000-000000000001')$$, :'project'),
    'PT403', 'this account is suspended', 'a suspended user cannot unlink'
);
select tests.authenticate_as_anon();
select throws_ok(
    format($$select public.link_project_team(%L, 'a0000000-0000-4000-8000-000000000001', 'viewer')$$, :'project'),
    '42501', 'permission denied for function link_project_team', 'anon cannot link'
);

-- deleting ----------------------------------------------------------------------------------------

select tests.authenticate_as(:'powner');
select lives_ok(
    format($$select public.link_project_team(%L, 'a0000000-0000-4000-8000-000000000001', 'admin')$$, :'project'),
    'relinked at admin level'
);
select tests.authenticate_as(:'tadmin');
select is_empty(
    format('delete from public.projects where id = %L returning id', :'project'),
    'a project admin through the link cannot delete it'
);
select tests.authenticate_as(:'powner');
select lives_ok(format('delete from public.projects where id = %L', :'project'), 'its owner deletes it');
select tests.clear_authentication();
select is_empty(
    format(
        $$select 1 from public.projects where id = %1$L
        union all select 1 from public.generations where project_id = %1$L
        union all select 1 from public.project_teams where project_id = %1$L$$,
        :'project'
    ),
    'it is gone, and its links and generations with it'
);

-- suspension of the owner -------------------------------------------------------------------------

select tests.authenticate_as(:'powner');
insert into public.projects (name) values ('Second') returning id as second \gset
select tests.clear_authentication();
update public.profiles set status = 'suspended' where id = :'powner';
select tests.authenticate_as(:'powner');
select is_empty('select id from public.projects', 'a suspended owner reads not even her own projects');
select is(public.authorize_project(:'second') ->> 'access_granted', 'false', 'and authorize_project denies her');

select * from finish();
rollback;
