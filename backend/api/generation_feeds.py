"""The two lists of generations, as statements whose cost does not grow with the table.

``mine`` (the default): what the caller created, what is in their projects and their teams'
projects, and what is shared with their teams. ``private.feed_keys`` chooses the keys of the
page, reading about a page of index entries however large those sources grow (its migration
says how); the statement fetches those rows by primary key. It asks for them as
``id = any(array(...))``, which the planner answers with index probes: with ``id in (...)``
it hash-joined a sequential scan of a small table, not knowing how few keys come back.

``public``: every generation of a public project, newest first, from its partial index.

Both run as the caller: row-level security still decides every row returned; these
statements only choose which rows to ask for.
"""

from __future__ import annotations

from backend.http.pagination import Page

FILTERS = {
    "project_id": "project_id = %s",
    "status": "status = %s::public.generation_status",
    "model_id": "model_id = %s",
}

MINE = """
select {columns}
from public.generations
where id = any(array(
    select page.id
    from private.feed_keys(
        p_limit => %s,
        p_before_created_at => %s,
        p_before_id => %s,
        p_project_id => %s,
        p_status => %s::public.generation_status,
        p_model_id => %s
    ) as page
))
order by created_at desc, id desc
"""

PUBLIC = """
select {columns}
from public.generations
where project_is_public and {match}
order by created_at desc, id desc
limit %s
"""


def statement(scope: str, columns: str, page: Page, args: dict) -> tuple[str, tuple]:
    """The SQL and parameters of one page of a feed, filtered by args."""
    if scope == "public":
        names = [name for name in FILTERS if name in args]
        match = " and ".join([page.where_sql(), *(FILTERS[name] for name in names)])
        params = (*page.where_params(), *(args[name] for name in names), page.fetch_size)
        return PUBLIC.format(columns=columns, match=match), params
    before = page.after or (None, None)
    filters = (args.get("project_id"), args.get("status"), args.get("model_id"))
    return MINE.format(columns=columns), (page.fetch_size, *before, *filters)
