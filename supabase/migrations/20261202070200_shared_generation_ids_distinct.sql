-- A generation shared with two of the caller's teams is one shared generation.
--
-- private.shared_generation_ids_for_caller() returned a generation once per team it was
-- shared with. The policies only test membership in it, but the default list reads it as
-- a source that yields at most one page before the merge folds duplicates: a generation
-- shared with both of a member's teams took two places of that page, so a page came back
-- short (with no next cursor) or older rows filled it and the cursor passed shared ones
-- for good. Each id now comes once, as the projects helper's already do.

create or replace function private.shared_generation_ids_for_caller(p_min_role public.team_role default 'viewer')
returns setof uuid
language plpgsql
stable
security definer
set search_path = ''
rows 100
as $$
begin
    return query
    select distinct gs.generation_id
    from public.team_members as tm
    inner join public.generation_shares as gs on tm.team_id = gs.team_id
    where tm.user_id = (select auth.uid()) and least(tm.role, gs.role) >= p_min_role;
end;
$$;
