-- The pipeline's database side: a new generation commits with its submit job (whoever
-- creates it), a completed one with its media-copy job; status moves only forward and a
-- failure refunds once; the FAL breaker and the poller's view are the service role's alone.
begin;
select plan(34);

select tests.create_user('ann@velro.test') as ann \gset
select tests.create_user('bob@velro.test') as bob \gset
select public.grant_credits(:'ann', 1000);
update public.profiles set credits = 0 where id = :'bob';


-- the outbox ----------------------------------------------------------------------------------

select tests.authenticate_as(:'ann');
select id as gen from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'a fox', 'k-1') \gset
select tests.clear_authentication();

select results_eq(
    format(
        $$select status::text, queue_name::text from procrastinate.procrastinate_jobs
          where task_name = 'velro.submit_generation' and args ->> 'generation_id' = %L$$, :'gen'
    ),
    $$values ('todo', 'pipeline')$$,
    'create_generation, called as PostgREST calls it, commits a submit job with the generation'
);
select tests.authenticate_as(:'ann');
select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'a fox', 'k-1');
select tests.clear_authentication();
select is(
    (select count(*)::integer from procrastinate.procrastinate_jobs where args ->> 'generation_id' = :'gen'),
    1, 'a replay with the same key adds no second job'
);

select tests.authenticate_as(:'bob');
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'no credits', 'k-2')$$,
    'PT402', null, 'a refused charge ...'
);
select tests.clear_authentication();
select is(
    (
        select count(*)::integer from procrastinate.procrastinate_jobs as j
        inner join public.generations as g on g.id = (j.args ->> 'generation_id')::uuid where g.owner_id = :'bob'
    ),
    0, '... leaves neither a generation nor a job'
);

insert into public.generations (owner_id, model_id, prompt, status, cost, idempotency_key)
values (:'ann', 'fal-ai/flux-pro/v1.1-ultra', 'imported', 'completed', 0, 'imported-1');
select is(
    (
        select count(*)::integer from procrastinate.procrastinate_jobs as j
        inner join public.generations as g on g.id = (j.args ->> 'generation_id')::uuid
        where g.idempotency_key = 'imported-1' and j.task_name = 'velro.submit_generation'
    ),
    0, 'a row inserted already finished (the demo seed) needs no submission'
);

-- without the job engine a generation cannot commit: no generation without its job
alter schema procrastinate rename to procrastinate_away;
select tests.authenticate_as(:'ann');
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'orphan', 'k-orphan')$$,
    'PT503', 'the job engine is not installed in this database: run `velro db apply` (it installs it)',
    'with the job engine missing, create_generation refuses (PT503) and nothing is charged'
);
select tests.clear_authentication();
alter schema procrastinate_away rename to procrastinate;

-- the job engine is out of the API's reach ----------------------------------------------------

select tests.authenticate_as(:'ann');
select throws_ok(
    'select count(*) from procrastinate.procrastinate_jobs', '42501', null,
    'authenticated cannot read the job table'
);
select throws_ok(
    $$select private.defer_job('velro.submit_generation', '{}'::jsonb)$$, '42501', null,
    'nor insert jobs through our helper'
);
select tests.clear_authentication();
select tests.authenticate_as_anon();
select throws_ok(
    'select count(*) from procrastinate.procrastinate_jobs', '42501', null, 'nor can anon'
);
select tests.clear_authentication();
select tests.authenticate_as_service_role();
select throws_ok(
    'select count(*) from procrastinate.procrastinate_jobs', '42501', null,
    'the service role, the API''s system key, cannot either: only the worker''s own login'
);
select tests.clear_authentication();

-- forward-only progress, refund once ----------------------------------------------------------

select tests.authenticate_as_service_role();
select results_eq(
    format(
        $$select status::text, fal_request_id from public.record_generation_progress(%L, 'queued', 'req-1')$$, :'gen'
    ),
    $$values ('queued', 'req-1')$$, 'the submit job records the request id and queues it'
);
select results_eq(
    format($$select status::text from public.record_generation_progress(%L, 'processing')$$, :'gen'),
    $$values ('processing')$$, 'the poller moves it to processing'
);
select results_eq(
    format($$select status::text from public.record_generation_progress(%L, 'queued')$$, :'gen'),
    $$values ('processing')$$, 'a late queued answer does not move it back'
);
select results_eq(
    format($$select status::text from public.record_generation_progress(%L, 'failed', null, null, 'boom')$$, :'gen'),
    $$values ('failed')$$, 'a failure ends it'
);
select results_eq(
    format(
        $$select status::text from public.record_generation_progress(%L, 'completed', null, '[{"url": "https://x"}]')$$,
        :'gen'
    ),
    $$values ('failed')$$, 'a later success does not undo the failure'
);
select results_eq(
    format($$select status::text from public.record_generation_progress(%L, 'failed')$$, :'gen'),
    $$values ('failed')$$, 'a duplicate failure changes nothing'
);
select tests.clear_authentication();
select results_eq(
    format($$select kind::text from public.credit_ledger where generation_id = %L order by created_at$$, :'gen'),
    $$values ('charge'), ('refund')$$, 'and the charge was refunded exactly once'
);

-- completion queues the media copy once -------------------------------------------------------

select tests.authenticate_as(:'ann');
select id as done from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'an owl', 'k-3') \gset
select tests.clear_authentication();
select tests.authenticate_as_service_role();
select public.record_generation_progress(:'done', 'queued', 'req-3');
select public.record_generation_progress(:'done', 'completed', null, '[{"url": "https://fal.media/a.png"}]');
select public.record_generation_progress(:'done', 'completed', null, '[{"url": "https://fal.media/a.png"}]');
select tests.clear_authentication();
select is(
    (
        select count(*)::integer from procrastinate.procrastinate_jobs
        where task_name = 'velro.copy_outputs' and args ->> 'generation_id' = :'done'
    ),
    1, 'a completed generation commits one media-copy job, however often completion is reported'
);

-- the breaker and the poller's view -----------------------------------------------------------

select tests.authenticate_as_service_role();
select ok(public.fal_circuit_allows(), 'the breaker starts closed');
select ok(public.record_fal_outcome(false, 2, 60), 'one failure below the threshold keeps it closed');
select ok(not public.record_fal_outcome(false, 2, 60), 'the second consecutive failure opens it');
select ok(not public.fal_circuit_allows(), 'and every process sees it open');
select ok(public.record_fal_outcome(true, 2, 60), 'a success closes it');
select tests.clear_authentication();
select tests.authenticate_as(:'ann');
select id as flying from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'a kite', 'k-4') \gset
select tests.clear_authentication();
select tests.authenticate_as_service_role();
select public.record_generation_progress(:'flying', 'queued', 'req-4');
-- -1 s: rows touched in this very transaction count as old enough
select set_eq(
    format(
        'select id from public.generations_awaiting_fal(-1) where id in (%L, %L, %L)',
        :'gen', :'done', :'flying'
    ),
    format('values (%L::uuid)', :'flying'),
    'the poller sees only generations in flight'
);
select tests.clear_authentication();

select tests.authenticate_as(:'ann');
select throws_ok(
    'select public.fal_circuit_allows()', '42501', null, 'users cannot read the breaker'
);
select throws_ok(
    'select * from public.generations_awaiting_fal(0)', '42501', null,
    'nor list other people''s generations in flight'
);
select tests.clear_authentication();

-- a generation FAL holds: cancelled through the API, refunded once FAL confirms -------------

select tests.authenticate_as(:'ann');
select id as held from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'a held fox', 'k-held') \gset
select tests.clear_authentication();
update public.generations set status = 'queued', fal_request_id = 'req-held' where id = :'held';
select (select credits from public.profiles where id = :'ann') as held_balance \gset

select tests.authenticate_as(:'ann');
select throws_like(
    format('select public.cancel_generation(%L)', :'held'),
    'FAL already holds this generation%',
    'a client cannot cancel (and be refunded for) what FAL holds: FAL would run it anyway'
);
select results_eq(
    format('select status::text, fal_request_id from public.cancellable_generation(%L)', :'held'),
    $$values ('queued', 'req-held')$$,
    'the API learns from the caller''s own right that it may ask FAL to cancel'
);
select throws_ok(
    format('select public.record_fal_cancellation(%L, %L, %L)', :'held', 'req-held', :'ann'),
    '42501', null, 'only the service role records a cancellation FAL confirmed'
);
select tests.authenticate_as(:'bob');
select throws_ok(
    format('select public.cancellable_generation(%L)', :'held'),
    'PT404', 'generation not found', 'a stranger learns nothing of it'
);
select tests.clear_authentication();
select results_eq(
    format($$select status::text, (select credits from public.profiles where id = %L)
             from public.generations where id = %L$$, :'ann', :'held'),
    format($$values ('queued', %s)$$, :'held_balance'),
    'the refused cancels changed nothing'
);

select tests.authenticate_as_service_role();
select results_eq(
    format(
        $$select status::text from public.record_fal_cancellation(%L, 'req-other', %L)$$,
        :'held', :'ann'
    ),
    $$values ('queued')$$,
    'a confirmation for a request the generation does not hold changes nothing'
);
select results_eq(
    format($$select status::text from public.record_fal_cancellation(%L, 'req-held', %L)$$, :'held', :'ann'),
    $$values ('cancelled')$$,
    'FAL''s confirmation cancels it'
);
select results_eq(
    format('select credits - %s from public.profiles where id = %L', :'held_balance', :'ann'),
    $$values (50)$$,
    'and refunds its 50 credits'
);
select tests.clear_authentication();

select * from finish();
rollback;
