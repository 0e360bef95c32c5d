-- A token outlives its account: a deleted user's JWT stays valid until it expires, and
-- PostgREST never asks whether its session still exists. Such a caller is told that the
-- account does not exist (PT401, as a missing token is), not that it is suspended (PT403).

create or replace function private.require_active_user()
returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
    v_uid uuid := (select auth.uid());
    v_status public.profile_status;
begin
    if v_uid is null then
        perform private.raise_error(401, 'sign in first: this needs an authenticated user');
    end if;
    select status into v_status from public.profiles where id = v_uid;
    if not found then
        perform private.raise_error(401, 'this account does not exist: sign up or sign in again');
    end if;
    if v_status <> 'active' then
        perform private.raise_error(403, 'this account is suspended');
    end if;
    return v_uid;
end;
$$;

comment on function private.require_active_user() is
'The caller''s id; 401 when anonymous or the account is gone, 403 when suspended. First line of every RPC.';
