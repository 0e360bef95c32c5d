-- The generation pipeline's database side: a submit job committed with every new generation
-- (a transactional outbox on the job engine's own table), a media-copy job when one
-- completes, forward-only status moves for FAL's webhooks and the poller, and the FAL
-- circuit breaker's shared state.
--
-- The job engine (procrastinate) keeps its tables in the `procrastinate` schema, installed by
-- `velro db apply` with the engine's own schema tooling, never exposed and never granted to an
-- API role. Its functions are pinned to that schema at install, so the definer functions here
-- call them with `search_path = ''`.

-- tables --------------------------------------------------------------------------------

create table private.circuit_breakers (
    name text primary key,
    consecutive_failures integer not null default 0 check (consecutive_failures >= 0),
    opened_until timestamptz,
    updated_at timestamptz not null default now()
);

comment on table private.circuit_breakers is
'Shared state of each circuit breaker (FAL submission): every web and worker process reads the same row.';

revoke all on private.circuit_breakers from public, anon, authenticated, service_role;

-- functions -----------------------------------------------------------------------------

create function private.defer_job(p_task_name text, p_args jsonb, p_queueing_lock text default null)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_job_ids bigint[];
begin
    if pg_catalog.to_regnamespace('procrastinate') is null then
        perform private.raise_error(503,
            'the job engine is not installed in this database: run `velro db apply` (it installs it)');
    end if;
    v_job_ids := procrastinate.procrastinate_defer_jobs_v1(array[
        row(
            'pipeline', p_task_name, 0, null, p_queueing_lock, p_args, null
        )::procrastinate.procrastinate_job_to_defer_v1
    ]);
    return v_job_ids[1];
end;
$$;

comment on function private.defer_job(text, jsonb, text) is
'Inserts a job for the worker in the caller''s transaction: it commits or rolls back with the change needing it.';

revoke execute on function private.defer_job(text, jsonb, text) from public, anon, authenticated, service_role;

create function private.defer_generation_submission()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.defer_job('velro.submit_generation', jsonb_build_object('generation_id', new.id));
    return null;
end;
$$;

comment on function private.defer_generation_submission() is
'Outbox: every new generation commits with its submit job, whether our API or PostgREST created it.';

revoke execute on function private.defer_generation_submission() from public, anon, authenticated, service_role;

create function private.defer_output_copy()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.defer_job('velro.copy_outputs', jsonb_build_object('generation_id', new.id));
    return null;
end;
$$;

comment on function private.defer_output_copy() is
'FAL''s output URLs expire: a completed generation commits with the job that copies its outputs to our storage.';

revoke execute on function private.defer_output_copy() from public, anon, authenticated, service_role;

-- triggers ------------------------------------------------------------------------------

-- only new work: rows inserted already finished (imports, the demo seed) need no submission
create trigger generations_defer_submission
after insert on public.generations
for each row
when (new.status = 'pending')
execute function private.defer_generation_submission();

create trigger generations_defer_output_copy
after update of status on public.generations
for each row
when (new.status = 'completed' and old.status is distinct from 'completed')
execute function private.defer_output_copy();

-- RPCs ----------------------------------------------------------------------------------

create function private.status_rank(p_status public.generation_status)
returns integer
language sql
immutable
set search_path = ''
as $$
    select case p_status
        when 'pending' then 0
        when 'queued' then 1
        when 'processing' then 2
        else 3
    end;
$$;

comment on function private.status_rank(public.generation_status) is
'Order of a generation''s states: a move is applied only towards a higher rank, so late webhooks change nothing.';

revoke execute on function private.status_rank(public.generation_status) from public, anon, authenticated;

-- Same signature and grants as before: only the forward-only rule is new.
create or replace function public.record_generation_progress(
    p_generation_id uuid,
    p_status public.generation_status,
    p_fal_request_id text default null,
    p_outputs jsonb default null,
    p_error text default null
)
returns public.generations
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_generation public.generations;
begin
    update public.generations
    set status = p_status,
        fal_request_id = coalesce(p_fal_request_id, fal_request_id),
        outputs = coalesce(p_outputs, outputs),
        error = coalesce(p_error, error),
        updated_at = now(),
        completed_at = case when p_status in ('completed', 'failed', 'cancelled') then now() end
    -- status moves only forward: duplicate, late and out-of-order deliveries change nothing
    where id = p_generation_id and private.status_rank(status) < private.status_rank(p_status)
    returning * into v_generation;

    if not found then
        select * into v_generation from public.generations where id = p_generation_id;
        if not found then
            perform private.raise_error(404, 'generation not found');
        end if;
        return v_generation;
    end if;
    if p_status in ('failed', 'cancelled') then
        perform private.refund(p_generation_id, p_status::text);
    end if;
    return v_generation;
end;
$$;

comment on function public.record_generation_progress(uuid, public.generation_status, text, jsonb, text) is
'Service role: moves a generation forward only; failure refunds once; a finished generation stays finished.';

create function public.fal_circuit_allows()
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
    select coalesce((
        select b.opened_until is null or b.opened_until <= now()
        from private.circuit_breakers as b where b.name = 'fal'
    ), true);
$$;

comment on function public.fal_circuit_allows() is
'Service role: false while FAL submissions fail fast (the breaker is open); health and the worker ask it.';

revoke execute on function public.fal_circuit_allows() from public, anon, authenticated;
grant execute on function public.fal_circuit_allows() to service_role;

create function public.record_fal_outcome(p_succeeded boolean, p_threshold integer, p_open_seconds integer)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_breaker private.circuit_breakers;
begin
    if p_succeeded then
        -- the common case writes nothing, so concurrent submissions never queue on this row
        update private.circuit_breakers
        set consecutive_failures = 0, opened_until = null, updated_at = now()
        where name = 'fal' and (consecutive_failures > 0 or opened_until is not null);
        return true;
    end if;
    insert into private.circuit_breakers as b (name, consecutive_failures)
    values ('fal', 1)
    on conflict (name) do update
    set consecutive_failures = b.consecutive_failures + 1, updated_at = now()
    returning * into v_breaker;
    if v_breaker.consecutive_failures >= p_threshold then
        update private.circuit_breakers
        set opened_until = now() + make_interval(secs => p_open_seconds)
        where name = 'fal'
        returning * into v_breaker;
    end if;
    return v_breaker.opened_until is null or v_breaker.opened_until <= now();
end;
$$;

comment on function public.record_fal_outcome(boolean, integer, integer) is
'Service role: counts consecutive FAL failures; at the threshold the breaker opens for a while. True when closed.';

revoke execute on function public.record_fal_outcome(boolean, integer, integer) from public, anon, authenticated;
grant execute on function public.record_fal_outcome(boolean, integer, integer) to service_role;

create function public.generations_awaiting_fal(p_older_than_seconds integer, p_limit integer default 100)
returns setof public.generations
language sql
stable
security definer
set search_path = ''
as $$
    select g.* from public.generations as g
    where g.status in ('queued', 'processing')
        and g.updated_at < now() - make_interval(secs => p_older_than_seconds)
    order by g.updated_at
    limit p_limit;
$$;

comment on function public.generations_awaiting_fal(integer, integer) is
'Service role: in-flight generations whose webhook is late, oldest first, for the poller.';

revoke execute on function public.generations_awaiting_fal(integer, integer) from public, anon, authenticated;
grant execute on function public.generations_awaiting_fal(integer, integer) to service_role;
