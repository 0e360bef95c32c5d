-- Security-definer functions in the exposed schema that anon (a caller with no user token)
-- may execute. Such a function runs with its owner's rights for anyone on the internet; it
-- must be meant for that. Add it to the allow-list below, with the reason, if it is.
with

allowed (signature) as (
    -- 'public.name(argument types)', e.g. 'public.example(uuid, text)', one per element
    select unnest(array[]::text[])
),

definers as (
    select
        p.oid,
        n.nspname || '.' || p.proname || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')'
            as signature
    from pg_catalog.pg_proc as p
    inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
    where n.nspname = 'public' and p.prosecdef
)

select d.signature
from definers as d
where
    pg_catalog.has_function_privilege('anon', d.oid, 'execute')
    and d.signature not in (select a.signature from allowed as a)
order by 1;
