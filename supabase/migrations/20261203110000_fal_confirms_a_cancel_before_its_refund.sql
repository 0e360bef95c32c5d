-- A generation FAL holds is refunded on cancel only once FAL has taken it off its queue.
--
-- public.cancel_generation cancelled and refunded a queued generation in the database alone:
-- the API then cancelled it at FAL in the same transaction (409 if FAL had started it), but
-- a client calling the function directly, as the Supabase SDK lets it, skipped FAL. FAL ran
-- the request anyway, for a user refunded in full, and its result was discarded: a loop of
-- create and cancel cost FAL time and no credits.
--
-- Now the function cancels only what FAL does not hold (no request id: the submit job finds
-- it cancelled and stops, or cancels at FAL the run it could not record). Once FAL holds a
-- generation, only the API may cancel it: it checks the caller's right
-- (public.cancellable_generation), asks FAL to cancel, and only when FAL confirms records the
-- cancellation and the refund (public.record_fal_cancellation, the service role's alone).

create function private.cancellable(p_generation_id uuid)
returns public.generations
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_generation public.generations;
begin
    perform private.require_generation_role(p_generation_id, 'editor');
    select * into v_generation from public.generations where id = p_generation_id;
    if v_generation.status not in ('pending', 'queued') then
        perform private.raise_error(409, 'only a pending or queued generation can be cancelled');
    end if;
    return v_generation;
end;
$$;

comment on function private.cancellable(uuid) is
'The generation, when the caller (an active editor of it) may cancel it now; else 403/404/409.';

revoke all on function private.cancellable(uuid) from public, anon, authenticated, service_role;

create function public.cancellable_generation(p_generation_id uuid)
returns public.generations
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.require_active_user();
    return private.cancellable(p_generation_id);
end;
$$;

comment on function public.cancellable_generation(uuid) is
'The generation, when the caller may cancel it now (editor, pending or queued); else 403/404/409. '
'One that FAL holds (fal_request_id) is cancelled through the API, which asks FAL first.';

revoke all on function public.cancellable_generation(uuid) from public, anon, service_role;
grant execute on function public.cancellable_generation(uuid) to authenticated;

create or replace function public.cancel_generation(p_generation_id uuid)
returns public.generations
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_generation public.generations := private.cancellable(p_generation_id);
begin
    -- a submit job recording its request id holds the row: this waits and then sees the id
    update public.generations
    set status = 'cancelled', updated_at = now(), completed_at = now()
    where id = p_generation_id and status in ('pending', 'queued') and fal_request_id is null
    returning * into v_generation;
    if not found then
        perform private.raise_error(
            409,
            'FAL already holds this generation: cancel it through the API '
            '(POST /api/v1/generations/{id}/cancel), which refunds it once FAL has cancelled it'
        );
    end if;
    perform private.refund(p_generation_id, 'cancelled');
    perform private.audit('generation.cancelled', v_uid, 'generation', p_generation_id::text, null, '{}'::jsonb);
    return v_generation;
end;
$$;

comment on function public.cancel_generation(uuid) is
'Editors cancel a generation FAL does not hold yet; its credits are refunded once. One FAL holds '
'is cancelled through the API, which asks FAL first (409 here).';

create function public.record_fal_cancellation(
    p_generation_id uuid, p_fal_request_id text, p_user_id uuid
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
    set status = 'cancelled', updated_at = now(), completed_at = now()
    where id = p_generation_id and status in ('pending', 'queued')
    and fal_request_id = p_fal_request_id
    returning * into v_generation;
    if not found then
        -- deleted since, or its end recorded meanwhile (a failure is refunded there)
        select * into v_generation from public.generations where id = p_generation_id;
        if not found then
            perform private.raise_error(404, 'generation not found');
        end if;
        return v_generation;
    end if;
    perform private.refund(p_generation_id, 'cancelled');
    perform private.audit('generation.cancelled', p_user_id, 'generation', p_generation_id::text, null, '{}'::jsonb);
    return v_generation;
end;
$$;

comment on function public.record_fal_cancellation(uuid, text, uuid) is
'Service role: FAL confirmed it cancelled this request; the generation holding it is cancelled '
'and refunded once (by p_user_id, for the audit). One that has moved on is returned as it is.';

revoke all on function public.record_fal_cancellation(uuid, text, uuid)
from public, anon, authenticated;
grant execute on function public.record_fal_cancellation(uuid, text, uuid) to service_role;
