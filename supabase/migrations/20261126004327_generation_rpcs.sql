-- Creating, cancelling and finishing generations, with their credits.
--
-- A generation and its charge commit together: create_generation inserts the row (or finds
-- the one with the same idempotency key) and charges in the same transaction. A refund is
-- tied to its charge by a unique reference, so it happens at most once however often it is
-- asked for.

-- helpers -------------------------------------------------------------------------------

-- The subset of JSON Schema the catalog uses: an object of known keys, each with a type,
-- an optional enum and optional numeric bounds. Errors name the field to fix.
create function private.validate_parameters(p_schema jsonb, p_parameters jsonb)
returns void
language plpgsql
immutable
set search_path = ''
as $$
declare
    v_key text;
    v_value jsonb;
    v_rule jsonb;
    v_type text;
begin
    if p_parameters is null or jsonb_typeof(p_parameters) <> 'object' then
        perform private.raise_error(400, 'parameters must be a JSON object');
    end if;
    for v_key, v_value in select key, value from jsonb_each(p_parameters) loop
        v_rule := p_schema -> 'properties' -> v_key;
        if v_rule is null then
            perform private.raise_error(400, format(
                'parameters.%s is not a parameter of this model; allowed: %s', v_key,
                (select coalesce(string_agg(k, ', ' order by k), 'none')
                 from jsonb_object_keys(p_schema -> 'properties') as k)
            ));
        end if;
        v_type := v_rule ->> 'type';
        if not (
            jsonb_typeof(v_value) = v_type
            or (v_type = 'integer' and jsonb_typeof(v_value) = 'number' and v_value::numeric % 1 = 0)
        ) then
            perform private.raise_error(400, format('parameters.%s must be of type %s', v_key, v_type));
        end if;
        if v_rule ? 'enum' and not (v_rule -> 'enum') @> jsonb_build_array(v_value) then
            perform private.raise_error(400, format('parameters.%s must be one of %s', v_key, v_rule -> 'enum'));
        end if;
        if v_rule ? 'minimum' and v_value::numeric < (v_rule ->> 'minimum')::numeric then
            perform private.raise_error(400, format('parameters.%s must be at least %s', v_key, v_rule ->> 'minimum'));
        end if;
        if v_rule ? 'maximum' and v_value::numeric > (v_rule ->> 'maximum')::numeric then
            perform private.raise_error(400, format('parameters.%s must be at most %s', v_key, v_rule ->> 'maximum'));
        end if;
    end loop;
end;
$$;

comment on function private.validate_parameters(jsonb, jsonb) is
'Checks parameters against a model''s parameter_schema (types, enums, bounds); raises PT400 naming the field.';

create function private.refund(p_generation_id uuid, p_reason text)
returns public.credit_ledger
language plpgsql
set search_path = ''
as $$
declare
    v_charge public.credit_ledger;
    v_refund public.credit_ledger;
begin
    -- lock the charge so two refunds of it queue up; the second finds the first's line
    select * into v_charge from public.credit_ledger
    where generation_id = p_generation_id and kind = 'charge'
    for update;
    if not found then
        return null;
    end if;
    select * into v_refund from public.credit_ledger where refund_of = v_charge.id;
    if found then
        return v_refund;
    end if;
    return private.move_credits(v_charge.user_id, 'refund', -v_charge.amount, p_generation_id, v_charge.id, p_reason);
end;
$$;

comment on function private.refund(uuid, text) is
'Returns a generation''s charge once; later calls return the same refund line.';

-- RPCs ----------------------------------------------------------------------------------

create function public.create_generation(
    p_model_id text,
    p_prompt text,
    p_idempotency_key text,
    p_project_id uuid default null,
    p_parameters jsonb default '{}'::jsonb,
    p_title text default null
)
returns public.generations
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_model public.models;
    v_generation public.generations;
begin
    if p_idempotency_key is null or char_length(p_idempotency_key) not between 1 and 255 then
        perform private.raise_error(400, 'idempotency_key must be 1 to 255 characters');
    end if;

    -- a replay returns the first answer and charges nothing
    select * into v_generation from public.generations
    where owner_id = v_uid and idempotency_key = p_idempotency_key;
    if found then
        return v_generation;
    end if;

    select * into v_model from public.models where id = p_model_id and enabled;
    if not found then
        perform private.raise_error(400, format('model %s is not available; GET /api/v1/models lists them', p_model_id));
    end if;
    if p_prompt is null or char_length(btrim(p_prompt)) not between 1 and 4000 then
        perform private.raise_error(400, 'prompt must be 1 to 4000 characters');
    end if;
    if p_project_id is not null then
        perform private.require_project_role(p_project_id, 'editor');
    end if;
    perform private.validate_parameters(v_model.parameter_schema, coalesce(p_parameters, '{}'::jsonb));

    insert into public.generations (owner_id, project_id, model_id, prompt, parameters, title, cost, idempotency_key)
    values (
        v_uid, p_project_id, v_model.id, btrim(p_prompt), coalesce(p_parameters, '{}'::jsonb),
        p_title, v_model.credit_cost, p_idempotency_key
    )
    on conflict (owner_id, idempotency_key) do nothing
    returning * into v_generation;

    if v_generation.id is null then
        -- a concurrent call with the same key won the insert: answer with its generation
        select * into v_generation from public.generations
        where owner_id = v_uid and idempotency_key = p_idempotency_key;
        return v_generation;
    end if;

    perform private.move_credits(v_uid, 'charge', v_model.credit_cost, v_generation.id, null, v_model.id);
    return v_generation;
end;
$$;

comment on function public.create_generation(text, text, text, uuid, jsonb, text) is
'Validates input and project write access, then stores the generation and its charge together; idempotent.';

grant execute on function public.create_generation(text, text, text, uuid, jsonb, text) to authenticated;

create function public.cancel_generation(p_generation_id uuid)
returns public.generations
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_uid uuid := private.require_active_user();
    v_generation public.generations;
begin
    perform private.require_generation_role(p_generation_id, 'editor');
    update public.generations
    set status = 'cancelled', updated_at = now(), completed_at = now()
    where id = p_generation_id and status in ('pending', 'queued')
    returning * into v_generation;
    if not found then
        perform private.raise_error(409, 'only a pending or queued generation can be cancelled');
    end if;
    perform private.refund(p_generation_id, 'cancelled');
    perform private.audit('generation.cancelled', v_uid, 'generation', p_generation_id::text, null, '{}'::jsonb);
    return v_generation;
end;
$$;

comment on function public.cancel_generation(uuid) is
'Editors cancel a generation that has not started; its credits are refunded once.';

grant execute on function public.cancel_generation(uuid) to authenticated;

create function public.refund_generation(p_generation_id uuid, p_reason text default 'failed')
returns public.credit_ledger
language plpgsql
security definer
set search_path = ''
as $$
begin
    if not exists (select 1 from public.generations where id = p_generation_id) then
        perform private.raise_error(404, 'generation not found');
    end if;
    return private.refund(p_generation_id, p_reason);
end;
$$;

comment on function public.refund_generation(uuid, text) is
'Service role: refunds a generation''s charge at most once (webhooks, poller, operators).';

grant execute on function public.refund_generation(uuid, text) to service_role;

create function public.record_generation_progress(
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
    -- finished generations stay finished: late or duplicate webhooks change nothing
    where id = p_generation_id and status not in ('completed', 'failed', 'cancelled')
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
'Service role: moves a generation forward; failure refunds once; a finished generation stays finished.';

grant execute on function public.record_generation_progress(
    uuid, public.generation_status, text, jsonb, text
) to service_role;
