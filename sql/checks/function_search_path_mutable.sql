-- Functions in our schemas whose search_path is not pinned to '' (the house rule: every function
-- sets search_path = '' and qualifies names). A mutable search_path lets a caller's schema
-- shadow the objects a function means, which is an escalation path for security definer.
select
    n.nspname as schema_name,
    p.proname as function_name,
    pg_catalog.pg_get_function_identity_arguments(p.oid) as arguments,
    coalesce(
        (select s from unnest(p.proconfig) as s where s like 'search_path=%'), 'not set'
    ) as search_path_setting
from pg_catalog.pg_proc as p
inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
where
    n.nspname in ('public', 'private', 'analytics')
    and p.prokind in ('f', 'p')
    and not exists (
        select from pg_catalog.pg_depend as d
        where d.objid = p.oid and d.deptype = 'e'
    )
    and 'search_path=""' <> all(coalesce(p.proconfig, '{}'))
order by 1, 2, 3;
