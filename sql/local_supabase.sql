-- The local Supabase stand-in: what a hosted Supabase project already has and a vanilla
-- Postgres lacks (API roles, the auth schema, auth.uid() and friends), so the migrations in
-- supabase/migrations run unchanged on both. Idempotent. Never push this to a real project:
-- hosted Supabase owns the auth schema and refuses objects created in it.

-- roles, as Supabase defines them. Roles belong to the whole server, and two sessions may
-- run this file at once on a new one (the test suite's processes do): the later one's
-- create role then waits for the earlier one to commit and fails as a duplicate, which
-- only means the role is there.
do $$
declare
    role_definition text;
begin
    foreach role_definition in array array[
        'anon nologin noinherit',
        'authenticated nologin noinherit',
        'service_role nologin noinherit bypassrls',
        'authenticator login noinherit'
    ] loop
        if not exists (select from pg_roles where rolname = split_part(role_definition, ' ', 1)) then
            begin
                execute 'create role ' || role_definition;
            exception when unique_violation or duplicate_object then
                null;
            end;
        end if;
    end loop;
end
$$;

grant anon to authenticator;
grant authenticated to authenticator;
grant service_role to authenticator;

create schema if not exists extensions;
create schema if not exists auth;
grant usage on schema extensions to anon, authenticated, service_role;
grant usage on schema auth to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;

-- Hosted Supabase's default privileges: every table, sequence and function the migration
-- role creates in `public` is granted in full to anon, authenticated and service_role (and
-- every function is executable by PUBLIC, as in any Postgres). Reproduced here so that a
-- migration that forgets a revoke exposes locally exactly what it would expose there. They
-- apply to objects created by the role that runs this file, the role the migrations run as.
-- Set once, on a fresh database, as a new project starts with them: this file runs again
-- before every `db apply`, and must not undo what the migrations revoked since.
do $$
begin
    if not exists (select from pg_catalog.pg_tables where schemaname = 'auth' and tablename = 'users') then
        alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
        alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
        alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
    end if;
end
$$;

-- auth.users with the columns Supabase Auth (GoTrue) keeps
create table if not exists auth.users (
    instance_id uuid,
    id uuid primary key,
    aud varchar(255),
    role varchar(255),
    email varchar(255),
    encrypted_password varchar(255),
    email_confirmed_at timestamptz,
    invited_at timestamptz,
    confirmation_token varchar(255),
    confirmation_sent_at timestamptz,
    recovery_token varchar(255),
    recovery_sent_at timestamptz,
    email_change_token_new varchar(255),
    email_change varchar(255),
    email_change_sent_at timestamptz,
    last_sign_in_at timestamptz,
    raw_app_meta_data jsonb,
    raw_user_meta_data jsonb,
    is_super_admin boolean,
    created_at timestamptz,
    updated_at timestamptz,
    phone text unique default null,
    phone_confirmed_at timestamptz,
    phone_change text default '',
    phone_change_token varchar(255) default '',
    phone_change_sent_at timestamptz,
    confirmed_at timestamptz generated always as (least(email_confirmed_at, phone_confirmed_at)) stored,
    email_change_token_current varchar(255) default '',
    email_change_confirm_status smallint default 0,
    banned_until timestamptz,
    reauthentication_token varchar(255) default '',
    reauthentication_sent_at timestamptz,
    is_sso_user boolean not null default false,
    deleted_at timestamptz,
    is_anonymous boolean not null default false
);

-- GoTrue keeps emails unique among non-SSO users
create unique index if not exists users_email_partial_key on auth.users (email) where (is_sso_user = false);

-- sessions and refresh tokens, as GoTrue keeps them; the local auth provider writes here
create table if not exists auth.sessions (
    id uuid primary key,
    user_id uuid not null references auth.users (id) on delete cascade,
    created_at timestamptz,
    updated_at timestamptz,
    factor_id uuid,
    aal text,
    not_after timestamptz,
    refreshed_at timestamp,
    user_agent text,
    ip inet,
    tag text
);

create index if not exists sessions_user_id_idx on auth.sessions (user_id);

create table if not exists auth.refresh_tokens (
    instance_id uuid,
    id bigserial primary key,
    token varchar(255) unique,
    user_id varchar(255),
    revoked boolean,
    created_at timestamptz,
    updated_at timestamptz,
    parent varchar(255),
    session_id uuid references auth.sessions (id) on delete cascade
);

create index if not exists refresh_tokens_session_id_revoked_idx on auth.refresh_tokens (session_id, revoked);

-- the request helpers, defined as Supabase Auth's own migrations define them: plain
-- `language sql stable` without a SET clause, so the planner inlines them into the calling
-- query (a SET clause would forbid inlining and cost a plan per call, ~0.1 ms here)
create or replace function auth.uid()
returns uuid
language sql stable
as $$
    select coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
$$;

create or replace function auth.role()
returns text
language sql stable
as $$
    select coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )::text
$$;

create or replace function auth.email()
returns text
language sql stable
as $$
    select coalesce(
        nullif(current_setting('request.jwt.claim.email', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
    )::text
$$;

create or replace function auth.jwt()
returns jsonb
language sql stable
as $$
    select coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$$;

grant execute on function auth.uid(), auth.role(), auth.email(), auth.jwt()
to anon, authenticated, service_role;
