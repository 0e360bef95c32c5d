-- Accepting an invitation judges its expiry at the moment of acceptance (clock_timestamp()),
-- not at the start of the transaction: a transaction that began before the invitation
-- expired cannot accept it afterwards. accepted_at is that moment.
begin;
select plan(6);

select tests.create_user('owner@velro.test') as towner \gset
select tests.create_user('late@velro.test') as late \gset
select tests.create_user('early@velro.test') as early \gset

select tests.authenticate_as(:'towner');
select id as team from public.create_team('Clockwork') \gset
select
    invitation ->> 'token' as late_token,
    invitation ->> 'invitation_id' as late_id
from (select public.invite_member(:'team', 'late@velro.test') as invitation) as i \gset
select
    invitation ->> 'token' as early_token,
    invitation ->> 'invitation_id' as early_id
from (select public.invite_member(:'team', 'early@velro.test') as invitation) as i \gset
select tests.clear_authentication();

-- this transaction has been open a while; the invitation expires during it, before the call
select pg_sleep(0.05);
update public.invitations set expires_at = now() + (clock_timestamp() - now()) / 2 where id = :'late_id';
select ok(
    (select expires_at > now() and expires_at < clock_timestamp() from public.invitations where id = :'late_id'),
    'the invitation was valid when the transaction began and has expired since'
);

select tests.authenticate_as(:'late');
select throws_ok(
    format('select public.accept_invitation(%L)', :'late_token'),
    'PT410', 'this invitation has expired: ask for a new one',
    'an invitation that expired during the transaction is refused as expired'
);
select tests.clear_authentication();
select is_empty(
    format('select 1 from public.team_members where team_id = %L and user_id = %L', :'team', :'late'),
    'and its invitee did not join'
);

-- one that is still valid at the moment of acceptance is accepted, and stamped with that moment
update public.invitations set expires_at = clock_timestamp() + interval '1 minute' where id = :'early_id';
select pg_sleep(0.05);
select tests.authenticate_as(:'early');
select lives_ok(
    format('select public.accept_invitation(%L)', :'early_token'),
    'an invitation valid at the moment of acceptance is accepted'
);
select tests.clear_authentication();
select ok(
    (select accepted_at > now() and accepted_at < expires_at from public.invitations where id = :'early_id'),
    'accepted_at is the moment it was judged (after the transaction began), before the expiry'
);
select is(
    (select role::text from public.team_members where team_id = :'team' and user_id = :'early'), 'viewer',
    'and its invitee joined'
);

select * from finish();
rollback;
