-- Materialized views an API role can select from. A materialized view has no row-level
-- security, so a grant exposes every row; they are read through security-definer
-- functions that filter by membership instead.
select
    n.nspname as schema_name,
    c.relname as view_name,
    r.rolname as role_name
from pg_catalog.pg_class as c
inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
cross join pg_catalog.pg_roles as r
where
    c.relkind = 'm'
    and r.rolname in ('anon', 'authenticated')
    and pg_catalog.has_table_privilege(r.oid, c.oid, 'select')
order by 1, 2, 3;
