-- Everything the caller may read, counted through RLS: with thousands of public projects,
-- the per-row cost of the policy is what this measures.
select count(*) from public.generations
