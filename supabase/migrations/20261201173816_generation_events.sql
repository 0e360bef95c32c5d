-- Live status: every change of a generation's status is announced on one channel.
--
-- Each web process holds one LISTEN connection on `generation_status` and fans the
-- notices out to its Server-Sent Events streams and `Prefer: wait` requests, so no client
-- polls. A notice says only which generation moved and to what; whoever receives it reads
-- the generation again as its caller, through RLS, before showing anything. NOTIFY is
-- delivered at commit, so a rolled-back change is never announced.

-- functions -----------------------------------------------------------------------------

-- definer, as every trigger on an exposed table: a write the caller may make never fails
-- on a helper the caller cannot run
create function private.announce_generation_status()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform pg_notify(
        'generation_status',
        json_build_object('id', new.id, 'status', new.status, 'updated_at', new.updated_at)::text
    );
    return null;
end;
$$;

comment on function private.announce_generation_status() is
'Announces a generation''s new status on channel generation_status (id, status, updated_at), for live streams.';

revoke all on function private.announce_generation_status() from public, anon, authenticated, service_role;

-- triggers ------------------------------------------------------------------------------

create trigger generations_announce_status
after update of status on public.generations
for each row
when (old.status is distinct from new.status)
execute function private.announce_generation_status();
