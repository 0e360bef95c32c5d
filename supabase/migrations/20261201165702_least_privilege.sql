-- Least privilege, as hosted Supabase would otherwise have it: Supabase's linter clean and
-- no grant that nobody meant.
--
-- Hosted Supabase grants every new table, sequence and function in `public` in full to
-- anon, authenticated and service_role. The foundation migration stopped that for anon and
-- authenticated only, so service_role was left holding truncate/references/trigger on
-- every table, update and delete on the append-only credit ledger, and every end-user RPC.
-- This migration revokes what was never meant and stops the default for service_role too:
-- from here on every object grants each role exactly what it needs, right after creating it.

-- default privileges ----------------------------------------------------------------------

alter default privileges in schema public revoke all on tables from service_role;
alter default privileges in schema public revoke all on sequences from service_role;
alter default privileges in schema public revoke all on functions from service_role;

-- tables ----------------------------------------------------------------------------------

-- no API role truncates, references or adds triggers: only `grant all` ever gave that
revoke truncate, references, trigger on all tables in schema public from anon, authenticated, service_role;
revoke all on all sequences in schema public from anon, authenticated, service_role;

-- the ledger is history: the service role adds lines (through the RPCs) and reads them
revoke update, delete on public.credit_ledger from service_role;

-- functions -------------------------------------------------------------------------------

-- An end-user RPC acts for auth.uid(); the service role has no user, so it has no use for
-- one. Revoked by rule from every function in `public` granted to authenticated, so that
-- the rule holds for every function created before this migration.
do $$
declare
    v_function regprocedure;
begin
    for v_function in
        select p.oid::regprocedure
        from pg_catalog.pg_proc as p
        inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
        where
            n.nspname = 'public'
            and pg_catalog.has_function_privilege('authenticated', p.oid, 'execute')
            and not exists (
                select from pg_catalog.pg_depend as d
                where d.objid = p.oid and d.deptype = 'e'
            )
    loop
        execute format('revoke execute on function %s from service_role', v_function);
    end loop;
end
$$;

-- raising an error is for our functions, which run as their owner; no API role calls it
revoke execute on function private.raise_error(integer, text, text) from authenticated, service_role;

-- a trigger that only stamps a time needs no one else's rights
alter function private.touch_updated_at() security invoker;

-- foreign key indexes -----------------------------------------------------------------------

-- every foreign key has a covering index: deleting a referenced row (a profile, a model)
-- must not scan the referencing table
create index if not exists generations_model_id_idx on public.generations (model_id);
create index if not exists generation_shares_shared_by_idx on public.generation_shares (shared_by);
create index if not exists project_teams_linked_by_idx on public.project_teams (linked_by);
create index if not exists invitations_invited_by_idx on public.invitations (invited_by);
create index if not exists invitations_accepted_by_idx on public.invitations (accepted_by);
