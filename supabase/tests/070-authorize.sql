-- authorize_generation and authorize_project: the answer's shape, every path to a role
-- (direct_ownership, project_owner, project_team, generation_share, public), least(team
-- role, level) through teams, highest wins, and agreement with what RLS lets a user read.
begin;
select plan(54);

select tests.create_user('creator@velro.test') as creator \gset
select tests.create_user('powner@velro.test') as powner \gset
select tests.create_user('towner@velro.test') as towner \gset
select tests.create_user('tadmin@velro.test') as tadmin \gset
select tests.create_user('teditor@velro.test') as teditor \gset
select tests.create_user('tviewer@velro.test') as tviewer \gset
select tests.create_user('dual@velro.test') as dual \gset
select tests.create_user('stranger@velro.test') as stranger \gset
select tests.create_user('sue@velro.test') as sue \gset

-- Alpha is linked to the project at editor level; Share gets a generation shared at admin.
-- dual is a viewer in Alpha and an admin in Share; creator is an editor in Alpha.
insert into public.teams (id, name, owner_id) values
('a0000000-0000-4000-8000-000000000001', 'Alpha', :'towner'),
('a0000000-0000-4000-8000-000000000002', 'Share', :'dual');
insert into public.team_members (team_id, user_id, role) values
('a0000000-0000-4000-8000-000000000001', :'towner', 'owner'),
('a0000000-0000-4000-8000-000000000001', :'tadmin', 'admin'),
('a0000000-0000-4000-8000-000000000001', :'teditor', 'editor'),
('a0000000-0000-4000-8000-000000000001', :'tviewer', 'viewer'),
('a0000000-0000-4000-8000-000000000001', :'creator', 'editor'),
('a0000000-0000-4000-8000-000000000001', :'dual', 'viewer'),
('a0000000-0000-4000-8000-000000000001', :'powner', 'editor'),
('a0000000-0000-4000-8000-000000000001', :'sue', 'admin'),
('a0000000-0000-4000-8000-000000000002', :'dual', 'owner'),
('a0000000-0000-4000-8000-000000000002', :'teditor', 'editor');

insert into public.projects (id, owner_id, name, visibility) values
('c0000000-0000-4000-8000-000000000001', :'powner', 'Team project', 'team'),
('c0000000-0000-4000-8000-000000000002', :'powner', 'Public project', 'public');
insert into public.project_teams (project_id, team_id, access_level) values
('c0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'editor'),
('c0000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000001', 'editor');

-- g1: the creator's, in the team project, shared with Share at admin
-- g2: the project owner's, in the public project
-- g3: the suspended user's own, outside any project
insert into public.generations (id, owner_id, project_id, model_id, prompt, cost, idempotency_key) values
(
    'd0000000-0000-4000-8000-000000000001', :'creator', 'c0000000-0000-4000-8000-000000000001',
    'fal-ai/veo3', 'g1', 500, 'g1'
),
(
    'd0000000-0000-4000-8000-000000000002', :'powner', 'c0000000-0000-4000-8000-000000000002',
    'fal-ai/veo3', 'g2', 500, 'g2'
),
('d0000000-0000-4000-8000-000000000003', :'sue', null, 'fal-ai/veo3', 'g3', 500, 'g3');
insert into public.generation_shares (generation_id, team_id, role)
values ('d0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000002', 'admin');
update public.profiles set status = 'suspended' where id = :'sue';

-- the answer's shape ---------------------------------------------------------------------------------

select tests.authenticate_as(:'creator');
select set_eq(
    $$select jsonb_object_keys(public.authorize_generation('d0000000-0000-4000-8000-000000000001'))$$,
    $$values ('access_granted'), ('access_method'), ('effective_role'), ('permissions')$$,
    'authorize_generation answers with the documented keys (the app adds timing and cache_hit)'
);
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001'),
    '{"access_granted": true, "access_method": "direct_ownership", "effective_role": "owner",
      "permissions": ["read", "write", "share", "delete"]}'::jsonb,
    'direct_ownership: the creator is owner, even though she is also a team editor on the project'
);

-- each path ------------------------------------------------------------------------------------------

select tests.authenticate_as(:'powner');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001'),
    '{"access_granted": true, "access_method": "project_owner", "effective_role": "owner",
      "permissions": ["read", "write", "share", "delete"]}'::jsonb,
    'project_owner: the project''s owner is owner of a generation someone else made in it'
);
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000002') ->> 'access_method', 'direct_ownership',
    'on his own generation the project owner holds it directly (the first path wins a tie)'
);
select tests.authenticate_as(:'towner');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001'),
    '{"access_granted": true, "access_method": "project_team", "effective_role": "editor",
      "permissions": ["read", "write"]}'::jsonb,
    'project_team: the team owner gets least(owner, editor link) = editor'
);
select tests.authenticate_as(:'tadmin');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001') ->> 'effective_role', 'editor',
    'project_team: a team admin gets least(admin, editor) = editor'
);
select tests.authenticate_as(:'tviewer');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001'),
    '{"access_granted": true, "access_method": "project_team", "effective_role": "viewer",
      "permissions": ["read"]}'::jsonb,
    'project_team: a team viewer gets least(viewer, editor) = viewer'
);
select tests.authenticate_as(:'dual');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001'),
    '{"access_granted": true, "access_method": "generation_share", "effective_role": "admin",
      "permissions": ["read", "write", "delete"]}'::jsonb,
    'highest wins: the admin share beats her viewer role through the project'
);
select tests.authenticate_as(:'teditor');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001'),
    '{"access_granted": true, "access_method": "project_team", "effective_role": "editor",
      "permissions": ["read", "write"]}'::jsonb,
    'on a tie (editor via the project, editor via the share) the earlier path is named'
);
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000002') ->> 'effective_role', 'editor',
    'highest wins: a linked editor on a public project is editor, not public viewer'
);
select tests.authenticate_as(:'tviewer');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000002') ->> 'access_method', 'project_team',
    'on a tie (viewer through the team, viewer through public) the team path is named'
);
select tests.authenticate_as(:'stranger');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000002'),
    '{"access_granted": true, "access_method": "public", "effective_role": "viewer", "permissions": ["read"]}'::jsonb,
    'public: any signed-in user is viewer of a generation in a public project'
);

select is_empty(
    $$update public.generations set title = 't' where id = 'd0000000-0000-4000-8000-000000000002' returning id$$,
    'public viewer: no write, so the stranger cannot retitle'
);
select throws_ok(
    $$select public.cancel_generation('d0000000-0000-4000-8000-000000000002')$$,
    'PT403', 'this needs the editor role on the generation', 'and cannot cancel (403: he can read it)'
);

-- denials look alike -------------------------------------------------------------------------------

select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001'),
    '{"access_granted": false, "access_method": null, "effective_role": null, "permissions": []}'::jsonb,
    'a stranger is denied a generation in a team project'
);
select is(
    public.authorize_generation(gen_random_uuid()),
    public.authorize_generation('d0000000-0000-4000-8000-000000000001'),
    'an unknown id gets the same answer as an existing unreadable one'
);
select is(
    public.authorize_generation(null) ->> 'access_granted', 'false',
    'a null id is denied'
);
select tests.authenticate_as(:'sue');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000003') ->> 'access_granted', 'false',
    'a suspended user is denied even her own generation'
);
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001') ->> 'access_granted', 'false',
    'and what her team role would give her'
);
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000002') ->> 'access_granted', 'false',
    'and public generations'
);
select tests.authenticate_as_anon();
select throws_ok(
    $$select public.authorize_generation('d0000000-0000-4000-8000-000000000002')$$,
    '42501', 'permission denied for function authorize_generation', 'anon cannot call authorize_generation'
);
select tests.authenticate_as_service_role();
select throws_ok(
    $$select public.authorize_generation('d0000000-0000-4000-8000-000000000002')$$,
    '42501', 'permission denied for function authorize_generation',
    'the service role answers no user''s authorization question'
);

-- authorize_project ----------------------------------------------------------------------------------

select tests.authenticate_as(:'powner');
select is(
    public.authorize_project('c0000000-0000-4000-8000-000000000001'),
    '{"access_granted": true, "access_method": "project_owner", "effective_role": "owner",
      "permissions": ["read", "write", "share", "delete"]}'::jsonb,
    'authorize_project: project_owner'
);
select tests.authenticate_as(:'towner');
select is(
    public.authorize_project('c0000000-0000-4000-8000-000000000001'),
    '{"access_granted": true, "access_method": "project_team", "effective_role": "editor",
      "permissions": ["read", "write"]}'::jsonb,
    'authorize_project: project_team, capped by the link'
);
select tests.authenticate_as(:'creator');
select is(
    public.authorize_project('c0000000-0000-4000-8000-000000000001') ->> 'effective_role', 'editor',
    'owning a generation in a project gives no role on the project itself'
);
select tests.authenticate_as(:'dual');
select is(
    public.authorize_project('c0000000-0000-4000-8000-000000000001') ->> 'effective_role', 'viewer',
    'a generation share gives no role on the project either'
);
select tests.authenticate_as(:'stranger');
select is(
    public.authorize_project('c0000000-0000-4000-8000-000000000002'),
    '{"access_granted": true, "access_method": "public", "effective_role": "viewer", "permissions": ["read"]}'::jsonb,
    'authorize_project: public'
);
select is(
    public.authorize_project('c0000000-0000-4000-8000-000000000001'),
    '{"access_granted": false, "access_method": null, "effective_role": null, "permissions": []}'::jsonb,
    'authorize_project: a stranger is denied a team project'
);
select is(
    public.authorize_project(gen_random_uuid()),
    public.authorize_project('c0000000-0000-4000-8000-000000000001'),
    'an unknown project looks like an unreadable one'
);
select tests.authenticate_as(:'sue');
select is(
    public.authorize_project('c0000000-0000-4000-8000-000000000002') ->> 'access_granted', 'false',
    'a suspended user is denied every project'
);

-- authorization agrees with RLS: granted exactly where the row is readable ----------------------------

select tests.clear_authentication();
create temporary table generation_ids as
select id from public.generations;
grant select on generation_ids to public;

select tests.authenticate_as(:'creator');
select set_eq(
    'select id from public.generations',
    $$select id from generation_ids where (public.authorize_generation(id) ->> 'access_granted')::boolean$$,
    'creator: RLS and authorize_generation agree'
);
select tests.authenticate_as(:'powner');
select set_eq(
    'select id from public.generations',
    $$select id from generation_ids where (public.authorize_generation(id) ->> 'access_granted')::boolean$$,
    'project owner: RLS and authorize_generation agree'
);
select tests.authenticate_as(:'towner');
select set_eq(
    'select id from public.generations',
    $$select id from generation_ids where (public.authorize_generation(id) ->> 'access_granted')::boolean$$,
    'team owner: RLS and authorize_generation agree'
);
select tests.authenticate_as(:'tviewer');
select set_eq(
    'select id from public.generations',
    $$select id from generation_ids where (public.authorize_generation(id) ->> 'access_granted')::boolean$$,
    'team viewer: RLS and authorize_generation agree'
);
select tests.authenticate_as(:'dual');
select set_eq(
    'select id from public.generations',
    $$select id from generation_ids where (public.authorize_generation(id) ->> 'access_granted')::boolean$$,
    'share admin: RLS and authorize_generation agree'
);
select tests.authenticate_as(:'stranger');
select set_eq(
    'select id from public.generations',
    $$select id from generation_ids where (public.authorize_generation(id) ->> 'access_granted')::boolean$$,
    'stranger: RLS and authorize_generation agree'
);
select tests.authenticate_as(:'sue');
select set_eq(
    'select id from public.generations',
    $$select id from generation_ids where (public.authorize_generation(id) ->> 'access_granted')::boolean$$,
    'suspended: RLS and authorize_generation agree (nothing)'
);

-- writes agree with permissions: editors may retitle, viewers may not
select tests.authenticate_as(:'towner');
select isnt_empty(
    $$update public.generations set title = 't' where id = 'd0000000-0000-4000-8000-000000000001' returning id$$,
    'an effective editor (write permission) may retitle'
);
select tests.authenticate_as(:'tviewer');
select is_empty(
    $$update public.generations set title = 't' where id = 'd0000000-0000-4000-8000-000000000001' returning id$$,
    'an effective viewer (no write permission) may not'
);
select tests.authenticate_as(:'towner');
select is_empty(
    $$delete from public.generations where id = 'd0000000-0000-4000-8000-000000000001' returning id$$,
    'an effective editor (no delete permission) may not delete'
);

-- the app's one statement answers what a client's call answers ----------------------------------------

-- private.authorize_generation_for (the app's miss) makes the decision with the user passed
-- in; public.authorize_generation (a client's call) reads it from the claims. Every user of
-- this world, every generation and an unknown id: the same answer, every path included.
select tests.clear_authentication();
create temporary table both_answers (user_id uuid, generation_id uuid, client jsonb, app jsonb);
do $$
declare
    v_user uuid;
    v_session uuid;
    v_generation uuid;
    v_client jsonb;
begin
    for v_user in select id from public.profiles loop
        v_session := gen_random_uuid();
        insert into auth.sessions (id, user_id, created_at, updated_at, aal)
        values (v_session, v_user, now(), now(), 'aal1');
        foreach v_generation in array array[
            'd0000000-0000-4000-8000-000000000001', 'd0000000-0000-4000-8000-000000000002',
            'd0000000-0000-4000-8000-000000000003', 'd0000000-0000-4000-8000-00000000ffff'
        ]::uuid[] loop
            perform tests.authenticate_as(v_user);
            v_client := public.authorize_generation(v_generation);
            perform tests.clear_authentication();
            insert into both_answers
            select v_user, v_generation, v_client, a.decision
            from private.authorize_generation_for(
                jsonb_build_object('sub', v_user, 'role', 'authenticated', 'session_id', v_session),
                v_generation
            ) as a;
        end loop;
    end loop;
end;
$$;
select is_empty(
    'select * from both_answers where client is distinct from app',
    'authorize_generation_for and authorize_generation agree for every user and generation'
);
select set_eq(
    $$select distinct coalesce(app ->> 'access_method', 'denied') from both_answers$$,
    $$values ('direct_ownership'), ('project_owner'), ('project_team'), ('generation_share'),
    ('public'), ('denied')$$,
    'and the comparison covered every path and denials'
);

-- changes reach the answer in the next statement ------------------------------------------------------

select tests.authenticate_as(:'powner');
select lives_ok(
    $$select public.link_project_team(
        'c0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001', 'admin'
    )$$,
    'the owner raises the link to admin'
);
select tests.authenticate_as(:'towner');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001') ->> 'effective_role', 'admin',
    'the team owner is admin in the next statement'
);
select tests.authenticate_as(:'teditor');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001') ->> 'effective_role', 'editor',
    'the team editor stays editor (her team role caps her)'
);
select tests.authenticate_as(:'dual');
select lives_ok(
    $$select public.unshare_generation(
        'd0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000002'
    )$$,
    'dual ends the share'
);
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001'),
    '{"access_granted": true, "access_method": "project_team", "effective_role": "viewer",
      "permissions": ["read"]}'::jsonb,
    'and falls back to her next best path at once'
);
select tests.clear_authentication();
delete from public.project_teams where project_id = 'c0000000-0000-4000-8000-000000000001';
select tests.authenticate_as(:'dual');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001') ->> 'access_granted', 'false',
    'with the link gone she has no path left'
);
select tests.authenticate_as(:'creator');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001') ->> 'access_method', 'direct_ownership',
    'the creator keeps her generation whatever happens to the links'
);
select tests.clear_authentication();
update public.profiles set status = 'suspended' where id = :'creator';
select tests.authenticate_as(:'creator');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001') ->> 'access_granted', 'false',
    'until she is suspended: then the next statement denies her'
);
select tests.clear_authentication();
update public.profiles set status = 'active' where id = :'creator';
select tests.authenticate_as(:'creator');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000001') ->> 'access_granted', 'true',
    'and reactivation restores her at once'
);
select tests.authenticate_as(:'powner');
select lives_ok(
    $$update public.projects set visibility = 'private' where id = 'c0000000-0000-4000-8000-000000000002'$$,
    'the owner makes the public project private'
);
select tests.authenticate_as(:'stranger');
select is(
    public.authorize_generation('d0000000-0000-4000-8000-000000000002') ->> 'access_granted', 'false',
    'the public path ends in the next statement'
);

-- the derived copy of project publicity equals its definition after all these changes
select tests.clear_authentication();
select is_empty(
    'select * from private.check_access()',
    'every generation''s project_is_public equals its project''s visibility after every change above'
);

select * from finish();
rollback;
