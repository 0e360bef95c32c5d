-- The same count as the service role, with the rule of "readers can read generations"
-- written out over the source tables for user $1 (public projects found by their
-- visibility, not by the generations' copy of it).
select count(*)
from public.generations as g
where
    exists (select 1 from public.profiles as me where me.id = $1 and me.status = 'active')
    and (
        g.owner_id = $1
        or g.project_id in (
            select p.id from public.projects as p
            where p.owner_id = $1 or p.visibility = 'public'
            union all
            select pt.project_id
            from public.team_members as tm
            inner join public.project_teams as pt on tm.team_id = pt.team_id
            inner join public.projects as p on pt.project_id = p.id and p.visibility <> 'private'
            where tm.user_id = $1
        )
        or g.id in (
            select gs.generation_id
            from public.team_members as tm
            inner join public.generation_shares as gs on tm.team_id = gs.team_id
            where tm.user_id = $1
        )
    )
