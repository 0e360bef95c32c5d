"""First pages of both lists of generations: through RLS vs written out as the service role.

Subject: the list route's own statement for a default first page of 20 (bench/queries.py), as
`authenticated` with the user's claims; the policy decides what each scan may return.
- `list_page`: the default list (own, team and shared work), its keys chosen by
  `private.feed_keys()` and fetched by primary key;
- `public_page`: the public feed, from its partial index.
Baseline: the same page as `service_role` (which bypasses RLS) with the policy's rule
written out (bench/queries/*_explicit.sql). Both are one round trip. Before timing, both
must return the same rows for every sampled user.
"""

from __future__ import annotations

import psycopg

from bench import explain
from bench.measure import interleaved
from bench.postgrest import SERVICE_CLAIMS, Caller, user_claims
from bench.stats import ratio, summarize

TARGET = 1.5  # the RLS page at most 1.5x the explicit one
PLAN_WARMUP = 6  # runs before EXPLAIN, so it shows the plan the timed runs used (cached)


# feed -> (subject statement, baseline statement, whether the baseline takes the user id)
FEEDS = {
    "list_page": ("list_page_rls", "list_page_explicit", True),
    "public_page": ("public_page_rls", "public_page_explicit", False),
}


def users(url: str, count: int) -> list[tuple[str, int]]:
    """Active users and how many generations their default list holds, most first."""
    with psycopg.connect(url) as conn:
        conn.execute("select setseed(0.8)")
        rows = conn.execute("select * from bench.list_users(%s)", (count,)).fetchall()
    return [(str(user), visible) for user, visible in rows]


def batches(caller: Caller, feed: str, user_ids: list[str]) -> tuple[list[str], list[str]]:
    subject, baseline, per_user = FEEDS[feed]
    through_rls = [
        caller.batch("authenticated", user_claims(user), caller.statement(subject))
        for user in user_ids
    ]
    written_out = [
        caller.batch(
            "service_role", SERVICE_CLAIMS, caller.statement(baseline, (user,) if per_user else ())
        )
        for user in user_ids
    ]
    return through_rls, written_out


def run(url: str, sampled: list[tuple[str, int]], iterations: int, feed: str = "list_page") -> dict:
    caller = Caller(url)
    try:
        subject, baseline = batches(caller, feed, [user for user, _ in sampled])
        differing = sum(
            caller.run(a)[0] != caller.run(b)[0] for a, b in zip(subject, baseline, strict=True)
        )
        took, base, _ = interleaved(caller, subject, baseline, iterations)
    finally:
        caller.close()
    measured, floor = summarize(took), summarize(base)
    visible = sorted(count for _, count in sampled)
    return {
        "subject": measured.as_dict(),
        "baseline": floor.as_dict(),
        "ratio": ratio(measured, floor, TARGET).as_dict(),
        "users": len(sampled),
        "visible_per_user": {
            "min": visible[0],
            "median": visible[len(visible) // 2],
            "max": visible[-1],
        },
        "pages_differing": differing,
    }


def measure(url: str, scale, verbose: bool) -> dict:
    """Both feeds for the same sampled users, each with the plans of the median user."""
    sampled = users(url, scale.list_users)
    median_user = sorted(sampled, key=lambda pair: pair[1])[len(sampled) // 2][0]
    out = {}
    for feed in FEEDS:
        figures = run(url, sampled, scale.list_iterations, feed)
        figures["plans"] = plans(url, feed, median_user)
        if verbose:
            for name, plan in figures["plans"].items():
                print(f"--- {feed} {name}\n" + "\n".join(plan))
        out[feed] = figures
    return out


def plans(url: str, feed: str, user_id: str) -> dict:
    """EXPLAIN ANALYZE of both pages for one user, after the warm-up runs that cache plans."""
    subject, baseline, per_user = FEEDS[feed]
    values = (user_id,) if per_user else ()
    caller = Caller(url)
    try:
        rls = caller.statement(subject)
        explicit = caller.statement(baseline, values)
        for _ in range(PLAN_WARMUP):
            caller.run(caller.batch("authenticated", user_claims(user_id), rls))
            caller.run(caller.batch("service_role", SERVICE_CLAIMS, explicit))
        return {
            "through_rls": explain.analyze_plan(
                caller, "authenticated", user_claims(user_id), subject
            ),
            "explicit": explain.analyze_plan(
                caller, "service_role", SERVICE_CLAIMS, baseline, values
            ),
        }
    finally:
        caller.close()
