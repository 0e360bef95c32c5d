-- The seed history table, created exactly as `supabase db push --include-seed` creates it:
-- a seed file runs once; its hash is kept to tell a changed file from an applied one.
set local lock_timeout = '4s';
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.seed_files (path text not null primary key, hash text not null);
