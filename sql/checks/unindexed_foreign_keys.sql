-- Foreign keys without a covering index (supabase/splinter's unindexed_foreign_keys): an
-- index whose leading columns are the key's columns. Without one, every delete or key
-- update of a referenced row scans the referencing table, and joins along the key cannot
-- use an index. Fix: `create index <table>_<column>_idx on <table> (<columns>)`.
with

foreign_keys as (
    select
        c.conrelid,
        c.conname,
        c.conkey::smallint[] as columns,
        format('%I.%I', n.nspname, t.relname) as table_name
    from pg_catalog.pg_constraint as c
    inner join pg_catalog.pg_class as t on c.conrelid = t.oid
    inner join pg_catalog.pg_namespace as n on t.relnamespace = n.oid
    where
        c.contype = 'f'
        and n.nspname in ('public', 'private', 'analytics')
),

index_columns as (
    select
        i.indrelid,
        string_to_array(i.indkey::text, ' ')::smallint[] as columns
    from pg_catalog.pg_index as i
    where i.indpred is null
)

select
    fk.table_name,
    fk.conname as foreign_key,
    (
        select string_agg(a.attname, ', ' order by k.ordinality)
        from unnest(fk.columns) with ordinality as k (attnum, ordinality)
        inner join pg_catalog.pg_attribute as a on a.attrelid = fk.conrelid and k.attnum = a.attnum
    ) as columns
from foreign_keys as fk
where
    not exists (
        select from index_columns as ic
        where
            ic.indrelid = fk.conrelid
            and ic.columns[1:cardinality(fk.columns)] @> fk.columns
            and ic.columns[1:cardinality(fk.columns)] <@ fk.columns
    )
order by 1, 2;
