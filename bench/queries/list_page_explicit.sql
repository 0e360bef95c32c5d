-- The default list's first page as the service role (no RLS), in the list route's shape
-- (each source newest first, one page at most, merged) with the rule of the policy
-- "readers can read generations" written out over the source tables for user $1: active
-- user; own generations; projects owned, or linked to one of the user's teams unless
-- private; generations shared with one of the user's teams. 21 rows: a page of 20 (the API's
-- default) and the one that says whether there is a next page.
select
    id,
    owner_id,
    project_id,
    model_id,
    prompt,
    parameters,
    title,
    status,
    outputs,
    error,
    cost,
    created_at,
    updated_at,
    completed_at
from public.generations
where
    exists (select 1 from public.profiles as me where me.id = $1 and me.status = 'active')
    and id in (
        select newest.id
        from (
            (
                select
                    created_at,
                    id
                from public.generations
                where owner_id = $1
                order by created_at desc, id desc
                limit 21
            )
            union
            (
                select
                    project_page.created_at,
                    project_page.id
                from (
                    select p.id as project_id from public.projects as p where p.owner_id = $1
                    union
                    select pt.project_id
                    from public.team_members as tm
                    inner join public.project_teams as pt on tm.team_id = pt.team_id
                    inner join public.projects as p on pt.project_id = p.id and p.visibility <> 'private'
                    where tm.user_id = $1
                ) as source
                cross join lateral (
                    select
                        created_at,
                        id
                    from public.generations
                    where project_id = source.project_id
                    order by created_at desc, id desc
                    limit 21
                ) as project_page
            )
            union
            (
                select
                    created_at,
                    id
                from public.generations
                where
                    id in (
                        select gs.generation_id
                        from public.team_members as tm
                        inner join public.generation_shares as gs on tm.team_id = gs.team_id
                        where tm.user_id = $1
                    )
                order by created_at desc, id desc
                limit 21
            )
        ) as newest
        order by newest.created_at desc, newest.id desc
        limit 21
    )
order by created_at desc, id desc
