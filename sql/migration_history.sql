-- The migration history table, created exactly as `supabase db push` (CLI 2.117.0) creates
-- it, so that the CLI and backend/migrations.py each see what the other applied.
set local lock_timeout = '4s';
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (version text not null primary key);
alter table supabase_migrations.schema_migrations add column if not exists statements text[];
alter table supabase_migrations.schema_migrations add column if not exists name text;
