-- A balance has a ceiling (max_balance): a grant or a purchase that would carry the balance
-- plus the charges a refund may still return past it is refused (409, saying how much may
-- still be added), so refunding work in flight never overflows the integer balance.
begin;
select plan(22);

select tests.create_user('ann@velro.test') as ann \gset
select tests.create_user('bea@velro.test') as bea \gset

-- work in flight, then a grant to the integer's top --------------------------------------------

select public.grant_credits(:'ann', 900);
select tests.authenticate_as(:'ann');
-- 1000 granted (100 at sign-up), 350 charged: 650 left, 350 refundable
select id as kling from public.create_generation('fal-ai/kling-video/v2.1/master/text-to-video', 'a clip', null) \gset

select tests.authenticate_as_service_role();
select throws_ok(
    format('select public.grant_credits(%L, %s)', :'ann', 2147483647 - 650),
    'PT409',
    'a balance may hold at most 1000000000 credits, counting the 350 credits of work that may still be refunded;'
    || ' the balance is 650, so add at most 999999000',
    'a grant that leaves no room for the refund of work in flight is refused, saying how much may be added'
);
select lives_ok(
    format($$select public.record_generation_progress(%L, 'failed', p_error => 'FAL failed')$$, :'kling'),
    'so the refund of that work never overflows the balance'
);
select tests.clear_authentication();
select is(
    (select credits from public.profiles where id = :'ann'), 1000,
    'the refund returned the charge: the balance is what was granted'
);
select is(private.refundable_credits(:'ann'), 0::bigint, 'a refunded charge is not refundable any more');
select is(private.max_balance(), 1000000000::bigint, 'the ceiling is max_balance: 1,000,000,000 credits');

-- the ceiling, exactly ---------------------------------------------------------------------------

select tests.authenticate_as(:'ann');
select id as veo from public.create_generation('fal-ai/veo3', 'a film', null) \gset
select id as done from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'a fox', null) \gset
select id as gone from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'a hen', null) \gset
select tests.clear_authentication();
-- 1000 - 504 - 50 - 50 = 396, with 604 refundable
select tests.authenticate_as_service_role();
select public.record_generation_progress(:'done', 'completed');
select tests.clear_authentication();
select is(
    private.refundable_credits(:'ann'), 554::bigint,
    'a completed generation''s charge is kept, not refundable'
);
-- a failed generation whose refund has not happened yet (written around the RPCs) still counts
update public.generations set status = 'failed' where id = :'gone';
select is(private.refundable_credits(:'ann'), 554::bigint, 'a failed generation not yet refunded still counts');

select tests.authenticate_as_service_role();
select throws_ok(
    format($$select public.grant_credits(%L, %s, 'purchase')$$, :'ann', 1000000000 - 396 - 554 + 1),
    'PT409',
    'a balance may hold at most 1000000000 credits, counting the 554 credits of work that may still be refunded;'
    || ' the balance is 396, so add at most 999999050',
    'a purchase one credit past the ceiling is refused'
);
select results_eq(
    format('select balance_after from public.grant_credits(%L, %s)', :'ann', 1000000000 - 396 - 554),
    'values (999999446)', 'a grant up to the ceiling is accepted: the balance leaves room for the refunds'
);
select throws_ok(
    format('select public.grant_credits(%L, 1)', :'ann'), 'PT409',
    'a balance may hold at most 1000000000 credits, counting the 554 credits of work that may still be refunded;'
    || ' the balance is 999999446, so add at most 0',
    'then not one credit more'
);
select results_eq(
    format($$select balance_after from public.refund_generation(%L, 'failed')$$, :'gone'),
    'values (999999496)', 'the late refund of the failed generation fits'
);
select tests.clear_authentication();

select tests.authenticate_as(:'ann');
select lives_ok(format('select public.cancel_generation(%L)', :'veo'), 'and so does a cancellation''s refund');
select tests.clear_authentication();
select is(
    (select credits from public.profiles where id = :'ann'), 1000000000,
    'the balance reaches the ceiling exactly and no further'
);

-- a charge keeps the sum, so room comes back only as work completes ---------------------------

select tests.authenticate_as(:'ann');
select id as next from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'an owl', null) \gset
select tests.clear_authentication();
select tests.authenticate_as_service_role();
select throws_ok(
    format('select public.grant_credits(%L, 1)', :'ann'), 'PT409', null,
    'a charge does not make room: its refund may still come'
);
select public.record_generation_progress(:'next', 'completed');
select results_eq(
    format('select balance_after from public.grant_credits(%L, 50)', :'ann'),
    'values (1000000000)', 'a completed generation''s charge makes room for as much'
);
select tests.clear_authentication();

-- every way in goes through the ceiling --------------------------------------------------------

select throws_ok(
    format($$select private.move_credits(%L::uuid, 'grant', 1)$$, :'ann'), 'PT409', null,
    'move_credits itself refuses it, whoever calls it'
);
update private.settings set value = '1000000001'::jsonb where key = 'signup_credits';
select throws_ok(
    $$select tests.create_user('rich@velro.test')$$, 'PT409', null,
    'a signup grant above the ceiling is refused with the sign-up'
);
update private.settings set value = '100'::jsonb where key = 'signup_credits';

update private.settings set value = '3000000000'::jsonb where key = 'max_balance';
select is(
    private.max_balance(), 2147483647::bigint,
    'a max_balance set beyond the integer''s range counts as its top, never more'
);
update private.settings set value = '1000000000'::jsonb where key = 'max_balance';

-- refusals change nothing; the integrity audit holds balances to the ceiling ------------------

select is(
    (select count(*)::integer from public.credit_ledger where user_id = :'ann' and kind in ('grant', 'purchase')),
    4, 'no refused grant left a ledger line (sign-up, 900, the grant to the ceiling, 50)'
);
select is_empty(
    format($$select * from private.integrity_audit() where subject_id = %L$$, :'ann'),
    'a balance at the ceiling passes the integrity audit'
);
update public.profiles set credits = credits + 1 where id = :'ann';
select ok(
    exists (
        select 1 from private.integrity_audit()
        where invariant = 'balance and refundable charges within max_balance' and subject_id = :'ann'
    ),
    'a balance past the ceiling (written around move_credits) is caught by the audit'
);
update public.profiles set credits = credits - 1 where id = :'ann';

-- other users' balances are their own ---------------------------------------------------------------

select tests.authenticate_as_service_role();
select results_eq(
    format('select balance_after from public.grant_credits(%L, 999999900)', :'bea'),
    'values (1000000000)', 'another user''s ceiling is unaffected by ann''s'
);
select tests.clear_authentication();

select * from finish();
rollback;
