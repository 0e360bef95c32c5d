-- The same page as the service role (no RLS), with the rule of the policy
-- "readers can read generations" written out over the source tables: active user; own
-- generations; projects owned, public, or linked to one of the user's teams (unless
-- private); generations shared with one of the user's teams.
select
    g.id,
    g.owner_id,
    g.project_id,
    g.model_id,
    g.title,
    g.status,
    g.created_at
from public.generations as g
where
    exists (
        select 1 from public.profiles as me
        where me.id = $1 and me.status = 'active'
    )
    and (
        g.owner_id = $1
        or g.project_id = any(array(
            select p.id from public.projects as p
            where p.owner_id = $1 or p.visibility = 'public'
            union all
            select pt.project_id
            from public.project_teams as pt
            inner join public.team_members as tm on pt.team_id = tm.team_id
            inner join public.projects as p on pt.project_id = p.id
            where tm.user_id = $1 and p.visibility <> 'private'
        ))
        or g.id = any(array(
            select gs.generation_id
            from public.generation_shares as gs
            inner join public.team_members as tm on gs.team_id = tm.team_id
            where tm.user_id = $1
        ))
    )
order by g.created_at desc, g.id desc
limit 50
