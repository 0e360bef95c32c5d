-- Profiles and the credit ledger: who reads and changes which profile, column grants on
-- balances and status, the signup grant, and grant_credits (service role only).
begin;
select plan(46);

select tests.create_user('ann@velro.test', '{"display_name": "Ann"}') as ann \gset
select tests.create_user('bob@velro.test') as bob \gset
select tests.create_user('carl@velro.test') as carl \gset
select tests.create_user('sue@velro.test') as sue \gset

-- ann and bob share a team (each reads only their own profile all the same); carl is a
-- stranger; sue is in the team too but suspended
insert into public.teams (id, name, owner_id) values ('a0000000-0000-4000-8000-000000000001', 'Alpha', :'ann');
insert into public.team_members (team_id, user_id, role) values
('a0000000-0000-4000-8000-000000000001', :'ann', 'owner'),
('a0000000-0000-4000-8000-000000000001', :'bob', 'viewer'),
('a0000000-0000-4000-8000-000000000001', :'sue', 'viewer');
update public.profiles set status = 'suspended' where id = :'sue';

-- signup ----------------------------------------------------------------------------------

select results_eq(
    format('select email, display_name, status::text, credits, plan from public.profiles where id = %L', :'ann'),
    $$values ('ann@velro.test', 'Ann', 'active', 100, 'free')$$,
    'signup creates a profile with the display name, active status, the signup grant and the free plan'
);
select results_eq(
    format('select kind::text, amount, balance_after, note from public.credit_ledger where user_id = %L', :'bob'),
    $$values ('grant', 100, 100, 'signup grant')$$,
    'the signup grant is recorded in the ledger with the balance after it'
);
select is(
    (select display_name from public.profiles where id = :'bob'), 'bob',
    'without a display name the email''s local part is used'
);
update auth.users set email = 'bob@new.velro.test' where id = :'bob';
select is(
    (select email from public.profiles where id = :'bob'), 'bob@new.velro.test',
    'an email change in auth.users reaches the profile'
);

-- reading profiles --------------------------------------------------------------------------

select tests.authenticate_as(:'ann');
select results_eq(
    'select id from public.profiles', format('values (%L::uuid)', :'ann'),
    'a member reads only her own profile: teammates'' names come from list_team_members'
);
select tests.authenticate_as(:'carl');
select results_eq(
    'select id from public.profiles', format('values (%L::uuid)', :'carl'),
    'a stranger reads only his own profile'
);
select tests.authenticate_as(:'sue');
select results_eq(
    'select id, status::text from public.profiles', format($$values (%L::uuid, 'suspended')$$, :'sue'),
    'a suspended user still reads her own profile, and only it'
);
select tests.authenticate_as_anon();
select throws_ok(
    'select id from public.profiles', '42501', 'permission denied for table profiles', 'anon cannot read profiles'
);

-- changing profiles ---------------------------------------------------------------------------

select tests.authenticate_as(:'ann');
select results_eq(
    $$update public.profiles set display_name = 'Annie' returning display_name$$,
    $$values ('Annie')$$,
    'a user renames herself'
);
select is_empty(
    format($$update public.profiles set display_name = 'hacked' where id = %L returning id$$, :'bob'),
    'a user cannot rename a teammate (the row is not updatable)'
);
select throws_ok(
    'update public.profiles set credits = 1000000', '42501', 'permission denied for table profiles',
    'a user cannot set her own credits'
);
select throws_ok(
    $$update public.profiles set status = 'active'$$, '42501', 'permission denied for table profiles',
    'a user cannot change her status'
);
select throws_ok(
    $$update public.profiles set plan = 'enterprise'$$, '42501', 'permission denied for table profiles',
    'a user cannot change her plan'
);
select throws_ok(
    $$update public.profiles set email = 'x@velro.test'$$, '42501', 'permission denied for table profiles',
    'a user cannot change her email in the profile'
);
select throws_ok(
    format($$insert into public.profiles (id, email) values (%L, 'x@velro.test')$$, gen_random_uuid()),
    '42501', 'permission denied for table profiles', 'a user cannot insert a profile'
);
select throws_ok(
    'delete from public.profiles', '42501', 'permission denied for table profiles',
    'a user cannot delete profiles'
);
select throws_ok(
    $$update public.profiles set display_name = ''$$, '23514', null,
    'an empty display name violates the check constraint'
);

select tests.authenticate_as(:'sue');
select is_empty(
    $$update public.profiles set display_name = 'still here' returning id$$,
    'a suspended user cannot change her own profile'
);
select tests.authenticate_as_anon();
select throws_ok(
    $$update public.profiles set display_name = 'anon'$$, '42501', 'permission denied for table profiles',
    'anon cannot update profiles'
);

select tests.clear_authentication();
select results_eq(
    'select id, display_name, credits, status::text from public.profiles order by email',
    format(
        $$values (%L::uuid, 'Annie', 100, 'active'), (%L::uuid, 'bob', 100, 'active'),
        (%L::uuid, 'carl', 100, 'active'), (%L::uuid, 'sue', 100, 'suspended')$$,
        :'ann', :'bob', :'carl', :'sue'
    ),
    'only Ann''s own rename went through'
);

-- reading the ledger --------------------------------------------------------------------------

select tests.authenticate_as(:'ann');
select results_eq(
    'select user_id from public.credit_ledger', format('values (%L::uuid)', :'ann'),
    'a user reads her own credit movements only (not a teammate''s)'
);
select throws_ok(
    format(
        $$insert into public.credit_ledger (user_id, kind, amount, balance_after) values (%L, 'grant', 5, 105)$$,
        :'ann'
    ),
    '42501', 'permission denied for table credit_ledger', 'a user cannot write to the ledger'
);
select throws_ok(
    'update public.credit_ledger set amount = 1000', '42501', 'permission denied for table credit_ledger',
    'a user cannot change a ledger line'
);
select throws_ok(
    'delete from public.credit_ledger', '42501', 'permission denied for table credit_ledger',
    'a user cannot delete ledger lines'
);
select tests.authenticate_as(:'sue');
select is_empty('select id from public.credit_ledger', 'a suspended user reads no ledger lines');
select tests.authenticate_as_anon();
select throws_ok(
    'select id from public.credit_ledger', '42501', 'permission denied for table credit_ledger',
    'anon cannot read the ledger'
);

-- grant_credits -----------------------------------------------------------------------------

select tests.authenticate_as(:'ann');
select throws_ok(
    format('select public.grant_credits(%L, 50)', :'ann'), '42501',
    'permission denied for function grant_credits', 'a user cannot grant herself credits'
);
select tests.authenticate_as(:'sue');
select throws_ok(
    format('select public.grant_credits(%L, 50)', :'sue'), '42501',
    'permission denied for function grant_credits', 'a suspended user cannot grant credits'
);
select tests.authenticate_as_anon();
select throws_ok(
    format('select public.grant_credits(%L, 50)', :'ann'), '42501',
    'permission denied for function grant_credits', 'anon cannot grant credits'
);

select tests.authenticate_as_service_role();
select results_eq(
    format(
        $$select kind::text, amount, balance_after from public.grant_credits(%L, 50, 'purchase', 'order 1')$$, :'ann'
    ),
    $$values ('purchase', 50, 150)$$,
    'the service role records a purchase with the balance after it'
);
select results_eq(
    format('select kind::text, amount, balance_after from public.grant_credits(%L, 25)', :'ann'),
    $$values ('grant', 25, 175)$$,
    'the default kind is grant'
);
select throws_ok(
    format('select public.grant_credits(%L, 0)', :'ann'), 'PT400',
    'credit amount must be a positive whole number', 'a zero amount is refused'
);
select throws_ok(
    format('select public.grant_credits(%L, -10)', :'ann'), 'PT400',
    'credit amount must be a positive whole number', 'a negative amount is refused'
);
select throws_ok(
    format('select public.grant_credits(%L, null)', :'ann'), 'PT400',
    'credit amount must be a positive whole number', 'a missing amount is refused'
);
select throws_ok(
    format($$select public.grant_credits(%L, 10, 'charge')$$, :'ann'), 'PT400',
    'kind must be grant or purchase', 'grant_credits cannot charge'
);
select throws_ok(
    format($$select public.grant_credits(%L, 10, 'refund')$$, :'ann'), 'PT400',
    'kind must be grant or purchase', 'grant_credits cannot invent a refund'
);
select throws_ok(
    format('select public.grant_credits(%L, 10)', gen_random_uuid()), 'PT404',
    'user not found', 'an unknown user is 404'
);
select lives_ok(
    format('select public.grant_credits(%L, 10)', :'sue'),
    'the service role may still credit a suspended user (payments keep working)'
);

-- the service role reads every profile and ledger line (it bypasses RLS) but users cannot
select is(
    (select count(*) from public.credit_ledger where user_id = :'ann'), 3::bigint,
    'the refused grants wrote nothing: signup, purchase and grant only'
);

select tests.clear_authentication();
select results_eq(
    format('select credits from public.profiles where id = %L', :'ann'),
    $$values (175)$$,
    'the balance equals the sum of the ledger'
);
select is(
    (select sum(amount)::integer from public.credit_ledger where user_id = :'ann'),
    (select credits from public.profiles where id = :'ann'),
    'ledger sum and balance agree'
);
select results_eq(
    format(
        $$select event, actor_id, details from private.audit_events
        where actor_id = %L and event like 'credits.%%' order by id$$, :'ann'
    ),
    format(
        $$values ('credits.grant', %1$L::uuid, '{"amount": 100, "balance_after": 100, "note": "signup grant"}'::jsonb),
        ('credits.purchase', %1$L::uuid, '{"amount": 50, "balance_after": 150, "note": "order 1"}'::jsonb),
        ('credits.grant', %1$L::uuid, '{"amount": 25, "balance_after": 175, "note": null}'::jsonb)$$,
        :'ann'
    ),
    'every credit movement is audited with amount, balance and note'
);

-- a user's balance is never below zero, even for the table owner
select throws_ok(
    format('update public.profiles set credits = -1 where id = %L', :'ann'), '23514', null,
    'the balance cannot go below zero, whoever writes it'
);

-- suspension takes effect in the next statement
select tests.authenticate_as(:'bob');
select is((select count(*) from public.profiles), 1::bigint, 'Bob reads only himself');
select tests.authenticate_as_service_role();
select lives_ok(
    format($$update public.profiles set status = 'suspended' where id = %L$$, :'bob'),
    'the service role suspends a user'
);
select tests.clear_authentication();
update public.profiles set status = 'suspended' where id = :'bob';
select tests.authenticate_as(:'bob');
select results_eq(
    'select id from public.profiles', format('values (%L::uuid)', :'bob'),
    'once suspended, Bob reads only his own profile from the next statement on'
);

select * from finish();
rollback;
