-- The first page of the caller's visible generations, as a client sends it through
-- PostgREST: no filter at all, row-level security decides what is visible.
select
    g.id,
    g.owner_id,
    g.project_id,
    g.model_id,
    g.title,
    g.status,
    g.created_at
from public.generations as g
order by g.created_at desc, g.id desc
limit 50
