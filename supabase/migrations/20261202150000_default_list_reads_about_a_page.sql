-- The default list reads about a page of index entries, however large its sources grow.
--
-- The list route's statement read each source of a user's default list (her own work, each
-- project she reaches, each generation shared with her teams) newest first, up to a page
-- from each, through RLS, and merged them. Its cost grew with the table: at 1,000,000
-- generations a median user's 57 projects yielded ~1,900 index entries for a page of 51,
-- each tested against the read policy, and her 75 shares were 75 probes of generations.
--
-- private.feed_keys() now chooses the keys of a page in two passes:
--   1. the newest row of each project she reaches (one probe each), a page of her own work,
--      and a page of her teams' shares, read newest first from the shares' own index;
--   2. the page-th newest distinct key among those is a floor: every one of them is on her
--      list, so her page holds nothing older. Only the projects whose newest row reaches the
--      floor are read again, down to the floor and at most a page each.
-- The route then selects those rows through RLS: the read policy still decides every row
-- returned, the function only chooses which to ask for. It runs as definer so that its
-- scans are index-only and not tested against the policy row by row; it reads the caller's
-- own sources only, and answers nothing to a suspended or anonymous caller, nor for a page
-- size outside 1..101 (the API's largest page and the row that says there is a next one).
--
-- A share's generation_created_at is its generation's created_at, copied by a trigger on
-- every insert and update of the share (a write that sets the copy is overridden), so that
-- a team's shares can be read newest first. created_at is fixed once a generation exists,
-- so the copy cannot go stale. The backfill below announces every shared generation's
-- change to the caches (their trigger), once, at deploy.
--
-- The own-work and per-project indexes carry status and model_id, so that the list's
-- filters keep those scans index-only too.

-- generations: created_at is the list's key and is copied onto shares ----------------------

create function private.refuse_created_at_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    perform private.raise_error(409, 'a generation''s created_at is fixed when it is created');
    return new;
end;
$$;

comment on function private.refuse_created_at_change() is
'Trigger: generations.created_at never changes (lists page by it, shares keep a copy of it).';

revoke all on function private.refuse_created_at_change()
from public, anon, authenticated, service_role;

create trigger generations_created_at_fixed
before update of created_at on public.generations
for each row when (old.created_at is distinct from new.created_at)
execute function private.refuse_created_at_change();

drop index public.generations_owner_id_idx;
create index generations_owner_id_idx on public.generations (owner_id, created_at desc, id desc)
include (project_id, project_is_public, status, model_id);
drop index public.generations_project_id_idx;
create index generations_project_id_idx on public.generations (project_id, created_at desc, id desc)
include (owner_id, project_is_public, status, model_id);

-- shares: newest first per team -------------------------------------------------------------

alter table public.generation_shares add column generation_created_at timestamptz;

update public.generation_shares as gs
set generation_created_at = g.created_at
from public.generations as g
where g.id = gs.generation_id;

alter table public.generation_shares alter column generation_created_at set not null;

comment on column public.generation_shares.generation_created_at is
'Copy of the shared generation''s created_at (fixed at creation), set by a trigger: a team''s '
'shares are read newest first.';

create function private.copy_generation_created_at()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
    new.generation_created_at := (
        select g.created_at from public.generations as g where g.id = new.generation_id
    );
    return new;
end;
$$;

comment on function private.copy_generation_created_at() is
'Trigger: a share carries its generation''s created_at.';

revoke all on function private.copy_generation_created_at()
from public, anon, authenticated, service_role;

-- on every insert and update, whatever columns it names: no write can set the copy itself
create trigger generation_shares_copy_created_at
before insert or update on public.generation_shares
for each row execute function private.copy_generation_created_at();

-- the policies' lookup by team (team_id = ..., giving generation_id and role) is served
-- by the same index
drop index public.generation_shares_team_id_idx;
create index generation_shares_team_id_idx on public.generation_shares
(team_id, generation_created_at desc, generation_id desc) include (role);

-- the keys of a page of the default list ----------------------------------------------------

create function private.feed_keys(
    p_limit integer,
    p_before_created_at timestamptz default null,
    p_before_id uuid default null,
    p_project_id uuid default null,
    p_status public.generation_status default null,
    p_model_id text default null
)
returns table (created_at timestamptz, id uuid)
language plpgsql
stable
security definer
set search_path = ''
rows 100
as $$
declare
    v_user uuid := (select auth.uid());
    -- the first page is "before the end of time": the same index condition for every page
    v_at timestamptz := coalesce(p_before_created_at, 'infinity');
    v_id uuid := coalesce(p_before_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff');
    v_filtered boolean := p_project_id is not null or p_status is not null or p_model_id is not null;
begin
    -- a page is at most 100 rows and the one that tells whether there is a next page
    if v_user is null or p_limit is null or p_limit not between 1 and 101
        or not (select private.is_active_user()) then
        return;
    end if;
    return query
    with reached as materialized (
        select project.project_id
        from private.project_ids_for_caller() as project (project_id)
        where p_project_id is null or project.project_id = p_project_id
    ),
    head as materialized (  -- each project's newest row on the list
        select reached.project_id, newest.created_at, newest.id
        from reached
        cross join lateral (
            select g.created_at, g.id
            from public.generations as g
            where g.project_id = reached.project_id and (g.created_at, g.id) < (v_at, v_id)
            and (p_status is null or g.status = p_status)
            and (p_model_id is null or g.model_id = p_model_id)
            order by g.created_at desc, g.id desc
            limit 1
        ) as newest
    ),
    own as materialized (
        select g.created_at, g.id
        from public.generations as g
        where g.owner_id = v_user and (g.created_at, g.id) < (v_at, v_id)
        and (p_project_id is null or g.project_id = p_project_id)
        and (p_status is null or g.status = p_status)
        and (p_model_id is null or g.model_id = p_model_id)
        order by g.created_at desc, g.id desc
        limit p_limit
    ),
    -- her teams read here, not through private.team_ids_for_caller(): a function call per
    -- page would cost more than the one index probe it wraps
    shared as materialized (  -- distinct: a generation may be shared with two of her teams
        select distinct team_page.created_at, team_page.id
        from public.team_members as tm
        cross join lateral (
            select gs.generation_created_at as created_at, gs.generation_id as id
            from public.generation_shares as gs
            where gs.team_id = tm.team_id
            and (gs.generation_created_at, gs.generation_id) < (v_at, v_id)
            and (not v_filtered or exists (
                select 1 from public.generations as g
                where g.id = gs.generation_id
                and (p_project_id is null or g.project_id = p_project_id)
                and (p_status is null or g.status = p_status)
                and (p_model_id is null or g.model_id = p_model_id)
            ))
            order by gs.generation_created_at desc, gs.generation_id desc
            limit p_limit
        ) as team_page
        where tm.user_id = v_user
        order by team_page.created_at desc, team_page.id desc
        limit p_limit
    ),
    floor as materialized (  -- the page-th newest distinct key known; the start of time if fewer
        select coalesce(known.created_at, '-infinity') as created_at,
            coalesce(known.id, '00000000-0000-0000-0000-000000000000') as id
        from (select) as one
        left join lateral (
            select k.created_at, k.id from own as k
            union select k.created_at, k.id from head as k
            union select k.created_at, k.id from shared as k
            order by 1 desc, 2 desc
            offset p_limit - 1
            limit 1
        ) as known on true
    ),
    project_rows as (
        select r.created_at, r.id
        from head
        cross join floor
        cross join lateral (
            select g.created_at, g.id
            from public.generations as g
            where g.project_id = head.project_id
            and (g.created_at, g.id) <= (head.created_at, head.id)
            and (g.created_at, g.id) >= (floor.created_at, floor.id)
            and (p_status is null or g.status = p_status)
            and (p_model_id is null or g.model_id = p_model_id)
            order by g.created_at desc, g.id desc
            limit p_limit
        ) as r
        where (head.created_at, head.id) >= (floor.created_at, floor.id)
    )
    select page.created_at, page.id
    from (
        select k.created_at, k.id from own as k
        union select k.created_at, k.id from shared as k
        union select k.created_at, k.id from project_rows as k
    ) as page
    order by page.created_at desc, page.id desc
    limit p_limit;
end;
$$;

comment on function private.feed_keys(integer, timestamptz, uuid, uuid, public.generation_status, text) is
'Keys (created_at, id) of a page of the caller''s default list, newest first, before the given '
'key and filtered: own work, reached projects'' work, work shared with her teams. The list selects '
'them through RLS.';

revoke all on function private.feed_keys(integer, timestamptz, uuid, uuid, public.generation_status, text)
from public, anon, authenticated, service_role;
grant execute on function private.feed_keys(integer, timestamptz, uuid, uuid, public.generation_status, text)
to authenticated;
