-- Grants an API role (anon, authenticated, service_role) or PUBLIC holds that no migration
-- can have meant. Hosted Supabase grants everything new in `public` to the API roles by
-- default (the local stand-in does the same), so a forgotten revoke shows up here. Each row
-- names the object, the role, the privilege and how to fix it; fix it in a new migration
-- (revoke, then grant exactly what the role needs).
with

api_roles (role_name) as (
    select unnest(array['anon', 'authenticated', 'service_role'])
),

our_schemas (schema_name) as (
    select unnest(array['public', 'private', 'analytics'])
),

relations as (
    select
        c.oid,
        c.relkind,
        n.nspname as schema_name,
        format('%I.%I', n.nspname, c.relname) as object_name
    from pg_catalog.pg_class as c
    inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
    where
        n.nspname in (select s.schema_name from our_schemas as s)
        and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
        and not exists (
            select from pg_catalog.pg_depend as d
            where d.objid = c.oid and d.deptype = 'e'
        )
),

functions as (
    select
        p.oid,
        p.prosecdef,
        n.nspname as schema_name,
        format(
            '%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)
        ) as object_name,
        p.proacl
    from pg_catalog.pg_proc as p
    inner join pg_catalog.pg_namespace as n on p.pronamespace = n.oid
    where
        n.nspname in (select s.schema_name from our_schemas as s)
        and not exists (
            select from pg_catalog.pg_depend as d
            where d.objid = p.oid and d.deptype = 'e'
        )
),

findings (object_name, role_name, privilege, fix) as (
    -- only `grant all` gives these: no API role truncates, references or adds triggers
    select
        r.object_name,
        a.role_name,
        upper(p.privilege),
        'revoke truncate, references, trigger on ' || r.object_name || ' from ' || a.role_name
    from relations as r
    cross join api_roles as a
    cross join unnest(array['truncate', 'references', 'trigger']) as p (privilege)
    where
        r.relkind in ('r', 'p', 'v', 'm', 'f')
        and pg_catalog.has_table_privilege(a.role_name, r.oid, p.privilege)

    union all

    -- ids are uuids or identity columns filled through granted tables: no sequence grants
    select
        r.object_name,
        a.role_name,
        upper(p.privilege),
        'revoke all on sequence ' || r.object_name || ' from ' || a.role_name
    from relations as r
    cross join api_roles as a
    cross join unnest(array['usage', 'select', 'update']) as p (privilege)
    where
        r.relkind = 'S'
        and pg_catalog.has_sequence_privilege(a.role_name, r.oid, p.privilege)

    union all

    -- internals are never reachable by clients: nothing in private or analytics for them
    select
        r.object_name,
        a.role_name,
        upper(p.privilege),
        'revoke all on ' || r.object_name || ' from ' || a.role_name
        || ': clients reach internals only through security-definer functions'
    from relations as r
    cross join api_roles as a
    cross join unnest(array['select', 'insert', 'update', 'delete']) as p (privilege)
    where
        r.schema_name <> 'public'
        and r.relkind <> 'S'
        and a.role_name in ('anon', 'authenticated')
        and pg_catalog.has_table_privilege(a.role_name, r.oid, p.privilege)

    union all

    -- the ledger and the audit log are history: lines are added, never changed
    select
        r.object_name,
        a.role_name,
        upper(p.privilege),
        'revoke update, delete on ' || r.object_name || ' from ' || a.role_name
        || ': it is append-only'
    from relations as r
    cross join api_roles as a
    cross join unnest(array['update', 'delete']) as p (privilege)
    where
        r.object_name in ('public.credit_ledger', 'private.audit_events')
        and pg_catalog.has_table_privilege(a.role_name, r.oid, p.privilege)

    union all

    -- PUBLIC includes anon: every function is granted to the roles that call it, by name
    select
        f.object_name,
        'PUBLIC',
        'EXECUTE',
        'revoke execute on function ' || f.object_name || ' from public, then grant it to its callers'
    from functions as f
    where
        f.proacl is null
        or exists (
            select from aclexplode(f.proacl) as e
            where e.grantee = 0 and e.privilege_type = 'EXECUTE'
        )

    union all

    -- a private function called directly runs with the caller's rights: an API role may
    -- execute only security-definer helpers there (policies call them)
    select
        f.object_name,
        a.role_name,
        'EXECUTE',
        'revoke execute on function ' || f.object_name || ' from ' || a.role_name
        || ': our functions call it as their owner'
    from functions as f
    cross join api_roles as a
    where
        f.schema_name <> 'public'
        and (a.role_name = 'anon' or not f.prosecdef)
        and pg_catalog.has_function_privilege(a.role_name, f.oid, 'execute')

    union all

    -- an end-user RPC acts for auth.uid(); the service role has no user to act for
    select
        f.object_name,
        'service_role',
        'EXECUTE',
        'revoke execute on function ' || f.object_name || ' from service_role'
        || ': an RPC for signed-in users (hosted Supabase grants new functions to service_role)'
    from functions as f
    where
        f.schema_name = 'public'
        and pg_catalog.has_function_privilege('authenticated', f.oid, 'execute')
        and pg_catalog.has_function_privilege('service_role', f.oid, 'execute')

    union all

    -- default privileges of the migration role: what objects created later will grant
    select
        coalesce(n.nspname, 'every schema') || ' (default privileges for new '
        || case d.defaclobjtype
            when 'r' then 'tables' when 'S' then 'sequences'
            when 'f' then 'functions' else d.defaclobjtype::text
        end || ')',
        coalesce(g.rolname, 'PUBLIC'),
        e.privilege_type,
        'alter default privileges' || coalesce(' in schema ' || n.nspname, '') || ' revoke all on '
        || case d.defaclobjtype
            when 'r' then 'tables' when 'S' then 'sequences'
            when 'f' then 'functions' else d.defaclobjtype::text
        end
        || ' from ' || coalesce(g.rolname, 'public')
    from pg_catalog.pg_default_acl as d
    left join pg_catalog.pg_namespace as n on d.defaclnamespace = n.oid
    cross join aclexplode(d.defaclacl) as e
    left join pg_catalog.pg_roles as g on e.grantee = g.oid
    where
        d.defaclrole = current_user::regrole
        and (n.nspname is null or n.nspname in (select s.schema_name from our_schemas as s))
        and (e.grantee = 0 or g.rolname in (select a.role_name from api_roles as a))
)

select
    object_name,
    role_name,
    privilege,
    fix
from findings
order by 1, 2, 3;
