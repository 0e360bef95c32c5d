-- Deleting many generations at once (a project with thousands of them) announces each one
-- from one statement-level trigger instead of a row trigger per generation.
--
-- The row trigger turned every deleted row into jsonb and called a helper for it: about
-- 0.4 ms a row on a busy machine, so deleting a project of 10,000 generations ran past the
-- statement timeout and could not be deleted at all. The notices are the same, one per
-- generation ({"scope": "generation", "id": ...}) at commit; only how they are sent changes.
-- Moves (owner or project changed) keep the row trigger: they come one at a time.

-- functions -----------------------------------------------------------------------------

-- definer, as every trigger on an exposed table: a delete the caller may make never fails
-- on a helper the caller cannot run
create function private.announce_deleted_generations()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.notify_invalidation('generation', deleted.id::text)
    from deleted_generations as deleted;
    return null;
end;
$$;

comment on function private.announce_deleted_generations() is
'Statement trigger: announces every deleted generation (scope generation), in one pass.';

revoke all on function private.announce_deleted_generations() from public, anon, authenticated, service_role;

-- triggers ------------------------------------------------------------------------------

drop trigger generations_invalidate on public.generations;

-- owner or project of a generation
create trigger generations_invalidate
after update of owner_id, project_id on public.generations
for each row execute function private.announce_change('generation', 'id');

-- existence of a generation
create trigger generations_deleted_invalidate
after delete on public.generations
referencing old table as deleted_generations
for each statement execute function private.announce_deleted_generations();
