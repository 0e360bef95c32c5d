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

create function private.on_membership_invalidate()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_row record := coalesce(new, old);
begin
    perform private.notify_invalidation('user', v_row.user_id::text);
    perform private.notify_invalidation('team', v_row.team_id::text);
    if tg_op = 'UPDATE' and new.user_id <> old.user_id then
        perform private.notify_invalidation('user', old.user_id::text);
    end if;
    return null;
end;
$$;

comment on function private.on_membership_invalidate() is
'Membership or role changed: the user''s and team''s answers change.';

create trigger team_members_invalidate
after insert or update or delete on public.team_members
for each row execute function private.on_membership_invalidate();

create function private.on_project_link_invalidate()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_row record := coalesce(new, old);
begin
    perform private.notify_invalidation('project', v_row.project_id::text);
    perform private.notify_invalidation('team', v_row.team_id::text);
    return null;
end;
$$;

comment on function private.on_project_link_invalidate() is
'A project-team link changed: the project''s answers change.';

create trigger project_teams_invalidate
after insert or update or delete on public.project_teams
for each row execute function private.on_project_link_invalidate();

create function private.on_project_invalidate()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.notify_invalidation('project', coalesce(new.id, old.id)::text);
    return null;
end;
$$;

comment on function private.on_project_invalidate() is 'Visibility, ownership or existence of a project changed.';

create trigger projects_invalidate
after update of owner_id, visibility or delete on public.projects
for each row execute function private.on_project_invalidate();

create function private.on_generation_invalidate()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.notify_invalidation('generation', coalesce(new.id, old.id)::text);
    return null;
end;
$$;

comment on function private.on_generation_invalidate() is 'Owner, project or existence of a generation changed.';

create trigger generations_invalidate
after update of owner_id, project_id or delete on public.generations
for each row execute function private.on_generation_invalidate();

create function private.on_share_invalidate()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.notify_invalidation('generation', coalesce(new.generation_id, old.generation_id)::text);
    return null;
end;
$$;

comment on function private.on_share_invalidate() is 'A generation share changed: that generation''s answers change.';

create trigger generation_shares_invalidate
after insert or update or delete on public.generation_shares
for each row execute function private.on_share_invalidate();

create function private.on_profile_status_invalidate()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.notify_invalidation('user', coalesce(new.id, old.id)::text);
    return null;
end;
$$;

comment on function private.on_profile_status_invalidate() is 'A user was suspended, reactivated or deleted.';

create trigger profiles_invalidate
after update of status or delete on public.profiles
for each row execute function private.on_profile_status_invalidate();

create function private.on_models_invalidate()
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

comment on function private.on_models_invalidate() is 'The model catalog changed.';

create trigger models_invalidate
after insert or update or delete on public.models
for each statement execute function private.on_models_invalidate();

create function private.on_session_invalidate()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.notify_invalidation('session', old.id::text);
    return null;
end;
$$;

comment on function private.on_session_invalidate() is
'A session ended (logout, refresh-token replay): its tokens stop working.';

-- auth.sessions belongs to Supabase Auth; where this role may not add triggers to it, the
-- app announces the logouts it performs itself and session checks rely on their short TTL
do $$
begin
    create trigger sessions_invalidate
    after delete on auth.sessions
    for each row execute function private.on_session_invalidate();
exception when insufficient_privilege then
    raise notice 'no trigger on auth.sessions: session invalidation is announced by the app';
end
$$;
