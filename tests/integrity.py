"""The integrity audit, for tests that race or fault: what private.integrity_audit() reports
about the users a test made.

Test databases are shared by the tests of one process, and some tests write around the RPCs
on purpose (a balance set directly, say), so a test asks only about its own users: their
profiles, ledger lines, generations, shares of those generations, and their teams'
invitations.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

VIOLATIONS_OF_USERS = """
select a.* from private.integrity_audit() as a
where (a.subject_type = 'profile' and a.subject_id = any(%(users)s))
    or (a.subject_type = 'credit_ledger' and exists (
        select 1 from public.credit_ledger as l
        where l.id::text = a.subject_id and l.user_id::text = any(%(users)s)))
    or (a.subject_type = 'generation' and exists (
        select 1 from public.generations as g
        where g.id::text = a.subject_id and g.owner_id::text = any(%(users)s)))
    or (a.subject_type = 'generation_share' and exists (
        select 1 from public.generations as g
        where g.id::text = split_part(a.subject_id, '/', 1) and g.owner_id::text = any(%(users)s)))
    or (a.subject_type = 'invitation' and exists (
        select 1 from public.invitations as i join public.teams as t on i.team_id = t.id
        where i.id::text = a.subject_id and t.owner_id::text = any(%(users)s)))
    or (a.subject_type = 'team_member' and split_part(a.subject_id, '/', 2) = any(%(users)s))
    or (a.subject_type = 'team' and exists (
        select 1 from public.teams as t
        where t.id::text = a.subject_id and t.owner_id::text = any(%(users)s)))
"""


def violations_of(db_url: str, *user_ids) -> list[dict]:
    """Every invariant the audit finds broken for these users (ids or objects with .id)."""
    users = [str(getattr(user, "id", user)) for user in user_ids]
    with psycopg.connect(db_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(VIOLATIONS_OF_USERS, {"users": users})
        return cur.fetchall()


def assert_sound(db_url: str, *user_ids, setup_wrote_around: tuple[str, ...] = ()) -> None:
    """No invariant broken for these users; setup_wrote_around names the invariants a test's
    own setup breaks on purpose (rows inserted as the superuser, not through their RPC)."""
    violations = [
        row
        for row in violations_of(db_url, *user_ids)
        if row["invariant"] not in setup_wrote_around
    ]
    assert violations == [], "integrity audit:\n" + "\n".join(map(str, violations))
