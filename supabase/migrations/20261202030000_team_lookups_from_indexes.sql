-- The caller's projects and shares read from indexes alone.
--
-- private.project_ids_for_caller() and private.shared_generation_ids_for_caller() find a
-- user's teams, then each team's project links and shares, keeping those whose role
-- (least(member role, link or share role)) reaches the minimum. The by-team indexes held
-- the ids but not the link's access_level or the share's role, so every link and share was
-- read from the table as well. The policies run these helpers once per scanned table, and
-- a first page of the default list scans generations four times, so those reads added up.
-- With the roles in the indexes, these lookups need only index-only scans.

drop index public.project_teams_team_id_idx;
create index project_teams_team_id_idx on public.project_teams (team_id, project_id)
include (access_level);

drop index public.generation_shares_team_id_idx;
create index generation_shares_team_id_idx on public.generation_shares (team_id, generation_id)
include (role);
