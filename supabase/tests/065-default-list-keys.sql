-- private.feed_keys: the keys of a page of the default list are exactly the caller's own
-- work, her reached projects' work and her teams' shares, newest first, before a cursor and
-- filtered, with more projects than a page has rows; nothing for a suspended or anonymous
-- caller. A share carries its generation's created_at, which never changes.
begin;
select plan(20);

select tests.create_user('kowner@velro.test') as kowner \gset
select tests.create_user('kmember@velro.test') as kmember \gset
select tests.create_user('ksuspended@velro.test') as ksuspended \gset

insert into public.teams (id, name, owner_id) values
('c0000000-0000-4000-8000-000000000065', 'Keys', :'kowner'),
('c0000000-0000-4000-8000-000000000066', 'Keys too', :'kowner');
insert into public.team_members (team_id, user_id, role) values
('c0000000-0000-4000-8000-000000000065', :'kowner', 'owner'),
('c0000000-0000-4000-8000-000000000066', :'kowner', 'owner'),
('c0000000-0000-4000-8000-000000000066', :'kmember', 'viewer'),
('c0000000-0000-4000-8000-000000000065', :'kmember', 'viewer'),
('c0000000-0000-4000-8000-000000000065', :'ksuspended', 'viewer');
update public.profiles set status = 'suspended' where id = :'ksuspended';

-- eight projects: six linked to the team, one private (linked, yet unreached), one the
-- owner's alone
create temporary table kproject on commit drop as
select
    s.n,
    gen_random_uuid() as id
from generate_series(1, 8) as s (n);
insert into public.projects (id, owner_id, name, visibility)
select
    p.id,
    :'kowner' as owner_id,
    'keys ' || p.n as name,
    case when p.n = 7 then 'private' else 'team' end::public.project_visibility as visibility
from kproject as p;
insert into public.project_teams (project_id, team_id, access_level)
select
    p.id as project_id,
    'c0000000-0000-4000-8000-000000000065' as team_id,
    'viewer' as access_level
from kproject as p where p.n <= 7;

-- sixty generations a minute apart, most in the owner's projects, some the member's own
-- (some of those inside reached projects), every seventh cancelled
create temporary table kgen on commit drop as
select
    s.i as n,
    gen_random_uuid() as id,
    case when s.i % 5 = 0 then :'kmember'::uuid else :'kowner'::uuid end as owner_id,
    case when s.i % 10 <> 0 then p.id end as project_id,
    now() - make_interval(mins => s.i) as created_at
from generate_series(1, 60) as s (i)
inner join kproject as p on p.n = 1 + s.i % 8;
insert into public.generations (
    id, owner_id, project_id, model_id, prompt, cost, idempotency_key, created_at, status
)
select
    k.id,
    k.owner_id,
    k.project_id,
    'fal-ai/flux-pro/v1.1-ultra' as model_id,
    'keys' as prompt,
    0 as cost,
    'keys-' || k.n as idempotency_key,
    k.created_at,
    case when k.n % 7 = 0 then 'cancelled' else 'pending' end::public.generation_status as status
from kgen as k;
-- shares from the projects the member does not reach, each with both of her teams
insert into public.generation_shares (generation_id, team_id, role)
select
    k.id as generation_id,
    team.id as team_id,
    'viewer' as role
from kgen as k inner join kproject as p on k.project_id = p.id
cross join (
    values ('c0000000-0000-4000-8000-000000000065'::uuid),
    ('c0000000-0000-4000-8000-000000000066'::uuid)
) as team (id)
where p.n in (7, 8) and k.n % 3 = 0;

-- what the member's list holds, written out
create temporary table kexpected on commit drop as
select
    g.created_at,
    g.id,
    g.project_id,
    g.status
from kgen as k inner join public.generations as g on k.id = g.id
where
    g.owner_id = :'kmember'
    or g.project_id in (select p.id from kproject as p where p.n <= 6)
    or g.id in (select gs.generation_id from public.generation_shares as gs);
grant select on kexpected, kgen, kproject to authenticated, anon;

select results_eq(
    $$select count(*)::integer, count(distinct project_id)::integer from kgen where project_id is not null$$,
    $$values (54, 8)$$,
    'the setup: work in all eight projects'
);
select results_eq(
    $$select (select count(*) from public.generation_shares)::integer,
        (select count(*) from kexpected)::integer$$,
    $$values (8, 52)$$,
    'the setup: four generations shared with both teams, fifty-two on the member''s list'
);
select is(
    (
        select count(*)::integer from public.generation_shares as gs
        inner join public.generations as g on gs.generation_id = g.id
        where gs.generation_created_at = g.created_at
    ),
    (select count(*)::integer from public.generation_shares),
    'every share carries its generation''s created_at'
);
select throws_ok(
    format(
        $$update public.generations set created_at = now() where id = %L$$,
        (select id from kgen where n = 1)
    ),
    'PT409', 'a generation''s created_at is fixed when it is created',
    'created_at never changes'
);
select tests.authenticate_as_service_role();
update public.generation_shares set generation_created_at = '2100-01-01';
select tests.clear_authentication();
select is(
    (
        select count(*)::integer from public.generation_shares as gs
        inner join public.generations as g on gs.generation_id = g.id
        where gs.generation_created_at = g.created_at
    ),
    8,
    'a write that sets the copy itself is overridden: it stays its generation''s created_at'
);
select lives_ok(
    format(
        $$update public.generations set created_at = created_at, title = 'same' where id = %L$$,
        (select id from kgen where n = 1)
    ),
    'an update that leaves created_at as it is passes'
);

select tests.authenticate_as(:'kmember');
select results_eq(
    'select created_at, id from private.feed_keys(100)',
    'select created_at, id from kexpected order by created_at desc, id desc',
    'the whole list: own work, reached projects'' work and shares, newest first'
);
select results_eq(
    'select created_at, id from private.feed_keys(7)',
    'select created_at, id from kexpected order by created_at desc, id desc limit 7',
    'a first page of seven (more reached projects than that)'
);
select results_eq(
    $$select created_at, id from private.feed_keys(7,
        (select created_at from kexpected order by created_at desc limit 1 offset 9),
        (select id from kexpected order by created_at desc limit 1 offset 9))$$,
    'select created_at, id from kexpected order by created_at desc, id desc limit 7 offset 10',
    'a page after a cursor starts right after it'
);
select results_eq(
    format(
        $$select created_at, id from private.feed_keys(2, p_project_id => %L)$$,
        (select id from kproject where n = 8)
    ),
    format($$select created_at, id from kexpected where project_id = %L
      order by created_at desc, id desc limit 2$$, (select id from kproject where n = 8)),
    'a page of shares made with two of her teams holds each generation once'
);
select results_eq(
    $$select created_at, id from private.feed_keys(5, p_status => 'cancelled')$$,
    $$select created_at, id from kexpected where status = 'cancelled'
      order by created_at desc, id desc limit 5$$,
    'filtered by status in every source'
);
select results_eq(
    format(
        $$select created_at, id from private.feed_keys(100, p_project_id => %L)$$,
        (select id from kproject where n = 8)
    ),
    format($$select created_at, id from kexpected where project_id = %L
      order by created_at desc, id desc$$, (select id from kproject where n = 8)),
    'filtered by an unreached project: only its shares'
);
select is_empty(
    $$select 1 from private.feed_keys(100, p_model_id => 'fal-ai/veo3')$$,
    'filtered by a model nothing used'
);
select is(
    (
        select count(*)::integer from private.feed_keys(100) as k
        where k.id not in (select g.id from public.generations as g)
    ),
    0,
    'every key is a row the member reads through RLS'
);

select tests.authenticate_as(:'ksuspended');
select is_empty('select 1 from private.feed_keys(100)', 'a suspended member gets no keys');

select tests.authenticate_as_anon();
select throws_ok(
    'select 1 from private.feed_keys(100)', '42501', null, 'anon may not call it'
);

select tests.authenticate_as(:'kowner');
select is(
    (select count(*)::integer from private.feed_keys(100)),
    (select count(*)::integer from kgen where owner_id = :'kowner'::uuid or project_id is not null),
    'the owner''s list holds all her work and all work in her projects'
);
select is_empty('select 1 from private.feed_keys(0)', 'a page of nothing is nothing');
select is_empty('select 1 from private.feed_keys(null)', 'nor is a page of no size');
select is_empty(
    'select 1 from private.feed_keys(102)', 'nor one longer than the largest page the API asks'
);

select * from finish();
rollback;
