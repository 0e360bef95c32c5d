-- Work in flight that a deletion drops is cancelled at FAL too.
--
-- Deleting an account cancels and refunds its teammates' work in flight in its projects and
-- deletes its own (20261202100100): both left their FAL requests running for nobody, at our
-- cost. A generation holding a request that is deleted while in flight, or cancelled by that
-- deletion, now commits a job that asks FAL to cancel the request (velro.cancel_fal_request;
-- one FAL has started or finished is left to end on its own).

create function private.defer_fal_cancel(p_model_id text, p_fal_request_id text)
returns void
language sql
security definer
set search_path = ''
as $$
    select private.defer_job(
        'velro.cancel_fal_request',
        jsonb_build_object('model_id', p_model_id, 'request_id', p_fal_request_id)
    );
$$;

comment on function private.defer_fal_cancel(text, text) is
'Commits, with the caller''s change, a job asking FAL to cancel a request nobody waits for.';

revoke all on function private.defer_fal_cancel(text, text) from public, anon, authenticated, service_role;

create function private.cancel_dropped_work_at_fal()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.defer_fal_cancel(old.model_id, old.fal_request_id);
    return null;
end;
$$;

comment on function private.cancel_dropped_work_at_fal() is
'Trigger: a generation deleted while FAL holds its request has that request cancelled at FAL.';

revoke all on function private.cancel_dropped_work_at_fal() from public, anon, authenticated, service_role;

create trigger generations_cancel_dropped_work_at_fal
after delete on public.generations
for each row
when (old.fal_request_id is not null and old.status in ('pending', 'queued', 'processing'))
execute function private.cancel_dropped_work_at_fal();

create or replace function private.cancel_teammates_work_in_deleted_projects()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_generation record;
begin
    perform 1 from public.projects as p where p.owner_id = old.id order by p.id for update;
    for v_generation in
        update public.generations as g
        set status = 'cancelled', updated_at = now(), completed_at = now()
        from public.projects as p
        where
            g.project_id = p.id
            and p.owner_id = old.id
            and g.owner_id <> old.id
            and g.status in ('pending', 'queued', 'processing')
            and g.cost > 0
        returning g.id, g.model_id, g.fal_request_id
    loop
        perform private.refund(v_generation.id, 'cancelled');
        perform private.audit('generation.cancelled', null, 'generation', v_generation.id::text, null,
            jsonb_build_object('reason', 'project_owner_deleted'));
        if v_generation.fal_request_id is not null then
            perform private.defer_fal_cancel(v_generation.model_id, v_generation.fal_request_id);
        end if;
    end loop;
    return old;
end;
$$;
