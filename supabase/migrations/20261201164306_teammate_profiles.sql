-- Teammates see names, not money.
--
-- Row-level security decides rows, not columns, so a policy that lets members read their
-- teammates' profiles hands out every column: credits, plan and status included. Profiles
-- are therefore readable only by their own user, and the members of a team learn each
-- other's id, display name and email through public.list_team_members, which returns
-- nothing else of a profile. The same holds for a client that talks to PostgREST directly.

-- indexes -------------------------------------------------------------------------------

-- the member list pages by (role, joined, user), highest role first
create index team_members_team_id_role_idx
on public.team_members (team_id, role desc, created_at desc, user_id desc);

-- policies ------------------------------------------------------------------------------

drop policy "members can read their teammates' profiles" on public.profiles;

-- RPCs ----------------------------------------------------------------------------------

create function public.list_team_members(
    p_team_id uuid,
    p_limit integer default 50,
    p_after_role public.team_role default null,
    p_after_joined_at timestamptz default null,
    p_after_user_id uuid default null
)
returns table (
    user_id uuid,
    role public.team_role,
    email text,
    display_name text,
    joined_at timestamptz
)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
    perform private.require_active_user();
    perform private.require_team_role(p_team_id, 'viewer');
    if p_limit is null or p_limit not between 1 and 1000 then
        perform private.raise_error(400, 'limit must be between 1 and 1000');
    end if;
    if num_nonnulls(p_after_role, p_after_joined_at, p_after_user_id) not in (0, 3) then
        perform private.raise_error(400, 'a cursor needs its role, joined_at and user_id together');
    end if;

    return query
    select m.user_id, m.role, p.email, p.display_name, m.created_at
    from public.team_members as m
    inner join public.profiles as p on m.user_id = p.id
    where
        m.team_id = p_team_id
        and (
            p_after_role is null
            or (m.role, m.created_at, m.user_id) < (p_after_role, p_after_joined_at, p_after_user_id)
        )
    order by m.role desc, m.created_at desc, m.user_id desc
    limit p_limit;
end;
$$;

comment on function public.list_team_members(uuid, integer, public.team_role, timestamptz, uuid) is
'A page of a team''s members: id, role, email, display name, never credits, plan or status; 404 for non-members.';

-- hosted Supabase grants new functions to every API role by default: only members call it
revoke execute on function public.list_team_members(uuid, integer, public.team_role, timestamptz, uuid)
from public, anon, service_role;
grant execute on function public.list_team_members(uuid, integer, public.team_role, timestamptz, uuid)
to authenticated;
