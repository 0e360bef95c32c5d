-- Two ways one user could stop another's legitimate action, closed.
--
-- 1. Invitations are bounded. Removing, demoting or losing an admin revokes the pending
--    invitations they sent, one audited row each, inside the owner's statement; nothing
--    bounded how many an admin could send, so an admin with 150,000 pending invitations
--    could no longer be removed or demoted (the statement timed out). Now a team holds at
--    most max_pending_invitations (500) live pending invitations (a trigger, under the
--    team lock every invitation RPC takes); expired ones are not revoked again (see
--    20261202050000).
-- 2. Deleting an account deletes its projects, and with them its teammates' generations in
--    those projects. A charged generation in flight refuses to be deleted (cancel it
--    first), so a teammate's pending generation made the owner's account undeletable. Now
--    the account's deletion cancels its teammates' charged work in flight in its projects
--    first and refunds it, as a cancel would.

insert into private.settings (key, value) values ('max_pending_invitations', '500'::jsonb);

-- invitations -----------------------------------------------------------------------------

-- definer, as every trigger on an exposed table
create function private.refuse_too_many_pending_invitations()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_limit integer := (private.setting('max_pending_invitations') #>> '{}')::integer;
begin
    if (
        select count(*) from public.invitations
        where team_id = new.team_id and accepted_at is null and revoked_at is null and expires_at > now()
    ) >= v_limit then
        perform private.raise_error(409, format(
            'this team has %s pending invitations, the most it may hold: revoke some, or wait until they expire',
            v_limit
        ));
    end if;
    return new;
end;
$$;

comment on function private.refuse_too_many_pending_invitations() is
'Trigger: a team holds at most max_pending_invitations live pending invitations.';

revoke all on function private.refuse_too_many_pending_invitations()
from public, anon, authenticated, service_role;

create trigger invitations_bounded_per_team
before insert on public.invitations
for each row execute function private.refuse_too_many_pending_invitations();

-- account deletion ------------------------------------------------------------------------

-- definer, as every trigger on an exposed table
create function private.cancel_teammates_work_in_deleted_projects()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_generation_id uuid;
begin
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

comment on function private.cancel_teammates_work_in_deleted_projects() is
'Trigger: an account''s deletion first cancels and refunds teammates'' charged work in flight in its projects.';

revoke all on function private.cancel_teammates_work_in_deleted_projects()
from public, anon, authenticated, service_role;

create trigger profiles_cancel_teammates_work_before_delete
before delete on public.profiles
for each row execute function private.cancel_teammates_work_in_deleted_projects();
