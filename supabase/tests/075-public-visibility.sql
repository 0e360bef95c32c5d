-- Public visibility as a per-row predicate: generations.project_is_public copies its
-- project's publicity on insert and move, a visibility change rewrites it in the same
-- transaction, nobody writes it by hand, private.check_access() finds drift and is for
-- operators only, and no policy lists every public project.
begin;
select plan(24);

select tests.create_user('powner@velro.test') as powner \gset
select tests.create_user('stranger@velro.test') as stranger \gset
select tests.create_user('editor@velro.test') as editor \gset

insert into public.teams (id, name, owner_id) values ('a0000000-0000-4000-8000-000000000001', 'Alpha', :'powner');
insert into public.team_members (team_id, user_id, role) values
('a0000000-0000-4000-8000-000000000001', :'powner', 'owner'),
('a0000000-0000-4000-8000-000000000001', :'editor', 'editor');
insert into public.projects (id, owner_id, name, visibility) values
('c0000000-0000-4000-8000-000000000001', :'powner', 'Gallery', 'public'),
('c0000000-0000-4000-8000-000000000002', :'powner', 'Drafts', 'private');
insert into public.generations (id, owner_id, project_id, model_id, prompt, cost, idempotency_key) values
(
    'd0000000-0000-4000-8000-000000000001', :'powner', 'c0000000-0000-4000-8000-000000000001',
    'fal-ai/veo3', 'shown', 500, 'g1'
),
(
    'd0000000-0000-4000-8000-000000000002', :'powner', 'c0000000-0000-4000-8000-000000000002',
    'fal-ai/veo3', 'draft', 500, 'g2'
),
('d0000000-0000-4000-8000-000000000003', :'powner', null, 'fal-ai/veo3', 'loose', 500, 'g3');

-- the copy --------------------------------------------------------------------------------------------

select results_eq(
    'select id, project_is_public from public.generations order by id',
    $$values ('d0000000-0000-4000-8000-000000000001'::uuid, true),
    ('d0000000-0000-4000-8000-000000000002'::uuid, false), ('d0000000-0000-4000-8000-000000000003'::uuid, false)$$,
    'an inserted generation copies its project''s publicity; one outside a project is not public'
);
update public.generations set project_id = 'c0000000-0000-4000-8000-000000000001'
where id = 'd0000000-0000-4000-8000-000000000002';
select is(
    (select project_is_public from public.generations where id = 'd0000000-0000-4000-8000-000000000002'), true,
    'a generation moved into a public project becomes public'
);
update public.generations set project_id = 'c0000000-0000-4000-8000-000000000002'
where id = 'd0000000-0000-4000-8000-000000000002';
select is(
    (select project_is_public from public.generations where id = 'd0000000-0000-4000-8000-000000000002'), false,
    'and moved back out, stops being public'
);
update public.generations set project_is_public = true where id = 'd0000000-0000-4000-8000-000000000002';
select is(
    (select project_is_public from public.generations where id = 'd0000000-0000-4000-8000-000000000002'), false,
    'even the service side cannot write a copy that disagrees with the project'
);

-- a visibility change rewrites the copy in its own transaction
update public.projects set visibility = 'team' where id = 'c0000000-0000-4000-8000-000000000001';
select is(
    (select project_is_public from public.generations where id = 'd0000000-0000-4000-8000-000000000001'), false,
    'a public project made team-only takes its generations out of public view'
);
update public.projects set visibility = 'public' where id = 'c0000000-0000-4000-8000-000000000001';
select is(
    (select project_is_public from public.generations where id = 'd0000000-0000-4000-8000-000000000001'), true,
    'and made public again puts them back'
);
select is_empty('select * from private.check_access()', 'no drift after every change above');

-- who sees public work --------------------------------------------------------------------------------

select tests.authenticate_as(:'stranger');
select results_eq(
    'select id from public.generations', $$values ('d0000000-0000-4000-8000-000000000001'::uuid)$$,
    'a stranger reads the public project''s generation and nothing else'
);
select results_eq(
    'select id from public.projects', $$values ('c0000000-0000-4000-8000-000000000001'::uuid)$$,
    'and the public project, not the private one'
);
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001') ->> 'access_method', 'public',
    'authorize agrees: public, as viewer'
);
select throws_ok(
    $$update public.generations set project_is_public = true$$, '42501', 'permission denied for table generations',
    'users cannot write the copy'
);
select tests.authenticate_as(:'powner');
update public.projects set visibility = 'private' where id = 'c0000000-0000-4000-8000-000000000001';
select tests.authenticate_as(:'stranger');
select is_empty('select id from public.generations', 'made private by its owner, the stranger reads nothing');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001') ->> 'access_granted', 'false',
    'and authorize denies in the next statement'
);
select tests.authenticate_as(:'powner');
update public.projects set visibility = 'public' where id = 'c0000000-0000-4000-8000-000000000001';
select tests.authenticate_as(:'editor');
select results_eq(
    'select id from public.generations', $$values ('d0000000-0000-4000-8000-000000000001'::uuid)$$,
    'a member of a team the project is not linked to reads only the public work'
);
select tests.authenticate_as_anon();
select throws_ok(
    'select id from public.generations', '42501', 'permission denied for table generations',
    'anon reads no public generation'
);

-- drift is found, and only operators look -------------------------------------------------------------

select tests.clear_authentication();
alter table public.generations disable trigger generations_copy_project_visibility;
update public.generations set project_is_public = true where id = 'd0000000-0000-4000-8000-000000000003';
alter table public.generations enable trigger generations_copy_project_visibility;
select results_eq(
    'select generation_id, project_id, stored, expected from private.check_access()',
    $$values ('d0000000-0000-4000-8000-000000000003'::uuid, null::uuid, true, false)$$,
    'check_access reports a copy that bypassed its trigger, with what it holds and what it should'
);
select tests.authenticate_as(:'powner');
select throws_ok(
    'select * from private.check_access()', '42501', 'permission denied for function check_access',
    'a signed-in user cannot run the drift check'
);
select tests.authenticate_as_service_role();
select throws_ok(
    'select * from private.check_access()', '42501', 'permission denied for function check_access',
    'nor can the service role'
);
select tests.clear_authentication();
select ok(
    not has_function_privilege('anon', 'private.check_access()', 'execute')
    and not has_function_privilege('authenticated', 'private.check_access()', 'execute')
    and not has_function_privilege('service_role', 'private.check_access()', 'execute'),
    'no API role executes check_access'
);

-- policies test visibility per row ---------------------------------------------------------------------

select is_empty(
    $$select policyname from pg_catalog.pg_policies
    where schemaname = 'public' and (qual ~* 'any \(array' or with_check ~* 'any \(array')
    and tablename in ('projects', 'project_teams', 'generations', 'generation_shares')$$,
    'no access policy scans an array of ids per row'
);
select ok(
    (
        select qual ~ 'project_is_public' from pg_catalog.pg_policies
        where tablename = 'generations' and policyname = 'readers can read generations'
    ),
    'generations are public by their own column'
);
select ok(
    (
        select qual ~ 'visibility = ''public''' from pg_catalog.pg_policies
        where tablename = 'projects' and policyname = 'readers can read projects'
    ),
    'projects are public by their own visibility'
);
select is(
    (
        select with_check from pg_catalog.pg_policies
        where tablename = 'generations' and policyname = 'editors can update generations'
    ),
    (
        select qual from pg_catalog.pg_policies
        where tablename = 'generations' and policyname = 'editors can update generations'
    ),
    'the editors'' update policy checks the new row as it checks the old'
);
select tests.authenticate_as(:'stranger');
select is_empty(
    'select * from private.project_ids_for_caller()',
    'a stranger''s project ids do not list the public project: that is a per-row test'
);

select * from finish();
rollback;
