-- An account's deletion cancels and refunds its teammates' charged work in flight in its
-- projects before the projects (and that work) are deleted (20261202070000). A teammate's
-- generation that committed after the cancelling statement read the table but before the
-- projects' cascade reached it was not cancelled, and the cascade refused to delete it
-- still charged: the account's deletion failed. The deletion now first locks the account's
-- projects. A generation being added to one holds that project's key share lock, so the
-- deletion waits for it to commit and then cancels it with the rest; one that starts after
-- waits for the deletion and then finds its project gone.

create or replace function private.cancel_teammates_work_in_deleted_projects()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_generation_id uuid;
begin
    perform 1 from public.projects as p where p.owner_id = old.id order by p.id for update;
    for v_generation_id in
        update public.generations as g
        set status = 'cancelled', updated_at = now(), completed_at = now()
        from public.projects as p
        where
            g.project_id = p.id
            and p.owner_id = old.id
            and g.owner_id <> old.id
            and g.status in ('pending', 'queued', 'processing')
            and g.cost > 0
        returning g.id
    loop
        perform private.refund(v_generation_id, 'cancelled');
        perform private.audit('generation.cancelled', null, 'generation', v_generation_id::text, null,
            jsonb_build_object('reason', 'project_owner_deleted'));
    end loop;
    return old;
end;
$$;
