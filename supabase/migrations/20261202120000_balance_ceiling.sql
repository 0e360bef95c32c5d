-- A balance has a ceiling, so a refund can never overflow it.
--
-- profiles.credits is a Postgres integer (at most 2,147,483,647). A grant could bring a
-- balance up to that, and a later refund of the user's work in flight (a failure, a
-- cancellation, the deletion of a teammate's account that owned the project) then added
-- its charge back past it: SQLSTATE 22003, a 5xx to the client, the failure or
-- cancellation rolled back and the work never refunded. Every movement but a grant keeps
-- the sum of the balance and the charges a refund may still return: a charge moves
-- credits from the balance into such a charge, a refund moves them back, completion only
-- removes a charge from the sum. So that sum is bounded where it grows: a grant or a
-- purchase (operators, payments, the signup grant, all through move_credits) is refused
-- (409, saying how much may still be added) when it would carry the balance plus the
-- user's refundable charges past max_balance (1,000,000,000 credits: two million Veo 3
-- videos, far beyond any real purchase, and under half the integer's range). A refund
-- then leaves the balance at most max_balance, and is never refused.
--
-- The check reads the user's charges, which other transactions change. The grant locks
-- the balance's row first and reads the charges in a later statement (a snapshot taken
-- once the lock is held). Every charge and refund moves the balance under that row's lock
-- in the same transaction as its ledger line, so none can commit between the lock and
-- the read: a refund that committed first is seen whole (its balance and its refund line),
-- one that waits for the lock is seen as not yet made (its charge counted). Completion,
-- which takes no such lock, only lowers the sum. Two grants queue on the lock, and the
-- second counts the first. The integrity audit reports any balance beyond the ceiling
-- (rows older than it, or written around move_credits).

insert into private.settings (key, value) values ('max_balance', '1000000000'::jsonb);

-- helpers -----------------------------------------------------------------------------------

create function private.max_balance()
returns bigint
language sql
stable
set search_path = ''
as $$
    -- never above the integer's range, whatever the setting says
    select least(coalesce((private.setting('max_balance') #>> '{}')::bigint, 2147483647), 2147483647)
$$;

comment on function private.max_balance() is
'The most a balance plus its refundable charges may hold: max_balance, at most 2^31 - 1 (profiles.credits).';

revoke all on function private.max_balance() from public, anon, authenticated, service_role;

-- A refund returns a charge once, of a generation that exists and did not complete (the
-- failed and cancelled ones, and those in flight that may yet be); these are the charges
-- a refund may still add back to the balance.
create function private.refundable_credits(p_user_id uuid)
returns bigint
language sql
stable
set search_path = ''
as $$
    select coalesce(sum(-c.amount), 0)::bigint
    from public.credit_ledger as c
    inner join public.generations as g on c.generation_id = g.id
    where
        c.user_id = p_user_id
        and c.kind = 'charge'
        and g.status <> 'completed'
        and not exists (select 1 from public.credit_ledger as r where r.refund_of = c.id)
$$;

comment on function private.refundable_credits(uuid) is
'Credits a refund may still return to a user: charges not yet refunded of generations that did not complete.';

revoke all on function private.refundable_credits(uuid) from public, anon, authenticated, service_role;

-- The only writer of balances. Same as before, with the ceiling on grants and purchases.
create or replace function private.move_credits(
    p_user_id uuid,
    p_kind public.credit_kind,
    p_amount integer,
    p_generation_id uuid default null,
    p_refund_of uuid default null,
    p_note text default null
)
returns public.credit_ledger
language plpgsql
set search_path = ''
as $$
declare
    v_balance integer;
    v_refundable bigint;
    v_ceiling bigint;
    v_entry public.credit_ledger;
begin
    if p_amount is null or p_amount <= 0 then
        perform private.raise_error(400, 'credit amount must be a positive whole number');
    end if;

    -- credits from outside may not carry the balance and what refunds may still return
    -- past the ceiling. The row is locked before the charges are read (a later statement,
    -- a later snapshot): charges and refunds move the balance under this lock, so none
    -- commits between the two reads; a charge or a refund keeps the sum, and a refund is
    -- never refused, because its charge was counted here.
    if p_kind in ('grant', 'purchase') then
        select p.credits into v_balance from public.profiles as p where p.id = p_user_id for no key update;
        if not found then
            perform private.raise_error(404, 'user not found');
        end if;
        v_refundable := private.refundable_credits(p_user_id);
        v_ceiling := private.max_balance();
        if v_balance + v_refundable + p_amount > v_ceiling then
            perform private.raise_error(409, format(
                'a balance may hold at most %s credits, counting the %s credits of work that may still be refunded;'
                ' the balance is %s, so add at most %s',
                v_ceiling, v_refundable, v_balance, greatest(v_ceiling - v_balance - v_refundable, 0)
            ));
        end if;
    end if;

    -- one guarded update: the row lock serializes concurrent movements of one balance, and
    -- the guard is re-checked on the locked row, so it never goes below zero
    update public.profiles
    set credits = credits + case when p_kind = 'charge' then -p_amount else p_amount end,
        updated_at = now()
    where id = p_user_id
        and (p_kind <> 'charge' or credits >= p_amount)
    returning credits into v_balance;

    if not found then
        select credits into v_balance from public.profiles where id = p_user_id;
        if found then
            perform private.raise_error(402, format(
                'not enough credits: this needs %s and the balance is %s', p_amount, v_balance
            ));
        end if;
        perform private.raise_error(404, 'user not found');
    end if;

    insert into public.credit_ledger (user_id, kind, amount, balance_after, generation_id, refund_of, note)
    values (
        p_user_id, p_kind, case when p_kind = 'charge' then -p_amount else p_amount end,
        v_balance, p_generation_id, p_refund_of, p_note
    )
    returning * into v_entry;

    perform private.audit(
        'credits.' || p_kind::text, p_user_id, 'credit_ledger', v_entry.id::text, null,
        jsonb_build_object('amount', v_entry.amount, 'balance_after', v_balance, 'note', p_note)
    );
    return v_entry;
end;
$$;

comment on function private.move_credits(uuid, public.credit_kind, integer, uuid, uuid, text) is
'The only writer of balances: one guarded update (row lock, never below zero, grants within max_balance) '
'plus its ledger line.';

-- the integrity audit -----------------------------------------------------------------------

-- Its earlier checks are unchanged; it also holds every balance to the ceiling.
create or replace function private.integrity_audit()
returns table (invariant text, subject_type text, subject_id text, details jsonb)
language plpgsql
stable
set search_path = ''
as $$
begin
    -- the balance is the sum of its ledger: every movement went through move_credits
    return query
    select 'ledger sums to the balance', 'profile', p.id::text,
        jsonb_build_object('balance', p.credits, 'ledger_sum', coalesce(l.total, 0))
    from public.profiles as p
    left join (
        select cl.user_id, sum(cl.amount) as total from public.credit_ledger as cl group by cl.user_id
    ) as l on p.id = l.user_id
    where p.credits <> coalesce(l.total, 0);

    -- each ledger line also states the balance after it: it must follow from the lines before
    return query
    select 'ledger balance_after follows from the lines before', 'credit_ledger', x.id::text,
        jsonb_build_object('balance_after', x.balance_after, 'running_sum', x.running_sum)
    from (
        select cl.id, cl.balance_after,
            sum(cl.amount) over (partition by cl.user_id order by cl.created_at, cl.id) as running_sum
        from public.credit_ledger as cl
    ) as x
    where x.balance_after <> x.running_sum;

    return query
    select 'no balance below zero', 'profile', p.id::text, jsonb_build_object('balance', p.credits)
    from public.profiles as p
    where p.credits < 0;

    -- a balance and the charges a refund may still return stay within the ceiling, so no
    -- refund overflows the balance
    return query
    select 'balance and refundable charges within max_balance', 'profile', p.id::text,
        jsonb_build_object(
            'balance', p.credits, 'refundable', coalesce(r.total, 0), 'max_balance', private.max_balance()
        )
    from public.profiles as p
    left join (
        select c.user_id, sum(-c.amount) as total
        from public.credit_ledger as c
        inner join public.generations as g on c.generation_id = g.id
        where
            c.kind = 'charge'
            and g.status <> 'completed'
            and not exists (select 1 from public.credit_ledger as x where x.refund_of = c.id)
        group by c.user_id
    ) as r on p.id = r.user_id
    where p.credits + coalesce(r.total, 0) > private.max_balance();

    -- create_generation is the only writer of request_hash, and it charges in the same
    -- transaction; rows without one are imports (the demo seed) that were never charged here
    return query
    select 'every charged generation has its charge', 'generation', g.id::text,
        jsonb_build_object('cost', g.cost, 'charged', coalesce(-c.amount, 0), 'charges', coalesce(c.lines, 0))
    from public.generations as g
    left join (
        select cl.generation_id, sum(cl.amount) as amount, count(*) as lines
        from public.credit_ledger as cl
        where cl.kind = 'charge'
        group by cl.generation_id
    ) as c on g.id = c.generation_id
    where g.request_hash is not null
        and g.cost > 0
        and (c.lines is distinct from 1 or -c.amount <> g.cost);

    -- a refund returns exactly one charge, of its own generation and user, once
    return query
    select 'every refund returns one charge once', 'credit_ledger', r.id::text,
        jsonb_build_object(
            'refund_amount', r.amount, 'charge_id', r.refund_of, 'charge_kind', c.kind,
            'charge_amount', c.amount, 'refunds_of_generation', n.refunds
        )
    from public.credit_ledger as r
    left join public.credit_ledger as c on r.refund_of = c.id
    left join (
        select cl.generation_id, count(*) as refunds
        from public.credit_ledger as cl
        where cl.kind = 'refund' and cl.generation_id is not null
        group by cl.generation_id
    ) as n on r.generation_id = n.generation_id
    where r.kind = 'refund'
        and (
            c.id is null
            or c.kind <> 'charge'
            or r.amount <> -c.amount
            or r.user_id <> c.user_id
            or r.generation_id is distinct from c.generation_id
            or n.refunds > 1
        );

    -- refunds follow failure and cancellation only: a finished or live generation keeps its charge
    return query
    select 'only failed or cancelled generations are refunded', 'generation', g.id::text,
        jsonb_build_object('status', g.status)
    from public.generations as g
    where g.status not in ('failed', 'cancelled')
        and exists (
            select 1 from public.credit_ledger as cl
            where cl.generation_id = g.id and cl.kind = 'refund'
        );

    -- the only derived access state, compared with its definition
    return query
    select 'no derived-access drift', 'generation', a.generation_id::text,
        jsonb_build_object('problem', a.problem, 'project_id', a.project_id, 'stored', a.stored, 'expected', a.expected)
    from private.check_access() as a;

    -- queued and processing mean FAL accepted the request: its id is what webhooks and the
    -- poller find the generation by
    return query
    select 'generations in flight at FAL have its request id', 'generation', g.id::text,
        jsonb_build_object('status', g.status)
    from public.generations as g
    where g.status in ('queued', 'processing') and g.fal_request_id is null;

    -- a pending generation is waiting for its submit job; without one it waits forever.
    -- The job engine's tables exist only where `velro db apply` installed them.
    if pg_catalog.to_regclass('procrastinate.procrastinate_jobs') is not null then
        return query execute $sql$
            select 'every pending generation has its submit job', 'generation', g.id::text,
                jsonb_build_object('created_at', g.created_at)
            from public.generations as g
            where g.status = 'pending'
                and not exists (
                    select 1 from procrastinate.procrastinate_jobs as j
                    where j.task_name = 'velro.submit_generation'
                        and j.args ->> 'generation_id' = g.id::text
                        and j.status in ('todo', 'doing')
                )
        $sql$;
    end if;

    -- the audit log: every credit movement, share and invitation the schema holds left its event.
    -- Ledger ids changed from integers to uuids after lines were written: an event written
    -- before names the old id, so a line also matches its user's event of the same kind,
    -- amount and resulting balance.
    return query
    select 'every credit movement is audited', 'credit_ledger', cl.id::text,
        jsonb_build_object('kind', cl.kind, 'user_id', cl.user_id)
    from public.credit_ledger as cl
    where not exists (
        select 1 from private.audit_events as e
        where e.subject_type = 'credit_ledger' and e.event = 'credits.' || cl.kind::text
            and (
                e.subject_id = cl.id::text
                or (
                    e.subject_id !~ '-'
                    and e.actor_id = cl.user_id
                    and e.details ->> 'amount' = cl.amount::text
                    and e.details ->> 'balance_after' = cl.balance_after::text
                )
            )
    );

    return query
    select 'every share is audited', 'generation_share', s.generation_id::text || '/' || s.team_id::text,
        jsonb_build_object('role', s.role)
    from public.generation_shares as s
    where not exists (
        select 1 from private.audit_events as e
        where e.event = 'generation.shared' and e.subject_type = 'generation'
            and e.subject_id = s.generation_id::text and e.team_id = s.team_id
    );

    return query
    select 'every invitation is audited', 'invitation', i.id::text,
        jsonb_build_object('team_id', i.team_id)
    from public.invitations as i
    where not exists (
        select 1 from private.audit_events as e
        where e.event = 'team.member_invited' and e.subject_type = 'invitation'
            and e.subject_id = i.id::text
    );

    -- every team's creation left its event (team.recorded: it existed when team history began)
    return query
    select 'every team''s creation is audited', 'team', t.id::text,
        jsonb_build_object('owner_id', t.owner_id)
    from public.teams as t
    where not exists (
        select 1 from private.audit_events as e
        where e.subject_type = 'team' and e.subject_id = t.id::text
            and e.event in ('team.created', 'team.recorded')
    );

    -- the membership table is what its history says: each membership's latest event gives
    -- its current role, and a membership whose latest event is not a removal still exists
    return query
    select 'every membership change is audited', 'team_member', m.team_id::text || '/' || m.user_id::text,
        jsonb_build_object('role', m.role, 'last_event', h.event, 'audited_role', h.details ->> 'role')
    from public.team_members as m
    left join lateral (
        select e.event, e.details from private.audit_events as e
        where e.subject_type = 'team_member' and e.team_id = m.team_id and e.subject_id = m.user_id::text
        order by e.id desc
        limit 1
    ) as h on true
    where
        h.event is null
        or h.event = 'membership.removed'
        or h.details ->> 'role' is distinct from m.role::text;

    return query
    select 'every membership removal is audited', 'team_member', h.team_id::text || '/' || h.subject_id,
        jsonb_build_object('last_event', h.event, 'audited_role', h.details ->> 'role')
    from (
        select distinct on (e.team_id, e.subject_id) e.team_id, e.subject_id, e.event, e.details
        from private.audit_events as e
        where e.subject_type = 'team_member'
        order by e.team_id, e.subject_id, e.id desc
    ) as h
    where h.event <> 'membership.removed'
        and not exists (
            select 1 from public.team_members as m
            where m.team_id = h.team_id and m.user_id::text = h.subject_id
        );
end;
$$;

comment on function private.integrity_audit() is
'Operators: one row per violated invariant (ledger, charges, refunds, balance ceiling, access, pipeline,'
' audit log, team history); empty when sound.';
