-- Statements that are easy to cut in the wrong place. The Supabase CLI and
-- backend/sql_split.py must record exactly the same pieces for this file.
create schema split_cases;

create table split_cases.notes (
    id int primary key,
    body text default 'a;b',
    "odd;name" text,
    check (body <> 'x;y')
);

/* a block comment; with a semicolon /* nested; */ still inside */
insert into split_cases.notes (id, body) values (1, 'it''s; fine'), (2, E'back\\slash;');

create function split_cases.plain(p_value int) returns int
language plpgsql set search_path = '' as $body$
begin
    -- a comment inside a body; not a split point
    return p_value + 1;
end;
$body$;

create function split_cases.atomic_body(p_value int) returns int
language sql
begin atomic
    select p_value + 1;
end;

create function split_cases.dollar_only() returns text language sql as $$ select 'x;$y' $$;

do $$ begin perform 1; end $$;

comment on table split_cases.notes is 'notes; with a semicolon';
select 1 -- trailing comment; here
;
-- a comment at the end of the file
