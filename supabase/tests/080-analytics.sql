-- Analytics: the materialized views are unreadable by the API roles, refresh_analytics and
-- model_stats are service-role only, team_usage/project_usage answer members only.
begin;
select plan(38);

select * from tests.create_world(p_sue_role => 'viewer') \gset
insert into public.projects (id, owner_id, name, visibility)
values ('c0000000-0000-4000-8000-000000000003', :'powner', 'Launch', 'team');
insert into public.project_teams (project_id, team_id, access_level)
values ('c0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000001', 'editor');

select tests.authenticate_as(:'powner');
select id as gen1
from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'one', 'a-1', 'c0000000-0000-4000-8000-000000000003') \gset
select tests.authenticate_as(:'teditor');
select id as gen2
from public.create_generation(
    'fal-ai/imagen4/preview/ultra', 'two', 'a-2', 'c0000000-0000-4000-8000-000000000003'
) \gset
select tests.authenticate_as_service_role();
select public.record_generation_progress(:'gen1', 'completed', 'req-1', '[]');
select public.record_generation_progress(:'gen2', 'failed', 'req-2', null, 'boom');

-- the views themselves ---------------------------------------------------------------------------

select tests.authenticate_as(:'towner');
select throws_ok(
    'select * from analytics.team_daily_usage', '42501', 'permission denied for schema analytics',
    'a user cannot read the analytics views'
);
select throws_ok(
    'select * from analytics.user_credits', '42501', 'permission denied for schema analytics',
    'not even the credit totals'
);
select tests.authenticate_as_anon();
select throws_ok(
    'select * from analytics.model_generation_stats', '42501', 'permission denied for schema analytics',
    'anon cannot read the analytics views'
);

-- refresh_analytics --------------------------------------------------------------------------------

select tests.authenticate_as(:'towner');
select throws_ok(
    'select public.refresh_analytics()', '42501', 'permission denied for function refresh_analytics',
    'a user cannot refresh the analytics'
);
select tests.authenticate_as_anon();
select throws_ok(
    'select public.refresh_analytics()', '42501', 'permission denied for function refresh_analytics',
    'anon cannot refresh the analytics'
);
select tests.authenticate_as_service_role();
select is_empty(
    $$select 1 from analytics.team_daily_usage where team_id = 'a0000000-0000-4000-8000-000000000001'$$,
    'before a refresh the views lag behind (the L3 cache is not the authority)'
);
select lives_ok('select public.refresh_analytics()', 'the service role refreshes the analytics');
select results_eq(
    $$select generations, completed, failed, credits_spent from analytics.team_daily_usage
    where team_id = 'a0000000-0000-4000-8000-000000000001'$$,
    'values (2, 1, 1, 50::bigint)',
    'team usage counts the linked project''s generations; a failed one costs nothing'
);
select results_eq(
    format('select credited, charged, refunded, charges from analytics.user_credits where user_id = %L', :'teditor'),
    'values (100::bigint, 45::bigint, 45::bigint, 1)',
    'credit totals per user include the refund'
);

-- team_usage -----------------------------------------------------------------------------------------

select tests.authenticate_as(:'towner');
select results_eq(
    $$select day, generations, completed, failed, credits_spent
    from public.team_usage('a0000000-0000-4000-8000-000000000001')$$,
    $$values ((now() at time zone 'utc')::date, 2, 1, 1, 50::bigint)$$,
    'the team owner reads the team''s usage'
);
select tests.authenticate_as(:'tadmin');
select is(
    (select count(*) from public.team_usage('a0000000-0000-4000-8000-000000000001')), 1::bigint,
    'a team admin reads it'
);
select tests.authenticate_as(:'teditor');
select is(
    (select count(*) from public.team_usage('a0000000-0000-4000-8000-000000000001')), 1::bigint,
    'a team editor reads it'
);
select tests.authenticate_as(:'tviewer');
select is(
    (select count(*) from public.team_usage('a0000000-0000-4000-8000-000000000001', 1)), 1::bigint,
    'a team viewer reads it'
);
select throws_ok(
    $$select * from public.team_usage('a0000000-0000-4000-8000-000000000001', 0)$$,
    'PT400', 'days must be between 1 and 366', 'zero days is refused'
);
select throws_ok(
    $$select * from public.team_usage('a0000000-0000-4000-8000-000000000001', 367)$$,
    'PT400', 'days must be between 1 and 366', 'more than a year is refused'
);
select tests.authenticate_as(:'powner');
select throws_ok(
    $$select * from public.team_usage('a0000000-0000-4000-8000-000000000001')$$,
    'PT404', 'team not found', 'the project owner outside the team cannot read the team''s usage (404)'
);
select tests.authenticate_as(:'other');
select throws_ok(
    $$select * from public.team_usage('a0000000-0000-4000-8000-000000000001')$$,
    'PT404', 'team not found', 'a member of another team cannot (404)'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    $$select * from public.team_usage('a0000000-0000-4000-8000-000000000001')$$,
    'PT404', 'team not found', 'a stranger cannot (404)'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    $$select * from public.team_usage('a0000000-0000-4000-8000-000000000001')$$,
    'PT403', 'this account is suspended', 'a suspended member cannot'
);
select tests.authenticate_as_anon();
select throws_ok(
    $$select * from public.team_usage('a0000000-0000-4000-8000-000000000001')$$,
    '42501', 'permission denied for function team_usage', 'anon cannot'
);

-- project_usage ----------------------------------------------------------------------------------

select tests.authenticate_as(:'powner');
select results_eq(
    $$select generations, completed, failed, credits_spent
    from public.project_usage('c0000000-0000-4000-8000-000000000003')$$,
    'values (2, 1, 1, 50::bigint)',
    'the project owner reads the project''s usage'
);
select tests.authenticate_as(:'tviewer');
select is(
    (select count(*) from public.project_usage('c0000000-0000-4000-8000-000000000003')), 1::bigint,
    'a team viewer of the linked team reads it'
);
select tests.authenticate_as(:'other');
select throws_ok(
    $$select * from public.project_usage('c0000000-0000-4000-8000-000000000003')$$,
    'PT404', 'project not found', 'a member of another team cannot (404)'
);
select tests.authenticate_as(:'stranger');
select throws_ok(
    $$select * from public.project_usage('c0000000-0000-4000-8000-000000000003')$$,
    'PT404', 'project not found', 'a stranger cannot (404)'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    $$select * from public.project_usage('c0000000-0000-4000-8000-000000000003')$$,
    'PT403', 'this account is suspended', 'a suspended member cannot'
);
select tests.authenticate_as_anon();
select throws_ok(
    $$select * from public.project_usage('c0000000-0000-4000-8000-000000000003')$$,
    '42501', 'permission denied for function project_usage', 'anon cannot'
);

-- revocation reaches the usage functions at once, though the views lag -----------------------------

select tests.authenticate_as(:'towner');
select lives_ok(
    format($$select public.remove_member('a0000000-0000-4000-8000-000000000001', %L)$$, :'tviewer'),
    'the viewer is removed'
);
select tests.authenticate_as(:'tviewer');
select throws_ok(
    $$select * from public.team_usage('a0000000-0000-4000-8000-000000000001')$$,
    'PT404', 'team not found', 'the removed member cannot read the team''s usage in the next statement'
);
select throws_ok(
    $$select * from public.project_usage('c0000000-0000-4000-8000-000000000003')$$,
    'PT404', 'project not found', 'nor the project''s'
);

-- my_credit_summary and model_stats --------------------------------------------------------------

select tests.authenticate_as(:'teditor');
select results_eq(
    'select credited, charged, refunded, charges from public.my_credit_summary()',
    'values (100::bigint, 45::bigint, 45::bigint, 1)',
    'a user reads her own credit summary'
);
select tests.authenticate_as(:'stranger');
select results_eq(
    'select credited, charged from public.my_credit_summary()',
    'values (100::bigint, 0::bigint)',
    'a stranger reads only his own'
);
select tests.authenticate_as(:'sue');
select is_empty('select * from public.my_credit_summary()', 'a suspended user reads no summary');
select tests.authenticate_as_anon();
select throws_ok(
    'select * from public.my_credit_summary()', '42501', 'permission denied for function my_credit_summary',
    'anon cannot'
);
select tests.authenticate_as(:'towner');
select throws_ok(
    'select * from public.model_stats()', '42501', 'permission denied for function model_stats',
    'model statistics are for operators, not users'
);
select tests.authenticate_as_anon();
select throws_ok(
    'select * from public.model_stats()', '42501', 'permission denied for function model_stats',
    'nor anon'
);
select tests.authenticate_as_service_role();
select is((select count(*) from public.model_stats()), 7::bigint, 'the service role reads one row per model');
select results_eq(
    $$select generations, completed, failed, credits_spent from public.model_stats()
    where model_id = 'fal-ai/imagen4/preview/ultra'$$,
    'values (1, 0, 1, 0::bigint)',
    'a failed generation is counted but costs nothing'
);
select ok(
    (select avg_seconds_to_complete from public.model_stats() where model_id = 'fal-ai/flux-pro/v1.1-ultra') >= 0,
    'completion time is averaged over completed generations'
);

select * from finish();
rollback;
