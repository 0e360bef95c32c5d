-- What plpgsql_check (the database lint run by the tests) found in the landed functions.
--
-- - private.announce_change declared v_pair, which its integer for loop declares again
--   itself: the outer variable was never used (warning "unused variable"). Same body
--   otherwise; grants and triggers are unchanged by `create or replace`.

create or replace function private.announce_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_row jsonb;
begin
    foreach v_row in array array[to_jsonb(old), to_jsonb(new)] loop
        continue when v_row is null;
        -- the loop variable is the index of a (scope, column) pair among the arguments
        for v_pair in 0 .. tg_nargs / 2 - 1 loop
            perform private.notify_invalidation(tg_argv[v_pair * 2], v_row ->> tg_argv[v_pair * 2 + 1]);
        end loop;
    end loop;
    return null;
end;
$$;

comment on function private.announce_change() is
'Trigger: announces (scope, id) pairs named by its arguments for the old and new row.';
