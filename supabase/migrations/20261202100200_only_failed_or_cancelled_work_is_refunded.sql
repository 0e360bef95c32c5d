-- Only failed or cancelled work is refunded, the integrity audit's own rule. The service
-- role's refund_generation checked only that the generation existed, so a refund of a
-- completed (or still running) generation paid it back while it kept its status, and the
-- audit then reported it. Nothing in the app calls it with such a generation; an operator
-- or a later caller could. The generation's row is locked, so a status change waits.

create or replace function public.refund_generation(p_generation_id uuid, p_reason text default 'failed')
returns public.credit_ledger
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_status public.generation_status;
begin
    select g.status into v_status from public.generations as g where g.id = p_generation_id for update;
    if not found then
        perform private.raise_error(404, 'generation not found');
    end if;
    if v_status not in ('failed', 'cancelled') then
        perform private.raise_error(409, format(
            'this generation is %s: only failed or cancelled generations are refunded', v_status
        ));
    end if;
    return private.refund(p_generation_id, p_reason);
end;
$$;
