-- Media that outlives FAL's URLs: what a generation made, copied into our own storage.
--
-- The worker copies each output from the provider's (expiring) URL into storage and records
-- it here with its content type, size and dimensions. Storage is Supabase Storage (bucket
-- `generation-media`, objects named `<generation id>/<position>.<ext>`) or, in the embedded
-- default, a local directory with the same names. Clients get signed, expiring URLs; who may
-- have one is decided by the generation's own read rule: the policies here ask
-- public.generations, through its RLS, instead of restating the access model.

-- tables --------------------------------------------------------------------------------

create table public.generation_media (
    generation_id uuid not null references public.generations (id) on delete cascade,
    position integer not null check (position >= 0),
    storage_path text not null check (char_length(storage_path) between 1 and 512),
    content_type text not null check (char_length(content_type) between 1 and 255),
    size_bytes bigint not null check (size_bytes >= 0),
    width integer check (width > 0),
    height integer check (height > 0),
    source_url text not null,
    created_at timestamptz not null default now(),
    primary key (generation_id, position)
);

comment on table public.generation_media is
'Outputs of a generation copied to our storage: where, what type, how large; readable by the generation''s readers.';

-- grants --------------------------------------------------------------------------------

revoke all on public.generation_media from public, anon, authenticated, service_role;
grant select on public.generation_media to authenticated;
grant select, insert, update, delete on public.generation_media to service_role;

-- RLS -----------------------------------------------------------------------------------

alter table public.generation_media enable row level security;

-- policies ------------------------------------------------------------------------------

-- the subquery runs under public.generations' own policies: one rule for a generation and
-- what it made, evaluated once per statement as a semi-join
create policy "readers of a generation can read its media"
on public.generation_media
for select
to authenticated
using (generation_id in (select g.id from public.generations as g));

-- functions -----------------------------------------------------------------------------

-- The worker records a copied output; a copy that runs again (a retried job) overwrites
-- its own row instead of adding a second.
create function public.record_generation_media(
    p_generation_id uuid,
    p_position integer,
    p_storage_path text,
    p_content_type text,
    p_size_bytes bigint,
    p_width integer,
    p_height integer,
    p_source_url text
)
returns public.generation_media
language sql
security definer
set search_path = ''
as $$
    insert into public.generation_media (
        generation_id, position, storage_path, content_type, size_bytes, width, height, source_url
    )
    values (
        p_generation_id, p_position, p_storage_path, p_content_type, p_size_bytes, p_width, p_height, p_source_url
    )
    on conflict (generation_id, position) do update
    set storage_path = excluded.storage_path,
        content_type = excluded.content_type,
        size_bytes = excluded.size_bytes,
        width = excluded.width,
        height = excluded.height,
        source_url = excluded.source_url,
        created_at = now()
    returning *;
$$;

comment on function public.record_generation_media(uuid, integer, text, text, bigint, integer, integer, text) is
'Service role (the media-copy job): records one stored output; a retried copy replaces its row.';

revoke all on function public.record_generation_media(
    uuid, integer, text, text, bigint, integer, integer, text
) from public, anon, authenticated;
grant execute on function public.record_generation_media(
    uuid, integer, text, text, bigint, integer, integer, text
) to service_role;

-- storage -------------------------------------------------------------------------------

-- Supabase Storage only: the embedded default and plain Postgres have no `storage` schema,
-- and there the app serves media from a local directory instead.
do $$
begin
    if not exists (select 1 from pg_catalog.pg_namespace where nspname = 'storage') then
        return;
    end if;
    insert into storage.buckets (id, name, public)
    values ('generation-media', 'generation-media', false)
    on conflict (id) do nothing;
    execute $policy$
        create policy "readers of a generation can read its media objects"
        on storage.objects
        for select
        to authenticated
        using (
            bucket_id = 'generation-media'
            -- compared as text: a name of another shape matches nothing instead of failing a cast
            and (storage.foldername(name))[1] in (select g.id::text from public.generations as g)
        )
    $policy$;
end;
$$;
