-- The model catalog: everyone (anon too) reads the enabled models; only the service role
-- changes the catalog.
begin;
select plan(14);

select tests.create_user('user@velro.test') as member \gset
select tests.create_user('sue@velro.test') as sue \gset
update public.profiles set status = 'suspended' where id = :'sue';

select tests.clear_authentication();
select results_eq(
    'select id, kind::text, credit_cost, price_unit::text from public.models order by id',
    $$values
    ('fal-ai/flux-pro/kontext/max', 'image', 60, 'image'),
    ('fal-ai/flux-pro/v1.1-ultra', 'image', 50, 'image'),
    ('fal-ai/imagen4/preview/ultra', 'image', 45, 'image'),
    ('fal-ai/kling-video/v2.1/master/text-to-video', 'video', 70, 'second'),
    ('fal-ai/minimax/hailuo-02/pro/text-to-video', 'video', 400, 'generation'),
    ('fal-ai/veo3', 'video', 63, 'second'),
    ('fal-ai/wan-pro/text-to-video', 'video', 300, 'generation')$$,
    'the catalog holds the seven FAL models at their credit cost per unit'
);

-- the service role manages the catalog
select tests.authenticate_as_service_role();
select lives_ok(
    $$update public.models set enabled = false where id = 'fal-ai/veo3'$$,
    'the service role disables a model'
);
select tests.clear_authentication();
update public.models set enabled = false where id = 'fal-ai/veo3';

select tests.authenticate_as_anon();
select is((select count(*) from public.models), 6::bigint, 'anon reads the six enabled models');
select tests.authenticate_as(:'member');
select is((select count(*) from public.models), 6::bigint, 'a user reads the six enabled models');
select is_empty($$select id from public.models where id = 'fal-ai/veo3'$$, 'a disabled model is hidden');
select tests.authenticate_as(:'sue');
select is((select count(*) from public.models), 6::bigint, 'the catalog is public: a suspended user reads it too');

select tests.authenticate_as(:'member');
select throws_ok(
    $$update public.models set credit_cost = 1$$, '42501', 'permission denied for table models',
    'a user cannot change prices'
);
select throws_ok(
    $$insert into public.models (id, name, kind, credit_cost) values ('x/y', 'X', 'image', 1)$$,
    '42501', 'permission denied for table models', 'a user cannot add models'
);
select throws_ok(
    'delete from public.models', '42501', 'permission denied for table models', 'a user cannot delete models'
);
select tests.authenticate_as_anon();
select throws_ok(
    $$update public.models set credit_cost = 1$$, '42501', 'permission denied for table models',
    'anon cannot change prices'
);
select tests.authenticate_as_service_role();
select is((select count(*) from public.models), 7::bigint, 'the service role reads disabled models too');

-- the catalog's own checks, whoever writes
select tests.clear_authentication();
select throws_ok(
    $$update public.models set credit_cost = 0 where id = 'fal-ai/veo3'$$, '23514', null,
    'a model cannot be free'
);
select throws_ok(
    $$insert into public.models (id, name, kind, credit_cost) values ('Bad Id', 'X', 'image', 1)$$, '23514', null,
    'model ids follow the FAL id format'
);
select throws_ok(
    $$insert into public.models (id, name, kind, credit_cost, parameter_schema) values ('x/y', 'X', 'image', 1, '{}')$$,
    '23514', null, 'a parameter schema needs properties'
);

select * from finish();
rollback;
