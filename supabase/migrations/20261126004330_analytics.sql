-- Analytics (the L3 cache): materialized views of usage, credits and model statistics.
--
-- Materialized views cannot have RLS, so they live in the unexposed schema `analytics` and
-- are read only through definer functions that check membership first. Authorization never
-- reads them: they lag by up to one refresh.

-- schemas -------------------------------------------------------------------------------

create schema analytics;
comment on schema analytics is 'Materialized aggregates; never exposed, read through checked functions.';
revoke all on schema analytics from public;

-- materialized views --------------------------------------------------------------------

create materialized view analytics.team_daily_usage as
select
    pt.team_id,
    (g.created_at at time zone 'utc')::date as day,
    count(*)::integer as generations,
    count(*) filter (where g.status = 'completed')::integer as completed,
    count(*) filter (where g.status = 'failed')::integer as failed,
    coalesce(sum(g.cost) filter (where g.status not in ('failed', 'cancelled')), 0)::bigint as credits_spent
from public.generations as g
inner join public.project_teams as pt on g.project_id = pt.project_id
group by pt.team_id, day;

create unique index team_daily_usage_key on analytics.team_daily_usage (team_id, day);

create materialized view analytics.project_daily_usage as
select
    g.project_id,
    (g.created_at at time zone 'utc')::date as day,
    count(*)::integer as generations,
    count(*) filter (where g.status = 'completed')::integer as completed,
    count(*) filter (where g.status = 'failed')::integer as failed,
    coalesce(sum(g.cost) filter (where g.status not in ('failed', 'cancelled')), 0)::bigint as credits_spent
from public.generations as g
where g.project_id is not null
group by g.project_id, day;

create unique index project_daily_usage_key on analytics.project_daily_usage (project_id, day);

create materialized view analytics.user_credits as
select
    user_id,
    coalesce(sum(amount) filter (where kind in ('grant', 'purchase')), 0)::bigint as credited,
    coalesce(-sum(amount) filter (where kind = 'charge'), 0)::bigint as charged,
    coalesce(sum(amount) filter (where kind = 'refund'), 0)::bigint as refunded,
    count(*) filter (where kind = 'charge')::integer as charges
from public.credit_ledger
group by user_id;

create unique index user_credits_key on analytics.user_credits (user_id);

create materialized view analytics.model_generation_stats as
select
    m.id as model_id,
    count(g.id)::integer as generations,
    count(g.id) filter (where g.status = 'completed')::integer as completed,
    count(g.id) filter (where g.status = 'failed')::integer as failed,
    count(g.id) filter (where g.status = 'cancelled')::integer as cancelled,
    coalesce(sum(g.cost) filter (where g.status not in ('failed', 'cancelled')), 0)::bigint as credits_spent,
    round(avg(extract(epoch from g.completed_at - g.created_at)) filter (where g.status = 'completed'), 3)
        as avg_seconds_to_complete
from public.models as m
left join public.generations as g on m.id = g.model_id
group by m.id;

create unique index model_generation_stats_key on analytics.model_generation_stats (model_id);

-- grants --------------------------------------------------------------------------------

-- none to anon or authenticated: the functions below are the only way in
grant usage on schema analytics to service_role;
grant select on all tables in schema analytics to service_role;

-- functions -----------------------------------------------------------------------------

create function public.refresh_analytics()
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
    refresh materialized view concurrently analytics.team_daily_usage;
    refresh materialized view concurrently analytics.project_daily_usage;
    refresh materialized view concurrently analytics.user_credits;
    refresh materialized view concurrently analytics.model_generation_stats;
end;
$$;

comment on function public.refresh_analytics() is
'Refreshes every analytics view without blocking readers; pg_cron or one app instance runs it.';

grant execute on function public.refresh_analytics() to service_role;

create function public.team_usage(p_team_id uuid, p_days integer default 30)
returns table (day date, generations integer, completed integer, failed integer, credits_spent bigint)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
    perform private.require_active_user();
    perform private.require_team_role(p_team_id, 'viewer');
    if p_days is null or p_days not between 1 and 366 then
        perform private.raise_error(400, 'days must be between 1 and 366');
    end if;
    return query
    select u.day, u.generations, u.completed, u.failed, u.credits_spent
    from analytics.team_daily_usage as u
    where u.team_id = p_team_id and u.day > (now() at time zone 'utc')::date - p_days
    order by u.day;
end;
$$;

comment on function public.team_usage(uuid, integer) is
'Daily usage of a team''s linked projects, for its members only.';

grant execute on function public.team_usage(uuid, integer) to authenticated;

create function public.project_usage(p_project_id uuid, p_days integer default 30)
returns table (day date, generations integer, completed integer, failed integer, credits_spent bigint)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
    perform private.require_active_user();
    perform private.require_project_role(p_project_id, 'viewer');
    if p_days is null or p_days not between 1 and 366 then
        perform private.raise_error(400, 'days must be between 1 and 366');
    end if;
    return query
    select u.day, u.generations, u.completed, u.failed, u.credits_spent
    from analytics.project_daily_usage as u
    where u.project_id = p_project_id and u.day > (now() at time zone 'utc')::date - p_days
    order by u.day;
end;
$$;

comment on function public.project_usage(uuid, integer) is 'Daily usage of a project, for those who can read it.';

grant execute on function public.project_usage(uuid, integer) to authenticated;

create function public.my_credit_summary()
returns table (credited bigint, charged bigint, refunded bigint, charges integer)
language sql
stable
security definer
set search_path = ''
as $$
    select c.credited, c.charged, c.refunded, c.charges
    from analytics.user_credits as c
    where c.user_id = (select auth.uid()) and (select private.is_active_user())
$$;

comment on function public.my_credit_summary() is 'The caller''s credit totals as of the last refresh.';

grant execute on function public.my_credit_summary() to authenticated;

create function public.model_stats()
returns table (
    model_id text, generations integer, completed integer, failed integer, cancelled integer,
    credits_spent bigint, avg_seconds_to_complete numeric
)
language sql
stable
security definer
set search_path = ''
as $$
    select s.model_id, s.generations, s.completed, s.failed, s.cancelled, s.credits_spent, s.avg_seconds_to_complete
    from analytics.model_generation_stats as s
    order by s.model_id
$$;

comment on function public.model_stats() is
'Per-model totals as of the last refresh; the service role reads them for operators.';

grant execute on function public.model_stats() to service_role;

-- schedule ------------------------------------------------------------------------------

-- pg_cron where installed (hosted Supabase); elsewhere one app instance refreshes under an
-- advisory lock. The same job name replaces an earlier schedule.
do $$
begin
    if exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron') then
        perform cron.schedule('velro-refresh-analytics', '*/5 * * * *', 'select public.refresh_analytics()');
    end if;
end
$$;
