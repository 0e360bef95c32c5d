-- Shared setup for every pgTAP file: pgTAP itself and the `tests` helpers. It runs first
-- (file names sort it first) and commits, so the files after it find the helpers.
-- tests/test_pgtap.py also runs it into the template that each file gets a clone of.
--
-- THE PATTERN every pgTAP file follows (pg_prove runs each file in its own session):
--
--     begin;
--     select plan(4);
--     select tests.create_user('ann@example.com') as ann \gset      -- as the superuser
--     select tests.create_user('bob@example.com') as bob \gset
--     select tests.authenticate_as(:'ann');    -- now exactly what PostgREST does for Ann
--     select results_eq('select id from public.profiles', array[:'ann'::uuid],
--         'Ann reads her own profile and no other');
--     select throws_ok(format('insert into public.teams (name, owner_id) values (%L, %L)',
--         'x', :'bob'), '42501', null, 'Ann cannot create a team in Bob''s name');
--     select tests.authenticate_as_anon();      -- a request with no user token
--     select is_empty('select id from public.profiles', 'anon reads no profile');
--     select tests.clear_authentication();      -- back to the superuser, to inspect
--     select is((select count(*) from public.profiles), 2::bigint, 'both profiles exist');
--     select * from finish();
--     rollback;
--
-- (Table and column names above are illustrations; use the real ones.) psql variables
-- (:'ann') are not expanded inside quotes or $$ bodies: pass them as arguments, or build the
-- statement with format(), as above.
--
-- How the role switch works, and why it is safe to call pgTAP after it:
-- - authenticate_as* do exactly what PostgREST does inside a request's transaction:
--   `set local role <role>` and `set_config('request.jwt.claims', <claims>, true)`. Both are
--   transaction-local, so the file's final `rollback` undoes them. auth.uid(), auth.role(),
--   auth.email() and auth.jwt() read those claims; RLS applies because the role is not a
--   superuser (service_role bypasses RLS, as on Supabase).
-- - Switching is allowed from any role at any time, because Postgres checks SET ROLE
--   against the session user (postgres), not the current role. So a file can go
--   Ann -> Bob -> anon -> postgres freely; no helper needs `security definer` (which could
--   not change the role anyway).
-- - pgTAP keeps its counters in temp tables that plan() creates and grants to PUBLIC, and
--   its functions are installed in schema `extensions` (usage granted to the API roles by
--   the stand-in, and on the search_path of this database), so ok(), is(), throws_ok() and
--   results_eq() work while the current role is authenticated, anon or service_role. Call
--   plan() first, as above.
-- - Set up data as the superuser (create_user, inserts the API roles may not do), then
--   switch. create_user keeps the caller's role and claims, so it can be called anywhere.
-- - Expect denials with their exact SQLSTATE: 42501 for a missing privilege or an RLS
--   check on insert/update; a row hidden by RLS is simply absent (no error), so check
--   `is_empty` or a row count for reads, updates and deletes that must not reach it.

create extension if not exists pgtap with schema extensions;

-- The migrations revoke the default EXECUTE from PUBLIC on functions created afterwards,
-- which includes pgTAP's when it is installed after them. Give pgTAP its usual PUBLIC
-- EXECUTE back, so its assertions work whatever role a test has switched to.
do $$
declare
    v_function regprocedure;
begin
    for v_function in
        select d.objid::regprocedure
        from pg_catalog.pg_depend as d
        inner join pg_catalog.pg_extension as e on d.refobjid = e.oid
        where
            e.extname = 'pgtap'
            and d.classid = 'pg_catalog.pg_proc'::regclass
            and d.deptype = 'e'
    loop
        execute format('grant execute on function %s to public', v_function);
    end loop;
end
$$;

-- later sessions (the next files) resolve plan(), ok() and friends through the search_path,
-- as on a Supabase database, where `extensions` is on it
do $$
begin
    execute format(
        'alter database %I set search_path = "$user", public, extensions', current_database()
    );
end
$$;

set search_path = "$user", public, extensions;

create schema if not exists tests;
grant usage on schema tests to anon, authenticated, service_role;

-- Creates a confirmed user in auth.users (which fires the profile trigger, as Supabase Auth
-- does on sign-up) and returns its id. Works whatever role is current, and leaves it as is.
create or replace function tests.create_user(
    p_email text, p_user_meta_data jsonb default '{}'::jsonb
)
returns uuid
language plpgsql
set search_path = ''
as $$
declare
    v_role text := current_setting('role');
    v_claims text := current_setting('request.jwt.claims', true);
    v_id uuid := gen_random_uuid();
begin
    perform set_config('role', 'none', true);
    insert into auth.users (
        instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
        raw_app_meta_data, raw_user_meta_data, created_at, updated_at
    )
    values (
        '00000000-0000-0000-0000-000000000000', v_id, 'authenticated', 'authenticated',
        p_email, '', now(), '{"provider": "email", "providers": ["email"]}'::jsonb,
        p_user_meta_data, now(), now()
    );
    perform set_config('role', v_role, true);
    perform set_config('request.jwt.claims', coalesce(v_claims, ''), true);
    return v_id;
end
$$;

-- Acts as this user for the rest of the transaction, as PostgREST does for a request
-- carrying the user's access token.
create or replace function tests.authenticate_as(p_user_id uuid)
returns void
language plpgsql
set search_path = ''
as $$
declare
    v_email text;
begin
    perform set_config('role', 'none', true);
    select u.email into strict v_email from auth.users as u where u.id = p_user_id;
    perform set_config(
        'request.jwt.claims',
        jsonb_build_object(
            'sub', p_user_id, 'role', 'authenticated', 'email', v_email,
            'aud', 'authenticated', 'aal', 'aal1', 'session_id', gen_random_uuid()
        )::text,
        true
    );
    perform set_config('role', 'authenticated', true);
end
$$;

-- Acts as a request made with the anon key and no user token.
create or replace function tests.authenticate_as_anon()
returns void
language plpgsql
set search_path = ''
as $$
begin
    perform set_config('request.jwt.claims', '{"role": "anon"}', true);
    perform set_config('role', 'anon', true);
end
$$;

-- Acts as the service role (system work: webhooks, refunds, grants); it bypasses RLS.
create or replace function tests.authenticate_as_service_role()
returns void
language plpgsql
set search_path = ''
as $$
begin
    perform set_config('request.jwt.claims', '{"role": "service_role"}', true);
    perform set_config('role', 'service_role', true);
end
$$;

-- Leaves the API: back to the session's superuser with no claims, to set up or inspect.
create or replace function tests.clear_authentication()
returns void
language plpgsql
set search_path = ''
as $$
begin
    perform set_config('role', 'none', true);
    perform set_config('request.jwt.claims', '', true);
end
$$;

-- A team's ordinary life through the RPCs, as its members would live it: the owner creates
-- it and invites the member and the leaver (viewers, by email), both accept, the leaver
-- leaves, and the owner makes the member an editor. Returns the team's id; the caller is
-- then the owner. Run it as the session user, which may read auth.users. The audit files
-- check what each step leaves behind.
create or replace function tests.live_a_team_life(
    p_owner uuid,
    p_member uuid,
    p_leaver uuid,
    p_name text
)
returns uuid
language plpgsql
set search_path = ''
as $$
declare
    v_member_email text := (
        select u.email from auth.users as u where u.id = p_member
    );
    v_leaver_email text := (
        select u.email from auth.users as u where u.id = p_leaver
    );
    v_team uuid;
    v_member_token text;
    v_leaver_token text;
begin
    perform tests.authenticate_as(p_owner);
    select t.id into v_team from public.create_team(p_name) as t;
    v_member_token := public.invite_member(v_team, v_member_email, 'viewer') ->> 'token';
    v_leaver_token := public.invite_member(v_team, v_leaver_email, 'viewer') ->> 'token';
    perform tests.authenticate_as(p_member);
    perform public.accept_invitation(v_member_token);
    perform tests.authenticate_as(p_leaver);
    perform public.accept_invitation(v_leaver_token);
    perform public.leave_team(v_team);
    perform tests.authenticate_as(p_owner);
    perform public.change_member_role(v_team, p_member, 'editor');
    return v_team;
end
$$;

-- The world most files start from: team Alpha ('a0000000-0000-4000-8000-000000000001')
-- with its owner, an admin, an editor, a viewer and sue, suspended, at p_sue_role; team Beta
-- ('b0000000-0000-4000-8000-000000000002') owned by other; a stranger in no team; and
-- powner, who owns projects and joins a team only where a file says so. Returns every id
-- in one row, for psql's \gset. Run it as the session user (before any authenticate_as).
create or replace function tests.create_world(p_sue_role public.team_role default 'admin')
returns table (
    towner uuid, tadmin uuid, teditor uuid, tviewer uuid, sue uuid, other uuid, stranger uuid,
    powner uuid
)
language plpgsql
set search_path = ''
as $$
begin
    towner := tests.create_user('owner@velro.test');
    tadmin := tests.create_user('admin@velro.test');
    teditor := tests.create_user('editor@velro.test');
    tviewer := tests.create_user('viewer@velro.test');
    other := tests.create_user('other@velro.test');
    stranger := tests.create_user('stranger@velro.test');
    sue := tests.create_user('sue@velro.test');
    powner := tests.create_user('powner@velro.test');
    insert into public.teams (id, name, owner_id) values
    ('a0000000-0000-4000-8000-000000000001', 'Alpha', towner),
    ('b0000000-0000-4000-8000-000000000002', 'Beta', other);
    insert into public.team_members (team_id, user_id, role) values
    ('a0000000-0000-4000-8000-000000000001', towner, 'owner'),
    ('a0000000-0000-4000-8000-000000000001', tadmin, 'admin'),
    ('a0000000-0000-4000-8000-000000000001', teditor, 'editor'),
    ('a0000000-0000-4000-8000-000000000001', tviewer, 'viewer'),
    ('a0000000-0000-4000-8000-000000000001', sue, p_sue_role),
    ('b0000000-0000-4000-8000-000000000002', other, 'owner');
    update public.profiles set status = 'suspended' where id = sue;
    return next;
end
$$;

grant execute on all functions in schema tests to anon, authenticated, service_role;

begin;
select plan(11);

select tests.create_user('setup.hooks@example.com') as user_id \gset

select tests.authenticate_as(:'user_id');
select is(current_user::text, 'authenticated', 'authenticate_as switches to the authenticated role');
select is(auth.uid(), :'user_id'::uuid, 'auth.uid() is the user');
select is(auth.email(), 'setup.hooks@example.com', 'auth.email() is the user''s email');
select is(auth.role(), 'authenticated', 'auth.role() is authenticated');

select tests.create_user('second.user@example.com') as second_id \gset
select is(auth.uid(), :'user_id'::uuid, 'create_user keeps the caller''s identity');

select tests.authenticate_as_anon();
select ok(current_user = 'anon' and auth.uid() is null, 'authenticate_as_anon: anon, no user');

select tests.authenticate_as_service_role();
select is(auth.role(), 'service_role', 'authenticate_as_service_role sets the role claim');

select tests.clear_authentication();
select is(current_user::text, session_user::text, 'clear_authentication returns to the session user');
select ok(auth.uid() is null, 'and clears the claims');

select * from tests.create_world(p_sue_role => 'viewer') \gset
select results_eq(
    $$select t.name, m.role::text, p.status::text from public.team_members as m
      join public.teams as t on t.id = m.team_id join public.profiles as p on p.id = m.user_id
      where m.user_id = $$ || quote_literal(:'sue'),
    $$values ('Alpha', 'viewer', 'suspended')$$,
    'create_world: sue is suspended, in Alpha at the role asked for'
);
select is(
    (select count(*)::int from public.team_members where user_id in (:'powner', :'stranger')),
    0,
    'create_world: powner and the stranger are in no team'
);

select * from finish();
rollback;
