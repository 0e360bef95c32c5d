-- Teammates see names, not money: a profile row is readable only by its own user, also
-- through PostgREST; the members of a team read each other's id, role, email and display
-- name through list_team_members (members only, a page at a time), and nothing else.
begin;
select plan(24);

select tests.create_user('ann@velro.test', '{"display_name": "Ann"}') as ann \gset
select tests.create_user('bob@velro.test') as bob \gset
select tests.create_user('eve@velro.test') as eve \gset
select tests.create_user('sue@velro.test') as sue \gset
select tests.create_user('carl@velro.test') as carl \gset
select tests.create_user('dan@velro.test') as dan \gset

insert into public.teams (id, name, owner_id) values
('a0000000-0000-4000-8000-000000000001', 'Alpha', :'ann'),
('b0000000-0000-4000-8000-000000000002', 'Beta', :'dan');
insert into public.team_members (team_id, user_id, role) values
('a0000000-0000-4000-8000-000000000001', :'ann', 'owner'),
('a0000000-0000-4000-8000-000000000001', :'eve', 'admin'),
('a0000000-0000-4000-8000-000000000001', :'bob', 'viewer'),
('a0000000-0000-4000-8000-000000000001', :'sue', 'viewer'),
('b0000000-0000-4000-8000-000000000002', :'dan', 'owner');
update public.profiles set credits = 777, plan = 'pro' where id = :'ann';
update public.profiles set status = 'suspended' where id = :'sue';

-- direct reads, as PostgREST serves them ---------------------------------------------------

select tests.authenticate_as(:'bob');
select results_eq(
    'select id from public.profiles', format('values (%L::uuid)', :'bob'),
    'a teammate reads only his own profile row'
);
select is_empty(
    format('select credits, plan, status from public.profiles where id = %L', :'ann'),
    'a teammate cannot read another member''s credits, plan or status'
);
select results_eq(
    'select id, email, credits, plan, status::text from public.profiles',
    format($$values (%L::uuid, 'bob@velro.test', 100, 'free', 'active')$$, :'bob'),
    'a user still reads her whole own profile'
);
select tests.authenticate_as(:'ann');
select results_eq(
    'select credits, plan from public.profiles', $$values (777, 'pro')$$,
    'the owner reads her own balance and plan'
);

-- list_team_members -------------------------------------------------------------------------

select is(
    pg_get_function_result(
        'public.list_team_members(uuid, integer, public.team_role, timestamptz, uuid)'::regprocedure
    ),
    'TABLE(user_id uuid, role team_role, email text, display_name text, joined_at timestamp with time zone)',
    'list_team_members returns id, role, email, display name and join time, nothing else of a profile'
);
select tests.authenticate_as(:'bob');
select set_eq(
    $$select user_id, role::text, email, display_name
    from public.list_team_members('a0000000-0000-4000-8000-000000000001')$$,
    format(
        $$values (%L::uuid, 'owner', 'ann@velro.test', 'Ann'), (%L::uuid, 'admin', 'eve@velro.test', 'eve'),
        (%L::uuid, 'viewer', 'bob@velro.test', 'bob'), (%L::uuid, 'viewer', 'sue@velro.test', 'sue')$$,
        :'ann', :'eve', :'bob', :'sue'
    ),
    'a viewer reads every member''s name and email, the suspended one included'
);
select results_eq(
    $$select role::text from public.list_team_members('a0000000-0000-4000-8000-000000000001')$$,
    $$values ('owner'), ('admin'), ('viewer'), ('viewer')$$,
    'highest role first'
);

-- pages: the key of the second row is the cursor of the next page
select
    role as after_role,
    joined_at as after_joined,
    user_id as after_user
from public.list_team_members('a0000000-0000-4000-8000-000000000001', 2)
order by role desc, joined_at desc, user_id desc offset 1 \gset
select is(
    (select count(*) from public.list_team_members('a0000000-0000-4000-8000-000000000001', 2)), 2::bigint,
    'a page holds at most the limit'
);
select set_eq(
    format(
        $$select user_id from public.list_team_members('a0000000-0000-4000-8000-000000000001', 10, %L, %L, %L)$$,
        :'after_role', :'after_joined', :'after_user'
    ),
    format('values (%L::uuid), (%L::uuid)', :'bob', :'sue'),
    'the next page starts after the cursor: the two viewers'
);
select throws_ok(
    $$select * from public.list_team_members('a0000000-0000-4000-8000-000000000001', 0)$$,
    'PT400', 'limit must be between 1 and 1000', 'a limit of 0 is refused'
);
select throws_ok(
    $$select * from public.list_team_members('a0000000-0000-4000-8000-000000000001', 1001)$$,
    'PT400', 'limit must be between 1 and 1000', 'a limit over 1000 is refused'
);
select throws_ok(
    $$select * from public.list_team_members('a0000000-0000-4000-8000-000000000001', 10, 'admin')$$,
    'PT400', 'a cursor needs its role, joined_at and user_id together', 'half a cursor is refused'
);

-- who may not
select tests.authenticate_as(:'carl');
select throws_ok(
    $$select * from public.list_team_members('a0000000-0000-4000-8000-000000000001')$$,
    'PT404', 'team not found', 'a stranger learns nothing (404)'
);
select tests.authenticate_as(:'dan');
select throws_ok(
    $$select * from public.list_team_members('a0000000-0000-4000-8000-000000000001')$$,
    'PT404', 'team not found', 'a member of another team learns nothing (404)'
);
select is_empty(
    format('select id from public.profiles where id in (%L, %L)', :'ann', :'bob'),
    'nor reads their profiles'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    $$select * from public.list_team_members('a0000000-0000-4000-8000-000000000001')$$,
    'PT403', 'this account is suspended', 'a suspended member reads no member list'
);
select tests.authenticate_as_anon();
select throws_ok(
    $$select * from public.list_team_members('a0000000-0000-4000-8000-000000000001')$$,
    '42501', 'permission denied for function list_team_members', 'anon cannot call it'
);
select throws_ok(
    'select id from public.profiles', '42501', 'permission denied for table profiles', 'nor read profiles'
);
select tests.authenticate_as_service_role();
select throws_ok(
    $$select * from public.list_team_members('a0000000-0000-4000-8000-000000000001')$$,
    '42501', 'permission denied for function list_team_members',
    'the service role is not granted it either (it is a member''s read)'
);
select tests.clear_authentication();
select ok(
    not has_function_privilege(
        'anon', 'public.list_team_members(uuid, integer, public.team_role, timestamptz, uuid)', 'execute'
    )
    and has_function_privilege(
        'authenticated', 'public.list_team_members(uuid, integer, public.team_role, timestamptz, uuid)', 'execute'
    ),
    'only authenticated executes list_team_members'
);

-- revocation holds from the next statement
select tests.authenticate_as(:'ann');
select lives_ok(
    format('select public.remove_member(%L, %L)', 'a0000000-0000-4000-8000-000000000001', :'bob'),
    'the owner removes Bob'
);
select tests.authenticate_as(:'bob');
select throws_ok(
    $$select * from public.list_team_members('a0000000-0000-4000-8000-000000000001')$$,
    'PT404', 'team not found', 'a removed member reads the list no more, from the next statement on'
);
select tests.authenticate_as(:'eve');
select is(
    (select count(*) from public.list_team_members('a0000000-0000-4000-8000-000000000001')), 3::bigint,
    'the remaining members see three'
);
select results_eq(
    'select id from public.profiles', format('values (%L::uuid)', :'eve'),
    'an admin, too, reads only her own profile row'
);

select * from finish();
rollback;
