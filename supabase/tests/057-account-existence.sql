-- A token that outlives its account: the RPCs answer that the account does not exist
-- (PT401), not that it is suspended; a suspended account is still told so (PT403).
begin;
select plan(6);

select tests.create_user('gone@velro.test') as gone \gset
select tests.create_user('sue@velro.test') as sue \gset
select tests.create_user('ann@velro.test') as ann \gset
update public.profiles set status = 'suspended' where id = :'sue';
delete from auth.users where id = :'gone';

-- what PostgREST does with the deleted user's still-unexpired JWT
select set_config('request.jwt.claims', json_build_object('sub', :'gone', 'role', 'authenticated')::text, true);
set local role authenticated;
select throws_ok(
    $$select public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'x', null)$$,
    'PT401', 'this account does not exist: sign up or sign in again',
    'a deleted account''s token is told the account does not exist'
);
select throws_ok(
    $$select public.create_team('ghosts')$$, 'PT401', 'this account does not exist: sign up or sign in again',
    'on every RPC'
);
select is_empty('select id from public.profiles', 'and reads no profile');

select tests.authenticate_as(:'sue');
select throws_ok(
    $$select public.create_team('suspects')$$, 'PT403', 'this account is suspended',
    'a suspended account is still told it is suspended'
);
select tests.authenticate_as(:'ann');
select lives_ok($$select public.create_team('alive')$$, 'an active account goes through');
select tests.authenticate_as_anon();
select throws_ok(
    $$select public.create_team('anon')$$, '42501', 'permission denied for function create_team',
    'anon cannot call it at all'
);

select * from finish();
rollback;
