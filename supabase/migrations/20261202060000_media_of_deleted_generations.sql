-- A deleted generation's stored outputs are deleted too.
--
-- Deleting a generation (itself, with its project, or with its owner's account) removed its
-- generation_media rows by cascade, but the objects stayed in storage for good, and a
-- Supabase Storage URL signed before the delete kept serving them until it expired. Now the
-- delete queues the generation's id here, in its own transaction, and the worker's
-- velro.delete_media job deletes every object under that id, then the id. A generation's id
-- is never used again, and a copy still running when the generation goes finds it gone when
-- it records its rows and deletes what it stored itself; a copy that failed halfway
-- (objects stored, no rows) is cleaned with the rest.

create table private.media_of_deleted_generations (
    generation_id uuid primary key,
    deleted_at timestamptz not null default now()
);

comment on table private.media_of_deleted_generations is
'Generations deleted since their stored objects were last cleaned; the worker empties it.';

revoke all on private.media_of_deleted_generations from public, anon, authenticated, service_role;

-- definer, as every trigger on an exposed table: a delete the caller may make never fails
-- on a table the caller cannot write
create function private.queue_media_of_deleted_generations()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    insert into private.media_of_deleted_generations (generation_id)
    select deleted.id from deleted_generations as deleted
    on conflict (generation_id) do nothing;
    return null;
end;
$$;

comment on function private.queue_media_of_deleted_generations() is
'Statement trigger: queues every deleted generation for the deletion of its stored objects.';

revoke all on function private.queue_media_of_deleted_generations()
from public, anon, authenticated, service_role;

create trigger generations_deleted_queue_media
after delete on public.generations
referencing old table as deleted_generations
for each statement execute function private.queue_media_of_deleted_generations();
