-- A team holds at most max_project_links_per_team project links: one past the bound is
-- refused with 409 and writes nothing; re-linking a linked project takes no new place;
-- unlinking frees one.
begin;
select plan(9);

select tests.create_user('bowner@velro.test') as bowner \gset
select tests.create_user('beditor@velro.test') as beditor \gset

insert into public.teams (id, name, owner_id) values
('c0000000-0000-4000-8000-000000000003', 'Bounded', :'bowner');
insert into public.team_members (team_id, user_id, role) values
('c0000000-0000-4000-8000-000000000003', :'bowner', 'owner'),
('c0000000-0000-4000-8000-000000000003', :'beditor', 'editor');

update private.settings set value = '2' where key = 'max_project_links_per_team';

select tests.authenticate_as(:'beditor');
insert into public.projects (name) values ('One') returning id as p1 \gset
insert into public.projects (name) values ('Two') returning id as p2 \gset
insert into public.projects (name) values ('Three') returning id as p3 \gset

select lives_ok(
    format($$select public.link_project_team(%L, 'c0000000-0000-4000-8000-000000000003')$$, :'p1'),
    'the first link takes a place'
);
select lives_ok(
    format($$select public.link_project_team(%L, 'c0000000-0000-4000-8000-000000000003')$$, :'p2'),
    'the second link takes the last place'
);
select throws_ok(
    format($$select public.link_project_team(%L, 'c0000000-0000-4000-8000-000000000003')$$, :'p3'),
    'PT409', 'this team has 2 linked projects, the most it may hold: unlink some from it first',
    'a link past the bound is refused with 409, saying what to do'
);
select tests.clear_authentication();

select is_empty(
    format($$select 1 from public.project_teams where project_id = %L$$, :'p3'),
    'the refused link wrote no link'
);
select results_eq(
    format($$select visibility::text from public.projects where id = %L$$, :'p3'),
    $$values ('private')$$,
    'nor made the project visible to the team'
);
select is_empty(
    format($$select 1 from private.audit_events where event = 'project.team_linked' and subject_id = %L$$, :'p3'),
    'nor was audited'
);

select tests.authenticate_as(:'beditor');
select lives_ok(
    format($$select public.link_project_team(%L, 'c0000000-0000-4000-8000-000000000003', 'editor')$$, :'p1'),
    'at the bound, re-linking a linked project (a new level) takes no new place'
);
select tests.clear_authentication();
select results_eq(
    format(
        $$select access_level::text, count(*) over () from public.project_teams
          where team_id = 'c0000000-0000-4000-8000-000000000003' order by project_id = %L desc limit 1$$,
        :'p1'
    ),
    $$values ('editor', 2::bigint)$$,
    'the re-link changed its level, and the team still holds two links'
);

select tests.authenticate_as(:'beditor');
select public.unlink_project_team(:'p2', 'c0000000-0000-4000-8000-000000000003');
select lives_ok(
    format($$select public.link_project_team(%L, 'c0000000-0000-4000-8000-000000000003')$$, :'p3'),
    'unlinking a project frees its place for another'
);
select tests.clear_authentication();

select * from finish();
rollback;
