-- A count of images written as 2.0 is priced as 2.
--
-- The parameter check accepts any whole number (2.0 included, as JSON Schema's integer
-- does), but the price read the text '2.0' as an integer and failed with a bare 22P02: a
-- 400 that named no field. The price now reads the number as a number.

create or replace function private.generation_price(p_model public.models, p_parameters jsonb)
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
        v_images := coalesce(p_parameters ->> 'num_images', v_schema #>> '{num_images,default}', '1')::numeric::integer;
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
