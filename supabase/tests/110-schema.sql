-- The schema's safety rules, checked from the catalog: exposed tables have RLS and the
-- expected policies; functions pin their search_path; only intended RPCs are executable by
-- the API roles; internals and materialized views are out of the API's reach.
begin;
select plan(50);

-- tables and RLS --------------------------------------------------------------------------------------

select tables_are(
    'public',
    array[
        'credit_ledger', 'generation_media', 'generation_shares', 'generation_webhooks', 'generations',
        'invitations', 'models', 'profiles', 'project_teams', 'projects', 'team_members', 'teams',
        'webhook_deliveries'
    ],
    'public holds exactly the domain tables'
);
select is_empty(
    $$select c.relname from pg_catalog.pg_class as c
    where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p') and not c.relrowsecurity$$,
    'every table in public has row-level security enabled'
);
select is_empty(
    $$select c.relname from pg_catalog.pg_class as c
    where c.relnamespace = 'public'::regnamespace and c.relkind in ('v', 'm', 'f')$$,
    'public exposes no views, materialized views or foreign tables (they would bypass RLS)'
);
select is_empty(
    $$select tablename, policyname from pg_catalog.pg_policies
    where schemaname = 'public' and 'public' = any(roles)$$,
    'every policy names its roles (no policy for PUBLIC)'
);
select is_empty(
    $$select tablename, policyname from pg_catalog.pg_policies
    where schemaname = 'public' and 'anon' = any(roles) and tablename <> 'models'$$,
    'only the model catalog has a policy for anon'
);

select policies_are('public', 'profiles', array[
    'users can read their own profile, even when suspended',
    'active users can update their own profile'
], 'profiles: read own, update own (teammates'' names come from list_team_members)');
select policies_are('public', 'credit_ledger', array[
    'active users can read their own credit movements'
], 'credit_ledger: read own only');
select policies_are('public', 'teams', array[
    'members can read their teams', 'admins can rename their teams'
], 'teams: read, rename');
select policies_are('public', 'team_members', array[
    'members can read the members of their teams'
], 'team_members: read only (changes go through RPCs)');
select policies_are('public', 'invitations', array[
    'admins can read their teams'' invitations'
], 'invitations: admins read');
select policies_are('public', 'projects', array[
    'readers can read projects', 'active users can create their own projects',
    'owners can update their projects', 'owners can delete their projects'
], 'projects: one policy per command');
select policies_are('public', 'project_teams', array[
    'project owners and the team''s members can read links of shared projects'
], 'project_teams: read only');
select policies_are('public', 'generations', array[
    'readers can read generations', 'editors can update generations', 'admins can delete generations'
], 'generations: read, update, delete (created by create_generation)');
select policies_are('public', 'generation_shares', array[
    'team members and generation admins can read shares'
], 'generation_shares: read only');
select policies_are('public', 'models', array['anyone can read enabled models'], 'models: read enabled');

-- table privileges of the API roles ---------------------------------------------------------------------

select set_eq(
    $$select table_name::text, privilege_type::text from information_schema.role_table_grants
    where grantee = 'anon' and table_schema in ('public', 'private', 'analytics', 'auth')$$,
    $$values ('models', 'SELECT')$$,
    'anon may read the model catalog and nothing else'
);
select set_eq(
    $$select table_name::text, privilege_type::text from information_schema.role_table_grants
    where grantee = 'authenticated' and table_schema in ('public', 'private', 'analytics', 'auth')$$,
    $$values
    ('profiles', 'SELECT'), ('credit_ledger', 'SELECT'), ('teams', 'SELECT'), ('team_members', 'SELECT'),
    ('projects', 'SELECT'), ('projects', 'DELETE'), ('project_teams', 'SELECT'), ('models', 'SELECT'),
    ('generations', 'SELECT'), ('generations', 'DELETE'), ('generation_shares', 'SELECT'),
    ('generation_media', 'SELECT'), ('generation_webhooks', 'SELECT'), ('webhook_deliveries', 'SELECT')$$,
    'authenticated holds exactly these whole-table privileges'
);
select set_eq(
    $$select table_name::text, column_name::text, privilege_type::text from information_schema.column_privileges
    where grantee = 'authenticated' and privilege_type in ('INSERT', 'UPDATE')
    and table_schema = 'public'$$,
    $$values
    ('profiles', 'display_name', 'UPDATE'),
    ('teams', 'name', 'UPDATE'),
    ('projects', 'name', 'INSERT'), ('projects', 'description', 'INSERT'), ('projects', 'visibility', 'INSERT'),
    ('projects', 'name', 'UPDATE'), ('projects', 'description', 'UPDATE'), ('projects', 'visibility', 'UPDATE'),
    ('generations', 'title', 'UPDATE')$$,
    'authenticated may write only these columns (never balances, status, owners, costs)'
);
select ok(
    not has_column_privilege('authenticated', 'public.invitations', 'token_hash', 'select'),
    'the invitation token hash is not readable by users'
);
select ok(
    not has_table_privilege('service_role', 'public.credit_ledger', 'update')
    and not has_table_privilege('service_role', 'public.credit_ledger', 'delete'),
    'not even the service role rewrites the ledger'
);
select is_empty(
    $$select c.relname from pg_catalog.pg_class as c
    where c.relnamespace = 'private'::regnamespace and c.relkind in ('r', 'v', 'm')
    and (has_table_privilege('anon', c.oid, 'select, insert, update, delete')
        or has_table_privilege('authenticated', c.oid, 'select, insert, update, delete'))$$,
    'no private table or view is reachable by anon or authenticated'
);

-- materialized views ------------------------------------------------------------------------------------

select set_eq(
    $$select schemaname::text, matviewname::text from pg_catalog.pg_matviews$$,
    $$values ('analytics', 'team_daily_usage'), ('analytics', 'project_daily_usage'),
    ('analytics', 'user_credits'), ('analytics', 'model_generation_stats')$$,
    'the four analytics views live in the unexposed analytics schema'
);
select is_empty(
    $$select matviewname from pg_catalog.pg_matviews
    where has_table_privilege('anon', format('%I.%I', schemaname, matviewname), 'select')
    or has_table_privilege('authenticated', format('%I.%I', schemaname, matviewname), 'select')$$,
    'no materialized view is readable by an API role'
);
select ok(
    not has_schema_privilege('anon', 'analytics', 'usage')
    and not has_schema_privilege('authenticated', 'analytics', 'usage'),
    'the API roles have no usage on schema analytics'
);
select ok(
    not has_schema_privilege('anon', 'private', 'usage'),
    'anon has no usage on schema private: no policy of anon''s calls a helper'
);
select is_empty(
    $$select m.matviewname from pg_catalog.pg_matviews as m
    where not exists (
        select 1 from pg_catalog.pg_index as i
        where i.indrelid = format('%I.%I', m.schemaname, m.matviewname)::regclass and i.indisunique
    )$$,
    'every materialized view has a unique index (refresh concurrently needs one)'
);

-- functions -------------------------------------------------------------------------------------------------

select functions_are('public', array[
    'accept_invitation', 'authorize_generation', 'authorize_project', 'cancel_generation',
    'cancellable_generation', 'change_member_role',
    'create_generation', 'create_team', 'fal_circuit_allows', 'generations_awaiting_fal', 'grant_credits',
    'invite_member', 'leave_team', 'link_project_team', 'list_pending_invitations', 'list_team_members',
    'model_stats', 'my_credit_summary', 'project_usage', 'record_fal_cancellation', 'record_fal_outcome',
    'record_generation_media',
    'record_generation_progress', 'refresh_analytics', 'refund_generation', 'remove_member', 'revoke_invitation',
    'rotate_webhook_secret', 'set_generation_webhook', 'share_generation', 'team_permissions', 'team_usage',
    'transfer_team_ownership', 'unlink_project_team', 'unshare_generation', 'webhook_secret_info'
], 'public holds exactly the API functions');
select is_empty(
    $$select p.oid::regprocedure::text from pg_catalog.pg_proc as p
    where p.pronamespace in ('public'::regnamespace, 'private'::regnamespace, 'analytics'::regnamespace)
    and not coalesce('search_path=""' = any(p.proconfig), false)$$,
    'every function in public, private and analytics pins search_path to empty'
);
select is_empty(
    $$select p.oid::regprocedure::text from pg_catalog.pg_proc as p
    where p.pronamespace in ('public'::regnamespace, 'private'::regnamespace)
    and has_function_privilege('anon', p.oid, 'execute')$$,
    'anon can execute no function of ours'
);
select is_empty(
    $$select p.oid::regprocedure::text from pg_catalog.pg_proc as p
    where p.pronamespace in ('public'::regnamespace, 'private'::regnamespace)
    and p.proacl is null$$,
    'no function keeps the default ACL (which would let PUBLIC execute it)'
);
select set_eq(
    $$select p.proname::text from pg_catalog.pg_proc as p
    where p.pronamespace = 'public'::regnamespace and has_function_privilege('authenticated', p.oid, 'execute')$$,
    $$values ('accept_invitation'), ('authorize_generation'), ('authorize_project'), ('cancel_generation'),
    ('cancellable_generation'), ('change_member_role'), ('create_generation'), ('create_team'), ('invite_member'), ('leave_team'),
    ('link_project_team'), ('list_pending_invitations'), ('list_team_members'), ('my_credit_summary'),
    ('project_usage'), ('remove_member'), ('revoke_invitation'), ('share_generation'), ('team_permissions'),
    ('team_usage'), ('transfer_team_ownership'), ('unlink_project_team'), ('unshare_generation'),
    ('rotate_webhook_secret'), ('set_generation_webhook'), ('webhook_secret_info')$$,
    'authenticated executes exactly the user RPCs'
);
select set_eq(
    $$select p.proname::text from pg_catalog.pg_proc as p
    where p.pronamespace = 'public'::regnamespace and has_function_privilege('service_role', p.oid, 'execute')$$,
    $$values ('fal_circuit_allows'), ('generations_awaiting_fal'), ('grant_credits'), ('model_stats'),
    ('record_fal_outcome'), ('record_generation_progress'), ('refresh_analytics'), ('refund_generation'),
    ('record_generation_media'), ('record_fal_cancellation')$$,
    'service_role executes exactly the system RPCs'
);
select set_eq(
    $$select p.proname::text from pg_catalog.pg_proc as p
    where p.pronamespace = 'private'::regnamespace and has_function_privilege('authenticated', p.oid, 'execute')$$,
    $$values ('is_active_user'), ('team_ids_for_caller'), ('project_ids_for_caller'),
    ('shared_generation_ids_for_caller'), ('feed_keys')$$,
    'authenticated executes only the policy helpers and the list''s keys in private (not raise_error)'
);
select is_empty(
    $$select p.oid::regprocedure::text from pg_catalog.pg_proc as p
    where p.pronamespace = 'public'::regnamespace and not p.prosecdef$$,
    'every public RPC is security definer (it checks the caller itself)'
);
select is_empty(
    $$select c.relname || '.' || t.tgname || ' -> ' || p.oid::regprocedure::text
    from pg_catalog.pg_trigger as t
    join pg_catalog.pg_class as c on c.oid = t.tgrelid
    join pg_catalog.pg_proc as p on p.oid = t.tgfoid
    where c.relnamespace = 'public'::regnamespace and not t.tgisinternal and not p.prosecdef
    and p.oid <> 'private.touch_updated_at()'::regprocedure$$,
    'every trigger on an exposed table runs as definer (but touch_updated_at, which only stamps a time):'
    ' an allowed write never fails on a helper the role cannot run'
);

-- indexes behind the policies and rules -----------------------------------------------------------------

select has_index('public', 'team_members', 'team_members_user_id_idx', 'members are indexed by user');
select has_index('public', 'team_members', 'team_members_one_owner_key', 'one owner per team is a unique index');
select has_index('public', 'project_teams', 'project_teams_team_id_idx', 'links are indexed by team');
select has_index('public', 'generation_shares', 'generation_shares_team_id_idx', 'shares are indexed by team');
-- the caller's projects and shares (the policies' helpers) are read from these indexes alone
select is(
    pg_catalog.pg_get_indexdef('public.project_teams_team_id_idx'::regclass),
    'CREATE INDEX project_teams_team_id_idx ON public.project_teams USING btree (team_id, project_id)'
    || ' INCLUDE (access_level)',
    'links by team carry their access level'
);
select is(
    pg_catalog.pg_get_indexdef('public.generation_shares_team_id_idx'::regclass),
    'CREATE INDEX generation_shares_team_id_idx ON public.generation_shares USING btree'
    || ' (team_id, generation_created_at DESC, generation_id DESC) INCLUDE (role)',
    'shares by team carry their role, newest first'
);
select has_index('public', 'generations', 'generations_project_id_idx', 'generations are indexed by project');
select has_index('public', 'generations', 'generations_owner_id_idx', 'generations are indexed by owner');
select has_index('public', 'generations', 'generations_idempotency_key', 'the idempotency key is unique per owner');
select has_index('public', 'credit_ledger', 'credit_ledger_refund_of_key', 'a charge is refunded at most once');
select has_index('public', 'projects', 'projects_owner_id_idx', 'projects are indexed by owner');
select has_index(
    'public', 'generations', 'generations_public_feed_idx', 'the public feed has its own index'
);

-- triggers that keep the rules -------------------------------------------------------------------------

select has_trigger('auth', 'users', 'on_auth_user_created', 'every new auth user gets a profile');
select has_trigger(
    'public', 'generations', 'generations_copy_project_visibility', 'a generation copies its project''s publicity'
);
select has_trigger(
    'public', 'projects', 'projects_publish_visibility', 'a visibility change rewrites its generations'' copy'
);

select * from finish();
rollback;
