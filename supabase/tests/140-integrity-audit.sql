-- The integrity audit: empty on a world built through the API, and each invariant it checks
-- is caught when a breach is planted (as the superuser, inside this rolled-back transaction).
-- No API role may run it.
begin;
select plan(19);

select tests.create_user('ann@velro.test') as ann \gset
select tests.create_user('bob@velro.test') as bob \gset
select private.move_credits(:'ann'::uuid, 'grant', 1000, p_note => 'test credits');
select private.move_credits(:'bob'::uuid, 'grant', 100, p_note => 'test credits');

-- a clean world, made the way users make it
select tests.authenticate_as(:'ann');
select id as team from public.create_team('Audited') \gset
select public.invite_member(:'team', 'guest@velro.test', 'viewer');
insert into public.projects (name, visibility) values ('Open', 'public') returning id as project \gset
select id as gen from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'one', 'k-1', :'project') \gset
select id as gen2 from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'two', 'k-2') \gset
select id as gen3 from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'three', 'k-3') \gset
select id as gen4 from public.create_generation('fal-ai/flux-pro/v1.1-ultra', 'four', 'k-4') \gset
select public.share_generation(:'gen', :'team', 'viewer');
select public.cancel_generation(:'gen4');
select tests.clear_authentication();

select is_empty('select * from private.integrity_audit()', 'a world made through the API passes every invariant');

-- operators only
select ok(
    not has_function_privilege('anon', 'private.integrity_audit()', 'execute')
    and not has_function_privilege('authenticated', 'private.integrity_audit()', 'execute')
    and not has_function_privilege('service_role', 'private.integrity_audit()', 'execute'),
    'no API role may run the audit'
);
select tests.authenticate_as(:'ann');
select throws_ok('select * from private.integrity_audit()', '42501', null, 'a user calling it is refused');
select tests.clear_authentication();

create function pg_temp.flagged(p_invariant text, p_subject_id text)
returns boolean
language sql
as $$
    select exists (
        select 1 from private.integrity_audit() as a
        where a.invariant = p_invariant and a.subject_id = p_subject_id
    )
$$;

-- a balance written around move_credits
update public.profiles set credits = credits + 5 where id = :'bob';
select ok(pg_temp.flagged('ledger sums to the balance', :'bob'), 'a balance its ledger does not sum to is caught');
update public.profiles set credits = credits - 5 where id = :'bob';

-- a ledger line whose balance_after does not follow from the lines before
select id as grant_line from public.credit_ledger where user_id = :'bob' order by created_at limit 1 \gset
update public.credit_ledger set balance_after = balance_after + 1 where id = :'grant_line';
select ok(
    pg_temp.flagged('ledger balance_after follows from the lines before', :'grant_line'),
    'a ledger line with a wrong balance_after is caught'
);
update public.credit_ledger set balance_after = balance_after - 1 where id = :'grant_line';

-- a balance below zero (only possible without its check constraint)
alter table public.profiles drop constraint profiles_credits_check;
update public.profiles set credits = -1 where id = :'bob';
select ok(pg_temp.flagged('no balance below zero', :'bob'), 'a balance below zero is caught');
update public.profiles
set credits = (select sum(amount) from public.credit_ledger where user_id = :'bob')
where id = :'bob';

-- a generation made by create_generation (it has a fingerprint) that holds no charge
insert into public.generations (owner_id, model_id, prompt, status, cost, request_hash)
values (:'bob', 'fal-ai/flux-pro/v1.1-ultra', 'free ride', 'completed', 50, repeat('a', 64))
returning id as uncharged \gset
select ok(
    pg_temp.flagged('every charged generation has its charge', :'uncharged'),
    'a generation without its charge is caught'
);
insert into public.generations (owner_id, model_id, prompt, status, cost)
values (:'bob', 'fal-ai/flux-pro/v1.1-ultra', 'imported', 'completed', 50)
returning id as imported \gset
select ok(
    not pg_temp.flagged('every charged generation has its charge', :'imported'),
    'a generation imported finished (no fingerprint, like the demo seed) is not expected to hold a charge'
);
delete from public.generations where id in (:'uncharged', :'imported');

-- a charge refunded twice (only possible without the unique index on refund_of)
drop index public.credit_ledger_refund_of_key;
select id as gen_charge from public.credit_ledger where generation_id = :'gen2' and kind = 'charge' \gset
select id as refund_1
from private.move_credits(:'ann'::uuid, 'refund', 50, :'gen2'::uuid, :'gen_charge'::uuid, 'one') \gset
select id as refund_2
from private.move_credits(:'ann'::uuid, 'refund', 50, :'gen2'::uuid, :'gen_charge'::uuid, 'two') \gset
select ok(
    pg_temp.flagged('every refund returns one charge once', :'refund_2'),
    'a charge refunded twice is caught'
);
select ok(
    pg_temp.flagged('only failed or cancelled generations are refunded', :'gen2'),
    'a refund of a generation that neither failed nor was cancelled is caught'
);
delete from public.credit_ledger where id in (:'refund_1', :'refund_2');

-- a refund of more than was charged
select id as gen4_refund from public.credit_ledger where generation_id = :'gen4' and kind = 'refund' \gset
update public.credit_ledger set amount = amount + 1 where id = :'gen4_refund';
select ok(
    pg_temp.flagged('every refund returns one charge once', :'gen4_refund'),
    'a refund of another amount than its charge is caught'
);
update public.credit_ledger set amount = amount - 1 where id = :'gen4_refund';

-- derived access drift: only a write that bypasses the trigger can make it
set local session_replication_role = replica;
update public.generations set project_is_public = false where id = :'gen';
set local session_replication_role = origin;
select ok(
    pg_temp.flagged('no derived-access drift', :'gen'),
    'derived access state differing from its project is caught'
);
update public.generations set project_is_public = true where id = :'gen';

-- in flight at FAL without its request id
update public.generations set status = 'queued' where id = :'gen3';
select ok(
    pg_temp.flagged('generations in flight at FAL have its request id', :'gen3'),
    'a queued generation without its FAL request id is caught'
);
update public.generations set fal_request_id = 'req-3' where id = :'gen3';
select ok(
    not pg_temp.flagged('generations in flight at FAL have its request id', :'gen3'),
    'with its request id it passes'
);

-- pending without its submit job
delete from procrastinate.procrastinate_jobs
where task_name = 'velro.submit_generation' and args ->> 'generation_id' = :'gen2';
select ok(
    pg_temp.flagged('every pending generation has its submit job', :'gen2'),
    'a pending generation without its submit job is caught'
);

-- the audit log: movements, shares and invitations written around their RPCs
insert into public.credit_ledger (user_id, kind, amount, balance_after, note)
values (:'bob', 'grant', 10, 110, 'unaudited')
returning id as silent_grant \gset
select ok(
    pg_temp.flagged('every credit movement is audited', :'silent_grant'),
    'a credit movement without its audit event is caught'
);

-- a line written before ledger ids were uuids: its event names the old integer id
insert into public.credit_ledger (user_id, kind, amount, balance_after, note)
values (:'bob', 'purchase', 7, 117, 'legacy')
returning id as legacy_line \gset
select private.audit(
    'credits.purchase', :'bob'::uuid, 'credit_ledger', '42', null,
    '{"amount": 7, "balance_after": 117}'::jsonb
);
select ok(
    not pg_temp.flagged('every credit movement is audited', :'legacy_line'),
    'a line whose event names its former integer id counts as audited'
);

select id as team2 from public.teams where owner_id = :'ann' \gset
insert into public.generation_shares (generation_id, team_id, role) values (:'gen3', :'team2', 'viewer');
select ok(
    pg_temp.flagged('every share is audited', :'gen3' || '/' || :'team2'),
    'a share without its audit event is caught'
);

insert into public.invitations (team_id, email, role, token_hash, expires_at)
values (:'team', 'silent@velro.test', 'viewer', repeat('b', 64), now() + interval '1 day')
returning id as silent_invitation \gset
select ok(
    pg_temp.flagged('every invitation is audited', :'silent_invitation'),
    'an invitation without its audit event is caught'
);

select * from finish();
rollback;
