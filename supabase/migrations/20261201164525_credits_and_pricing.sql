-- Credits that are never lost and prices that follow the work.
--
-- - A generation's price follows what the model produces (models.price_unit):
--       generation: credit_cost
--       image:      credit_cost * num_images  (the parameter, else its schema default, else 1)
--       second:     credit_cost * seconds of video (the duration parameter, else its default)
--   private.generation_price is the one place that computes it.
-- - String parameters are bounded (their schema's maxLength, else 1000 characters), as the
--   prompt (4000) and title (200) already are, so no client (PostgREST included) stores a
--   20 MB negative prompt.
-- - An Idempotency-Key is optional; with one, a replay must carry the same request: the
--   request's fingerprint is stored with the key and a different body is a 409.
-- - A charged generation that is pending, queued or processing cannot be deleted, directly
--   or with its project: it is cancelled (and refunded) first, or it finishes. Only the
--   deletion of its owner's account takes it along.
-- - Ledger ids are random uuids: a global counter told every user how many credit
--   movements happened between two of theirs. Pages order by (created_at, id).

-- types ---------------------------------------------------------------------------------

create type public.price_unit as enum ('generation', 'image', 'second');
comment on type public.price_unit is
'What a model''s credit_cost is per: one generation, each output image (num_images), each second of video (duration).';

-- models: the unit of their price -------------------------------------------------------

alter table public.models
add column price_unit public.price_unit not null default 'generation';

comment on column public.models.credit_cost is
'Credits per price_unit: a flat price, or times num_images (image), or times the duration in seconds (second).';
comment on column public.models.price_unit is
'generation: a flat price; image: per output image (num_images); second: per second of video (duration).';

update public.models set
    price_unit = 'image',
    parameter_schema = jsonb_set(
        parameter_schema, '{properties,num_images}',
        parameter_schema #> '{properties,num_images}' || '{"default": 1}'::jsonb
    )
where id in ('fal-ai/flux-pro/v1.1-ultra', 'fal-ai/flux-pro/kontext/max', 'fal-ai/imagen4/preview/ultra');

-- Veo 3: 63 credits a second (8 s = 504, the nearest to the former flat 500)
update public.models set
    price_unit = 'second',
    credit_cost = 63,
    parameter_schema = jsonb_set(
        parameter_schema, '{properties,duration}',
        '{"type": "string", "enum": ["4s", "6s", "8s"], "default": "8s"}'::jsonb
    )
where id = 'fal-ai/veo3';

-- Kling 2.1 Master: 70 credits a second (5 s = 350, the former flat price)
update public.models set
    price_unit = 'second',
    credit_cost = 70,
    parameter_schema = jsonb_set(
        parameter_schema, '{properties,duration}',
        '{"type": "string", "enum": ["5", "10"], "default": "5"}'::jsonb
    )
where id = 'fal-ai/kling-video/v2.1/master/text-to-video';

-- every free-text parameter states its bound, so clients can read it from the catalog
update public.models set
    parameter_schema = jsonb_set(
        parameter_schema, '{properties,negative_prompt,maxLength}', '1000'::jsonb
    )
where parameter_schema #> '{properties,negative_prompt}' is not null;

update public.models set
    parameter_schema = jsonb_set(
        parameter_schema, '{properties,image_url,maxLength}', '2048'::jsonb
    )
where parameter_schema #> '{properties,image_url}' is not null;

-- generations: request fingerprint, optional key, bounded parameters ----------------------

alter table public.generations
add column request_hash text check (request_hash ~ '^[0-9a-f]{64}$'),
alter column idempotency_key drop not null,
add constraint generations_parameters_size check (octet_length(parameters::text) <= 16384);

comment on column public.generations.request_hash is
'sha256 of the creating request (model, prompt, project, parameters, title); a replay of its key must match.';
comment on column public.generations.idempotency_key is
'The client''s Idempotency-Key, unique per owner; null when the request had none.';

-- credit ledger: uuid ids -----------------------------------------------------------------

drop index public.credit_ledger_user_id_idx;

alter table public.credit_ledger
add column new_id uuid not null default gen_random_uuid(),
add column new_refund_of uuid;

update public.credit_ledger as refund
set new_refund_of = charge.new_id
from public.credit_ledger as charge
where refund.refund_of = charge.id;

-- dropping the old columns drops their key, foreign key, check and unique index with them
alter table public.credit_ledger drop column refund_of;
alter table public.credit_ledger drop column id;
alter table public.credit_ledger rename column new_id to id;
alter table public.credit_ledger rename column new_refund_of to refund_of;

alter table public.credit_ledger
add constraint credit_ledger_pkey primary key (id),
add constraint credit_ledger_refund_of_fkey foreign key (refund_of) references public.credit_ledger (id),
add constraint credit_ledger_refund_links_charge check ((kind = 'refund') = (refund_of is not null)),
-- movements of one transaction (a charge and its refund in one test, say) keep their order
alter column created_at set default clock_timestamp();

comment on column public.credit_ledger.id is
'Random: an id says nothing about how many movements other users made.';

-- a charge is refunded at most once (and the foreign key has its index)
create unique index credit_ledger_refund_of_key on public.credit_ledger (refund_of);
-- the caller's movements, newest first, for keyset pages
create index credit_ledger_user_id_idx on public.credit_ledger (user_id, created_at desc, id desc);

-- helpers -------------------------------------------------------------------------------

-- The subset of JSON Schema the catalog uses: an object of known keys, each with a type,
-- an optional enum, optional numeric bounds and, for strings, a maxLength (1000 when the
-- schema gives none). Errors name the field to fix.
create or replace function private.validate_parameters(p_schema jsonb, p_parameters jsonb)
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
    v_max_length integer;
begin
    if p_parameters is null or jsonb_typeof(p_parameters) <> 'object' then
        perform private.raise_error(400, 'parameters must be a JSON object');
    end if;
    for v_key, v_value in select key, value from jsonb_each(p_parameters) loop
        v_rule := p_schema -> 'properties' -> v_key;
        if v_rule is null then
            perform private.raise_error(400, format(
                'parameters.%s is not a parameter of this model; allowed: %s', left(v_key, 100),
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
        v_max_length := coalesce((v_rule ->> 'maxLength')::integer, 1000);
        if v_type = 'string' and char_length(v_value #>> '{}') > v_max_length then
            perform private.raise_error(400, format(
                'parameters.%s must be at most %s characters', v_key, v_max_length
            ));
        end if;
    end loop;
end;
$$;

comment on function private.validate_parameters(jsonb, jsonb) is
'Checks parameters against a model''s schema (types, enums, bounds, string lengths); PT400 names the field.';

-- The price of one generation, from the model's unit and the parameters that set the amount
-- of output; a parameter the request leaves out counts at its schema default.
create function private.generation_price(p_model public.models, p_parameters jsonb)
returns integer
language plpgsql
immutable
set search_path = ''
as $$
declare
    v_schema jsonb := p_model.parameter_schema -> 'properties';
    v_images integer;
    v_duration text;
    v_seconds integer;
begin
    if p_model.price_unit = 'image' then
        v_images := coalesce(p_parameters ->> 'num_images', v_schema #>> '{num_images,default}', '1')::integer;
        return p_model.credit_cost * v_images;
    end if;
    if p_model.price_unit = 'second' then
        v_duration := coalesce(p_parameters ->> 'duration', v_schema #>> '{duration,default}');
        v_seconds := (regexp_match(v_duration, '^([0-9]{1,4})s?$'))[1]::integer;
        if v_seconds is null or v_seconds < 1 then
            perform private.raise_error(400, 'parameters.duration must be a number of seconds, like "5" or "8s"');
        end if;
        return p_model.credit_cost * v_seconds;
    end if;
    return p_model.credit_cost;
end;
$$;

comment on function private.generation_price(public.models, jsonb) is
'Credits for one generation: credit_cost per generation, per image or per second; defaults from the schema.';

-- What a replay of an idempotency key must match: every input that shapes the generation.
create function private.request_fingerprint(
    p_model_id text, p_prompt text, p_project_id uuid, p_parameters jsonb, p_title text
)
returns text
language sql
immutable
set search_path = ''
as $$
    select encode(sha256(convert_to(jsonb_build_object(
        'model_id', p_model_id, 'prompt', p_prompt, 'project_id', p_project_id,
        'parameters', coalesce(p_parameters, '{}'::jsonb), 'title', p_title
    )::text, 'utf8')), 'hex')
$$;

comment on function private.request_fingerprint(text, text, uuid, jsonb, text) is
'sha256 of a create_generation request in canonical jsonb form; stored with the idempotency key.';

-- The only writer of balances. Same as before, with a uuid refund link.
drop function private.move_credits(uuid, public.credit_kind, integer, uuid, bigint, text);

create function private.move_credits(
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
    v_entry public.credit_ledger;
begin
    if p_amount is null or p_amount <= 0 then
        perform private.raise_error(400, 'credit amount must be a positive whole number');
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
'The only writer of balances: one guarded update (row lock, never below zero) plus its ledger line.';

-- triggers ------------------------------------------------------------------------------

-- Definer: the check must see the owner's profile whatever the deleter may read.
create function private.refuse_deleting_work_in_flight()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    if old.status in ('pending', 'queued', 'processing') and old.cost > 0
        and exists (select 1 from public.profiles where id = old.owner_id) then
        perform private.raise_error(409, format(
            'generation %s is %s and holds %s credits: cancel it (a refund follows) or wait until it ends, then delete',
            old.id, old.status, old.cost
        ));
    end if;
    return old;
end;
$$;

comment on function private.refuse_deleting_work_in_flight() is
'A charged generation in flight is not deleted, nor with its project; only its owner''s account takes it.';

create trigger generations_refuse_deleting_work_in_flight
before delete on public.generations
for each row execute function private.refuse_deleting_work_in_flight();

-- RPCs ----------------------------------------------------------------------------------

create function private.replayed_generation(p_generation public.generations, p_fingerprint text)
returns public.generations
language plpgsql
immutable
set search_path = ''
as $$
begin
    -- generations made before fingerprints existed have none: their replays are trusted
    if p_generation.request_hash is not null and p_generation.request_hash <> p_fingerprint then
        perform private.raise_error(409,
            'this Idempotency-Key was already used with a different request: send the same request to retry it, or use a new key');
    end if;
    return p_generation;
end;
$$;

comment on function private.replayed_generation(public.generations, text) is
'The first generation made with a key, if the replay is the same request; PT409 when the body differs.';

create or replace function public.create_generation(
    p_model_id text,
    p_prompt text,
    p_idempotency_key text default null,
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
    v_parameters jsonb := coalesce(p_parameters, '{}'::jsonb);
    v_fingerprint text := private.request_fingerprint(p_model_id, p_prompt, p_project_id, v_parameters, p_title);
    v_model public.models;
    v_price integer;
    v_generation public.generations;
begin
    if p_idempotency_key is not null and char_length(p_idempotency_key) not between 1 and 255 then
        perform private.raise_error(400, 'idempotency_key must be 1 to 255 characters');
    end if;

    -- a replay returns the first answer and charges nothing, if it is the same request
    if p_idempotency_key is not null then
        select * into v_generation from public.generations
        where owner_id = v_uid and idempotency_key = p_idempotency_key;
        if found then
            return private.replayed_generation(v_generation, v_fingerprint);
        end if;
    end if;

    select * into v_model from public.models where id = p_model_id and enabled;
    if not found then
        perform private.raise_error(400, format(
            'model %s is not available; GET /api/v1/models lists them', left(p_model_id, 200)
        ));
    end if;
    if p_prompt is null or char_length(btrim(p_prompt)) not between 1 and 4000 then
        perform private.raise_error(400, 'prompt must be 1 to 4000 characters');
    end if;
    if p_title is not null and char_length(p_title) > 200 then
        perform private.raise_error(400, 'title must be at most 200 characters');
    end if;
    if p_project_id is not null then
        perform private.require_project_role(p_project_id, 'editor');
    end if;
    perform private.validate_parameters(v_model.parameter_schema, v_parameters);
    v_price := private.generation_price(v_model, v_parameters);

    insert into public.generations (
        owner_id, project_id, model_id, prompt, parameters, title, cost, idempotency_key, request_hash
    )
    values (
        v_uid, p_project_id, v_model.id, btrim(p_prompt), v_parameters,
        p_title, v_price, p_idempotency_key, v_fingerprint
    )
    on conflict (owner_id, idempotency_key) do nothing
    returning * into v_generation;

    if v_generation.id is null then
        -- a concurrent call with the same key won the insert: answer with its generation
        select * into v_generation from public.generations
        where owner_id = v_uid and idempotency_key = p_idempotency_key;
        return private.replayed_generation(v_generation, v_fingerprint);
    end if;

    perform private.move_credits(v_uid, 'charge', v_price, v_generation.id, null, v_model.id);
    return v_generation;
end;
$$;

comment on function public.create_generation(text, text, text, uuid, jsonb, text) is
'Validates input and write access, prices the output, stores the generation with its charge; idempotent per key.';
