"""The two lists of generations, as statements whose cost does not grow with the table.

``mine`` (the default): what the caller created, what is in their projects and their teams'
projects, and what is shared with their teams. Each of those sources is read newest first
from its own index, at most one page from each, and the pages are merged: a first page
costs (number of sources) x (page size) index entries, however many generations exist.
Shares are probed one by one (a lateral subquery with a limit, which the planner cannot
turn into a join that scans the table).

``public``: every generation of a public project, newest first, from its partial index.

Both run as the caller: row-level security still decides what each scan may return; these
statements only choose which index to walk. ``match`` is the page's keyset condition and
the caller's filters, over unqualified generation columns, applied inside every source.
"""

from __future__ import annotations

from backend.http.pagination import Page

FILTERS = {
    "project_id": "project_id = %s",
    "status": "status = %s::public.generation_status",
    "model_id": "model_id = %s",
}

# created_at and id are the page key: every source yields them, the merge orders by them.
# A generation can come from up to three sources (its creator, its project, a share), so
# the merge keeps three pages of candidates before folding duplicates into one page.
SOURCES = 3
MINE = """
select {columns}
from public.generations
where id in (
    select newest.id
    from (
        select candidate.created_at, candidate.id
        from (
            (
                select created_at, id
                from public.generations
                where owner_id = (select auth.uid()) and {match}
                order by created_at desc, id desc
                limit %s
            )
            union all
            (
                select project_page.created_at, project_page.id
                from private.project_ids_for_caller() as source (project_id)
                cross join lateral (
                    select created_at, id
                    from public.generations
                    where project_id = source.project_id and {match}
                    order by created_at desc, id desc
                    limit %s
                ) as project_page
            )
            union all
            (
                select shared.created_at, shared.id
                from private.shared_generation_ids_for_caller() as share (generation_id)
                cross join lateral (
                    select created_at, id
                    from public.generations
                    where id = share.generation_id and {match}
                    limit 1
                ) as shared
                order by shared.created_at desc, shared.id desc
                limit %s
            )
        ) as candidate
        order by candidate.created_at desc, candidate.id desc
        limit %s
    ) as newest
    group by newest.created_at, newest.id
    order by newest.created_at desc, newest.id desc
    limit %s
)
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
    names = [name for name in FILTERS if name in args]
    match = " and ".join([page.where_sql(), *(FILTERS[name] for name in names)])
    match_params = (*page.where_params(), *(args[name] for name in names))
    if scope == "public":
        sql = PUBLIC.format(columns=columns, match=match)
        return sql, (*match_params, page.fetch_size)
    sql = MINE.format(columns=columns, match=match)
    per_source = (*match_params, page.fetch_size)
    merged = (SOURCES * page.fetch_size, page.fetch_size)
    return sql, (*per_source, *per_source, *per_source, *merged)
