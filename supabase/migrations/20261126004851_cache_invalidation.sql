-- Cache invalidation: every change that can alter a cached authorization answer sends a
-- NOTIFY on channel `velro_invalidate` naming what it touched. NOTIFY is transactional, so
-- app instances hear of a change exactly when it commits, never before and never for a
-- rolled-back one. Payload: {"scope": "user"|"project"|"generation"|"team"|"session"|"models",
-- "id": "<uuid or text>"}.

-- functions -----------------------------------------------------------------------------

create function private.notify_invalidation(p_scope text, p_id text)
returns void
language sql
set search_path = ''
as $$
    select pg_catalog.pg_notify(
        'velro_invalidate', pg_catalog.json_build_object('scope', p_scope, 'id', p_id)::text
    )
$$;

comment on function private.notify_invalidation(text, text) is
'Tells every app instance, at commit, to evict cached answers that depend on (scope, id).';

-- One trigger function for every table: its arguments come in pairs, a scope and the
-- column holding that scope's id, e.g. ('user', 'user_id', 'team', 'team_id'). Both the old
-- and the new row are announced, so a row that moves is evicted on both sides; Postgres
-- folds identical notices within a transaction into one.
create function private.announce_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_row jsonb;
    v_pair integer;
begin
    foreach v_row in array array[to_jsonb(old), to_jsonb(new)] loop
        continue when v_row is null;
        for v_pair in 0 .. tg_nargs / 2 - 1 loop
            perform private.notify_invalidation(tg_argv[v_pair * 2], v_row ->> tg_argv[v_pair * 2 + 1]);
        end loop;
    end loop;
    return null;
end;
$$;

comment on function private.announce_change() is
'Trigger: announces (scope, id) pairs named by its arguments for the old and new row.';

create function private.announce_catalog_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.notify_invalidation('models', 'catalog');
    return null;
end;
$$;

comment on function private.announce_catalog_change() is 'Trigger: the model catalog changed.';

-- triggers ------------------------------------------------------------------------------

-- membership or role: the user's answers and the team's
create trigger team_members_invalidate
after insert or update or delete on public.team_members
for each row execute function private.announce_change('user', 'user_id', 'team', 'team_id');

-- a project-team link: the project's answers
create trigger project_teams_invalidate
after insert or update or delete on public.project_teams
for each row execute function private.announce_change('project', 'project_id', 'team', 'team_id');

-- visibility, ownership or existence of a project
create trigger projects_invalidate
after update of owner_id, visibility or delete on public.projects
for each row execute function private.announce_change('project', 'id');

-- owner, project or existence of a generation
create trigger generations_invalidate
after update of owner_id, project_id or delete on public.generations
for each row execute function private.announce_change('generation', 'id');

-- a share: that generation's answers
create trigger generation_shares_invalidate
after insert or update or delete on public.generation_shares
for each row execute function private.announce_change('generation', 'generation_id');

-- suspended, reactivated or deleted users
create trigger profiles_invalidate
after update of status or delete on public.profiles
for each row execute function private.announce_change('user', 'id');

create trigger models_invalidate
after insert or update or delete on public.models
for each statement execute function private.announce_catalog_change();

-- auth.sessions belongs to Supabase Auth; where this role may not add triggers to it, the
-- app announces the logouts it performs itself and session checks rely on their short TTL
do $$
begin
    create trigger sessions_invalidate
    after delete on auth.sessions
    for each row execute function private.announce_change('session', 'id');
exception when insufficient_privilege then
    raise notice 'no trigger on auth.sessions: session invalidation is announced by the app';
end
$$;
