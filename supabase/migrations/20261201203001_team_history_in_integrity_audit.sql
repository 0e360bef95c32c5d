-- The integrity audit also holds teams and memberships to their history in the audit log
-- (written by the triggers of the team history migration): every team has its creation
-- event, every membership its latest change, and every membership the history still
-- shows has not silently disappeared. Its earlier checks are unchanged.

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
'Operators: one row per violated invariant (ledger, charges, refunds, access, pipeline, audit log,'
' team history); empty when sound.';

revoke all on function private.integrity_audit() from public, anon, authenticated, service_role;
