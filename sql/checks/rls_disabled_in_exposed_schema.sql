-- Tables in a schema the Data API exposes (supabase/config.toml [api] schemas) without
-- row-level security: PostgREST would serve every row to anyone holding a grant.
select
    n.nspname as schema_name,
    c.relname as table_name
from pg_catalog.pg_class as c
inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
where
    n.nspname in ('public', 'graphql_public')
    and c.relkind in ('r', 'p')
    and not c.relrowsecurity
    and not exists (
        select from pg_catalog.pg_depend as d
        where d.objid = c.oid and d.deptype = 'e'
    )
order by 1, 2;
