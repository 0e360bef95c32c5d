-- Every table an authorization answer reads announces its changes: a cached answer is
-- exact only while each row it depends on sends a notice when it changes. The tables are
-- found, not listed: those named by the authorization functions and by every function they
-- call, however deep. A planted function over a silent table shows the check can fail.
begin;
select plan(4);

-- The tables (ordinary or partitioned, in public, private or auth) named in the bodies of
-- p_roots and of the public and private functions they call, transitively. Not followed:
-- private.record_denial, which writes a denial to the audit once the answer is made (what
-- it reads picks the audit row, not the answer).
create function tests.tables_read_by(p_roots regproc[])
returns setof regclass
language sql
stable
set search_path = ''
as $$
    with recursive reached (fn) as (
        select unnest(p_roots)::oid
        union
        select callee.oid
        from reached
        inner join pg_catalog.pg_proc as caller on caller.oid = reached.fn
        inner join pg_catalog.pg_proc as callee
            on callee.pronamespace in ('public'::regnamespace, 'private'::regnamespace)
            and caller.prosrc ~ ('\m' || callee.pronamespace::regnamespace::text || '\.' || callee.proname || '\s*\(')
        where callee.oid <> 'private.record_denial'::regproc
    )
    select distinct c.oid::regclass
    from reached
    inner join pg_catalog.pg_proc as p on p.oid = reached.fn
    inner join pg_catalog.pg_class as c
        on c.relkind in ('r', 'p')
        and c.relnamespace in ('public'::regnamespace, 'private'::regnamespace, 'auth'::regnamespace)
        and p.prosrc ~ ('\m' || c.relnamespace::regnamespace::text || '\.' || c.relname || '\M(?!\s*\()')
$$;

-- The tables with an enabled row trigger whose function sends invalidation notices.
create function tests.announcing_tables()
returns setof regclass
language sql
stable
set search_path = ''
as $$
    select distinct t.tgrelid::regclass
    from pg_catalog.pg_trigger as t
    inner join pg_catalog.pg_proc as f on f.oid = t.tgfoid
    where not t.tgisinternal and t.tgenabled <> 'D'
        and f.prosrc ~ 'private\.notify_invalidation\s*\('
$$;

select cmp_ok(
    (
        select count(*)::int
        from tests.tables_read_by(array['public.authorize_generation', 'public.authorize_project']::regproc[])
    ),
    '>=', 4,
    'the authorization functions are found to read the tables they read'
);
select is_empty(
    $$select * from tests.tables_read_by(array['public.authorize_generation', 'public.authorize_project']::regproc[])
      except select * from tests.announcing_tables()$$,
    'every table an authorization answer reads announces its changes'
);

create table private.silent_rule (user_id uuid);
create function private.silent_helper(p_user_id uuid) returns boolean language sql stable set search_path = ''
as $$ select exists (select 1 from private.silent_rule as s where s.user_id = p_user_id) $$;
create function private.planted_authorize(p_user_id uuid) returns boolean language sql stable set search_path = ''
as $$ select private.silent_helper(p_user_id) $$;
select set_eq(
    $$select * from tests.tables_read_by(array['private.planted_authorize']::regproc[])
      except select * from tests.announcing_tables()$$,
    array['private.silent_rule'::regclass],
    'a table read two calls deep without announcements is caught'
);
create trigger silent_rule_invalidate after insert or update or delete on private.silent_rule
for each row execute function private.announce_change('user', 'user_id');
select is_empty(
    $$select * from tests.tables_read_by(array['private.planted_authorize']::regproc[])
      except select * from tests.announcing_tables()$$,
    'and passes once the table announces its changes'
);

select * from finish();
rollback;
