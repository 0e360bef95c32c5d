-- Least privilege, with hosted Supabase's default grants in place: what the service role and
-- signed-in users may and may not do beyond the row rules.
begin;
select plan(16);

select tests.create_user('ann@velro.test') as ann \gset

-- the service role: system work yes, end-user RPCs and rewriting history no -----------------

select tests.authenticate_as_service_role();
select lives_ok(
    format('select public.grant_credits(%L, 10)', :'ann'), 'the service role grants credits (a ledger line)'
);
select results_eq(
    format('select count(*)::integer from public.credit_ledger where user_id = %L', :'ann'), 'values (2)',
    'and reads the ledger'
);
select throws_ok(
    'update public.credit_ledger set amount = 1', '42501', 'permission denied for table credit_ledger',
    'the service role cannot rewrite a ledger line'
);
select throws_ok(
    'delete from public.credit_ledger', '42501', 'permission denied for table credit_ledger',
    'nor delete one'
);
select throws_ok(
    'truncate public.generations', '42501', 'permission denied for table generations',
    'nor truncate a table'
);
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', null)$$,
    '42501', 'permission denied for function create_generation',
    'an end-user RPC is not the service role''s: it has no user to act for'
);
select throws_ok(
    $$select public.create_team('ops')$$, '42501', 'permission denied for function create_team',
    'nor any other'
);
select throws_ok(
    $$select private.raise_error(400, 'x')$$, '42501', 'permission denied for function raise_error',
    'the service role cannot call raise_error'
);
select lives_ok('select public.refresh_analytics()', 'system work still runs (analytics refresh)');

-- signed-in users ----------------------------------------------------------------------------

select tests.authenticate_as(:'ann');
select throws_ok(
    $$select private.raise_error(400, 'x')$$, '42501', 'permission denied for function raise_error',
    'a user cannot call raise_error'
);
select throws_ok(
    'truncate public.generations', '42501', 'permission denied for table generations',
    'nor truncate'
);
select lives_ok($$select public.create_team('Ann''s team')$$, 'the RPCs still run for users');
select throws_ok(
    $$select public.create_generation('fal-ai/nope', 'x', null)$$, 'PT400', null,
    'and their errors, raised as their owner, still reach the caller'
);
select tests.clear_authentication();
update public.profiles set updated_at = '2000-01-01' where id = :'ann';
select tests.authenticate_as(:'ann');
select results_eq(
    format(
        $$update public.profiles set display_name = 'Ann' where id = %L returning updated_at > '2000-01-01'$$, :'ann'
    ),
    'values (true)', 'updated_at is stamped on a user''s own update'
);
select tests.clear_authentication();
select is(
    (select prosecdef from pg_proc where oid = 'private.touch_updated_at()'::regprocedure), false,
    'by a trigger that runs with the updater''s rights, not its owner''s'
);

-- anon ------------------------------------------------------------------------------------------

select tests.authenticate_as_anon();
select throws_ok(
    'select * from public.credit_ledger', '42501', 'permission denied for table credit_ledger',
    'anon reads no ledger'
);

select * from finish();
rollback;
