-- The public feed's first page as the service role (no RLS): every generation of a public
-- project, newest first; 21 rows, as the route fetches a default page.
select
    id,
    owner_id,
    project_id,
    model_id,
    prompt,
    parameters,
    title,
    status,
    outputs,
    error,
    cost,
    created_at,
    updated_at,
    completed_at
from public.generations
where project_is_public
order by created_at desc, id desc
limit 21
