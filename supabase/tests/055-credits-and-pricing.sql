-- Credits are never lost and prices follow the work: the price per image, per second or per
-- generation; bounded string parameters; optional idempotency keys whose replays must match;
-- no deletion of a charged generation in flight; ledger ids that reveal nothing.
begin;
select plan(37);

select tests.create_user('ann@velro.test') as ann \gset
select tests.create_user('ted@velro.test') as ted \gset
select tests.create_user('stranger@velro.test') as stranger \gset
select public.grant_credits(:'ann', 5000);

insert into public.teams (id, name, owner_id) values ('a0000000-0000-4000-8000-000000000001', 'Alpha', :'ann');
insert into public.team_members (team_id, user_id, role) values
('a0000000-0000-4000-8000-000000000001', :'ann', 'owner'),
('a0000000-0000-4000-8000-000000000001', :'ted', 'admin');
insert into public.projects (id, owner_id, name, visibility)
values ('c0000000-0000-4000-8000-000000000003', :'ann', 'Launch', 'team');
insert into public.project_teams (project_id, team_id, access_level)
values ('c0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000001', 'admin');

-- prices ------------------------------------------------------------------------------------

select tests.authenticate_as(:'ann');
select results_eq(
    $$select cost from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'one fox', null)$$,
    'values (50)', 'an image model charges its cost once when num_images is left out (default 1)'
);
select results_eq(
    $$select cost from public.create_generation(
        'fal-ai/flux-pro/v1.1-ultra', 'three foxes', null, null, '{"num_images": 3}'
    )$$,
    'values (150)', 'and once per image: 3 images cost 3 x 50'
);
select results_eq(
    $$select cost from public.create_generation(
        'fal-ai/imagen4/preview/ultra', 'four owls', null, null, '{"num_images": 4}'
    )$$,
    'values (180)', '4 images at 45 cost 180'
);
select throws_ok(
    $$select public.create_generation('fal-ai/imagen4/preview/ultra', 'five owls', null, null, '{"num_images": 5}')$$,
    'PT400', 'parameters.num_images must be at most 4', 'num_images is bounded by the model''s schema'
);
select results_eq(
    $$select cost from public.create_generation('fal-ai/kling-video/v2.1/master/text-to-video', 'a clip', null)$$,
    'values (350)', 'a video model with a duration charges per second of the default duration (5 s x 70)'
);
select results_eq(
    $$select cost from public.create_generation(
        'fal-ai/kling-video/v2.1/master/text-to-video', 'a longer clip', null, null, '{"duration": "10"}')$$,
    'values (700)', '10 s cost twice as much'
);
select results_eq(
    $$select cost from public.create_generation('fal-ai/veo3', 'a short film', null, null, '{"duration": "4s"}')$$,
    'values (252)', 'Veo 3 at 4 s: 4 x 63'
);
select results_eq(
    $$select cost from public.create_generation('fal-ai/minimax/hailuo-02/pro/text-to-video', 'a fixed clip', null)$$,
    'values (400)', 'a video model without a duration charges a flat price'
);
select results_eq(
    $$select sum(-amount)::integer from public.credit_ledger where kind = 'charge'$$,
    'values (2082)', 'the ledger holds exactly the prices charged'
);
select results_eq(
    'select credits from public.profiles where id = auth.uid()', 'values (3018)',
    'and the balance is what was granted minus them (100 + 5000 - 2082)'
);

-- bounded strings -----------------------------------------------------------------------------

select throws_ok(
    format(
        $$select public.create_generation('fal-ai/imagen4/preview/ultra', 'x', null, null, %L::jsonb)$$,
        jsonb_build_object('negative_prompt', repeat('n', 1001))
    ),
    'PT400',
    'parameters.negative_prompt must be at most 1000 characters',
    'a negative prompt over its maxLength is refused'
);
select lives_ok(
    format(
        $$select public.create_generation('fal-ai/imagen4/preview/ultra', 'x', null, null, %L::jsonb)$$,
        jsonb_build_object('negative_prompt', repeat('n', 1000))
    ),
    'one at its maxLength is accepted'
);
select throws_ok(
    format(
        $$select public.create_generation('fal-ai/flux-pro/kontext/max', 'x', null, null, %L::jsonb)$$,
        jsonb_build_object('image_url', 'https://example.com/' || repeat('a', 2030))
    ),
    'PT400', 'parameters.image_url must be at most 2048 characters', 'an image url over 2048 characters is refused'
);
select throws_ok(
    format(
        $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', null, null, '{}', %L)$$, repeat('t', 201)
    ),
    'PT400', 'title must be at most 200 characters', 'a title over 200 characters is refused'
);
select tests.clear_authentication();
select ok(
    (
        select bool_and(p.rule ? 'enum' or p.rule ? 'maxLength')
        from public.models as m
        cross join lateral jsonb_each(m.parameter_schema -> 'properties') as p (parameter, rule)
        where p.rule ->> 'type' = 'string'
    ),
    'every string parameter in the catalog states its bound (an enum or a maxLength)'
);

-- idempotency ---------------------------------------------------------------------------------

select tests.authenticate_as(:'ann');
select id as first
from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'a cat', 'k-1', null, '{"seed": 7}') \gset
select results_eq(
    $$select id from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'a cat', 'k-1', null, '{"seed": 7}')$$,
    format('values (%L::uuid)', :'first'), 'the same request with the same key is the first generation'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'a cat', 'k-1', null, '{"seed": 8}')$$,
    'PT409',
    'this Idempotency-Key was already used with a different request: '
    'send the same request to retry it, or use a new key',
    'the same key with other parameters is a conflict'
);
select throws_ok(
    $$select public.create_generation(
        'fal-ai/flux-pro/v1.1-ultra', 'a cat', 'k-1', 'c0000000-0000-4000-8000-000000000003', '{"seed": 7}'
    )$$,
    'PT409', null, 'the same key in another project is a conflict'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'a cat', 'k-1', null, '{"seed": 7}', 'titled')$$,
    'PT409', null, 'the same key with a title is a conflict'
);
select results_eq(
    $$select count(*)::integer from public.credit_ledger
    where generation_id = (select id from public.generations where idempotency_key = 'k-1')$$,
    'values (1)', 'the key''s generation was charged once'
);
select results_eq(
    $$select count(*)::integer from (
        select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'no key', null)
        union all
        select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'no key', null)
    ) as twice$$,
    'values (2)', 'without a key the same request twice is two generations'
);
select results_eq(
    $$select count(*)::integer from public.generations where prompt = 'no key' and idempotency_key is null$$,
    'values (2)', 'both stored without a key, each charged'
);
select tests.authenticate_as(:'ted');
select isnt(
    (select id from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'another cat', 'k-1')), :'first'::uuid,
    'keys are per user: Ted''s k-1 is his own, whatever its body'
);

-- no deletion of charged work in flight -------------------------------------------------------

select tests.authenticate_as(:'ann');
select id as pending from public.create_generation(
    'fal-ai/flux-pro/v1.1-ultra', 'in flight', 'k-2', 'c0000000-0000-4000-8000-000000000003'
) \gset
select throws_ok(
    format('delete from public.generations where id = %L', :'pending'),
    'PT409', format(
        'generation %s is pending and holds 50 credits: '
        'cancel it (a refund follows) or wait until it ends, then delete',
        :'pending'
    ),
    'the owner cannot delete a charged pending generation (409)'
);
select tests.authenticate_as(:'ted');
select throws_ok(
    format('delete from public.generations where id = %L', :'pending'), 'PT409', null,
    'nor can a project admin through the team'
);
select tests.authenticate_as(:'stranger');
select is_empty(
    format('delete from public.generations where id = %L returning id', :'pending'),
    'a stranger still sees nothing to delete'
);
select tests.authenticate_as(:'ann');
select throws_ok(
    $$delete from public.projects where id = 'c0000000-0000-4000-8000-000000000003'$$, 'PT409', null,
    'deleting the project with a charged generation in flight is refused the same way'
);
select tests.authenticate_as_service_role();
select public.record_generation_progress(:'pending', 'queued', 'req-pending');
select tests.authenticate_as(:'ann');
select throws_ok(
    format('delete from public.generations where id = %L', :'pending'), 'PT409', null, 'queued: still refused'
);
select tests.authenticate_as_service_role();
select public.record_generation_progress(:'pending', 'processing');
select tests.authenticate_as(:'ann');
select throws_ok(
    format('delete from public.generations where id = %L', :'pending'), 'PT409', null, 'processing: still refused'
);
select tests.authenticate_as_service_role();
select public.record_generation_progress(:'pending', 'completed', null, '[]');
select tests.authenticate_as(:'ann');
select lives_ok(
    format('delete from public.generations where id = %L', :'pending'), 'once completed it can be deleted'
);
select id as cancelled from public.create_generation(
    'fal-ai/flux-pro/v1.1-ultra', 'cancel me', 'k-3', 'c0000000-0000-4000-8000-000000000003'
) \gset
select public.cancel_generation(:'cancelled');
select lives_ok(
    'delete from public.projects where id = $$c0000000-0000-4000-8000-000000000003$$',
    'after a cancel (and its refund) the project and its generations can be deleted'
);
select results_eq(
    format($$select count(*)::integer from public.credit_ledger where generation_id = %L$$, :'cancelled'),
    'values (2)', 'the cancelled generation''s charge and refund stay in the ledger'
);
select tests.authenticate_as(:'ted');
select id as teds from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'mine', 'k-4') \gset
select tests.clear_authentication();
select lives_ok(
    format('delete from auth.users where id = %L', :'ted'),
    'deleting an account takes its generations in flight along'
);
select is_empty(format('select id from public.generations where id = %L', :'teds'), 'gone with it');

-- ledger ids ------------------------------------------------------------------------------------

select is(
    (
        select format_type(atttypid, atttypmod) from pg_attribute
        where attrelid = 'public.credit_ledger'::regclass and attname = 'id'
    ),
    'uuid', 'ledger ids are uuids, not a global counter'
);
select ok(
    (
        select bool_and(r.refund_of = c.id) from public.credit_ledger as r
        inner join public.credit_ledger as c on r.generation_id = c.generation_id and c.kind = 'charge'
        where r.kind = 'refund'
    ),
    'a refund links its charge by uuid'
);
select tests.authenticate_as(:'ann');
select results_eq(
    $$select count(*)::integer from public.credit_ledger where user_id <> auth.uid()$$, 'values (0)',
    'a user reads only her own movements'
);

select * from finish();
rollback;
