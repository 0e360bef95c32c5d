"""Team membership (and an account's deletion, which takes its projects and their
teammates' work) under concurrency, with real connections acting as PostgREST does.

Every RPC that changes a team's members (role changes, transfers, removals, leaving,
invitations, acceptance) first locks the team's row, and inviting also share-locks the
inviter's profile. So two such calls on one team run one after the other, and the second
decides on what the first committed: a team never ends with zero or two owners, and an
invitation never outlives its inviter's authority. Each interleaving below holds the
first call's transaction open, starts the second on its own connection, waits until
Postgres reports it blocked on a lock, then commits the first.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from contextlib import closing

import psycopg
import pytest
from integrity import assert_sound
from interleaving import LOCK_WAIT_DEADLINE_SECONDS, interleave

ONE_OWNER_CHECK = "a team has exactly one owner"


@pytest.fixture(scope="module")
def db(database_factory, migrated_template) -> str:
    return database_factory(migrated_template)


def new_user(db: str, prefix: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    with psycopg.connect(db) as conn:
        conn.execute(
            "insert into auth.users (id, aud, role, email, email_confirmed_at, created_at)"
            " values (%s, 'authenticated', 'authenticated', %s, now(), now())",
            (user_id, f"{prefix}-{user_id.hex[:10]}@example.com"),
        )
    return user_id


def new_team(db: str, owner: uuid.UUID, members: dict[uuid.UUID, str]) -> uuid.UUID:
    team_id = uuid.uuid4()
    with psycopg.connect(db) as conn:
        conn.execute(
            "insert into public.teams (id, name, owner_id) values (%s, 'Race', %s)",
            (team_id, owner),
        )
        conn.execute(
            "insert into public.team_members (team_id, user_id, role) values (%s, %s, 'owner')",
            (team_id, owner),
        )
        for user_id, role in members.items():
            conn.execute(
                "insert into public.team_members (team_id, user_id, role) values (%s, %s, %s)",
                (team_id, user_id, role),
            )
    return team_id


def as_user(conn: psycopg.Connection, user_id: uuid.UUID) -> None:
    """Begin a transaction as PostgREST does for a request with this user's token."""
    claims = json.dumps({"sub": str(user_id), "role": "authenticated"})
    conn.execute(
        "select set_config('role', 'authenticated', true),"
        " set_config('request.jwt.claims', %s, true)",
        (claims,),
    )


def owners(db: str, team_id: uuid.UUID) -> tuple[list[uuid.UUID], uuid.UUID]:
    """The owner members and teams.owner_id."""
    with psycopg.connect(db) as conn:
        members = conn.execute(
            "select user_id from public.team_members where team_id = %s and role = 'owner'",
            (team_id,),
        ).fetchall()
        (owner_id,) = conn.execute(
            "select owner_id from public.teams where id = %s", (team_id,)
        ).fetchone()
    return [row[0] for row in members], owner_id


def assert_one_owner(db: str, team_id: uuid.UUID, expected: uuid.UUID) -> None:
    assert owners(db, team_id) == ([expected], expected)


def rpc(user_id: uuid.UUID, statement: str, *params):
    def call(conn: psycopg.Connection):
        as_user(conn, user_id)
        conn.execute(statement, params)

    return call


def sqlstate(error: Exception | None) -> str | None:
    return error.sqlstate if isinstance(error, psycopg.Error) else None


TRANSFER = "select public.transfer_team_ownership(%s, %s)"
REMOVE = "select public.remove_member(%s, %s)"
LEAVE = "select public.leave_team(%s)"
CHANGE_ROLE = "select public.change_member_role(%s, %s, %s)"
INVITE = "select public.invite_member(%s, %s, 'viewer')"


# ownership ---------------------------------------------------------------------------------


def test_two_concurrent_transfers_leave_exactly_one_owner(db):
    owner, first_heir, second_heir = (new_user(db, p) for p in ("owner", "heir", "heir2"))
    team = new_team(db, owner, {first_heir: "admin", second_heir: "editor"})
    error = interleave(
        db, rpc(owner, TRANSFER, team, first_heir), rpc(owner, TRANSFER, team, second_heir)
    )
    # the second transfer ran after the first had committed: its caller owned nothing then
    assert sqlstate(error) == "PT403"
    assert_one_owner(db, team, first_heir)


def test_a_removal_racing_a_transfer_to_the_same_member_cannot_remove_the_new_owner(db):
    owner, admin, heir = (new_user(db, p) for p in ("owner", "admin", "heir"))
    team = new_team(db, owner, {admin: "admin", heir: "editor"})
    error = interleave(db, rpc(owner, TRANSFER, team, heir), rpc(admin, REMOVE, team, heir))
    assert sqlstate(error) == "PT409"
    assert_one_owner(db, team, heir)


def test_a_transfer_racing_the_removal_of_its_heir_finds_no_member(db):
    owner, admin, heir = (new_user(db, p) for p in ("owner", "admin", "heir"))
    team = new_team(db, owner, {admin: "admin", heir: "editor"})
    error = interleave(db, rpc(admin, REMOVE, team, heir), rpc(owner, TRANSFER, team, heir))
    assert sqlstate(error) == "PT404"
    assert_one_owner(db, team, owner)


def test_an_heir_leaving_while_made_owner_stays_as_owner(db):
    owner, heir = new_user(db, "owner"), new_user(db, "heir")
    team = new_team(db, owner, {heir: "viewer"})
    error = interleave(db, rpc(owner, TRANSFER, team, heir), rpc(heir, LEAVE, team))
    assert sqlstate(error) == "PT409"
    assert_one_owner(db, team, heir)


def test_racing_membership_changes_never_leave_zero_or_two_owners(db):
    """Many trials of four callers at once: transfers, removals, leaving, role changes."""
    rng = random.Random(8)
    for trial in range(12):
        owner = new_user(db, "owner")
        members = [new_user(db, "member") for _ in range(4)]
        roles = dict(zip(members, ("admin", "admin", "editor", "viewer"), strict=True))
        team = new_team(db, owner, roles)
        everyone = [owner, *members]
        calls = [
            (owner, TRANSFER, (team, rng.choice(members))),
            (rng.choice(members[:2]), TRANSFER, (team, rng.choice(members))),
            (rng.choice(everyone), REMOVE, (team, rng.choice(members))),
            (rng.choice(members), LEAVE, (team,)),
            (rng.choice(everyone), CHANGE_ROLE, (team, rng.choice(members), "admin")),
        ]
        errors = race(db, calls)
        members_owning, owner_id = owners(db, team)
        assert members_owning == [owner_id], f"trial {trial}: {members_owning} vs {owner_id}"
        # refusals are the rules speaking (403, 404, 409), never a deadlock or the backstop
        assert all(error.sqlstate in ("PT403", "PT404", "PT409") for error in errors), errors
        assert not [e for e in errors if ONE_OWNER_CHECK in str(e)], errors
        # the team's history, written by triggers in each racing transaction, still gives
        # every membership its current role
        assert_sound(db, *everyone)


def race(db: str, calls: list[tuple]) -> list[psycopg.Error]:
    """Start every (user, statement, params) call at once, each on its own connection."""
    errors: list[psycopg.Error] = []
    start = threading.Barrier(len(calls))

    def attempt(user_id, statement, params):
        with closing(psycopg.connect(db)) as conn:
            start.wait()
            try:
                rpc(user_id, statement, *params)(conn)
                conn.commit()
            except psycopg.Error as error:
                conn.rollback()
                errors.append(error)

    threads = [threading.Thread(target=attempt, args=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LOCK_WAIT_DEADLINE_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a call never finished"
    return errors


# invitations and the inviter's authority -----------------------------------------------------


def pending_invitations(db: str, inviter: uuid.UUID) -> int:
    with psycopg.connect(db) as conn:
        (count,) = conn.execute(
            "select count(*) from public.invitations"
            " where invited_by = %s and accepted_at is null and revoked_at is null",
            (inviter,),
        ).fetchone()
    return count


def test_an_invitation_racing_the_inviters_demotion_is_revoked_with_it(db):
    owner, admin = new_user(db, "owner"), new_user(db, "admin")
    team = new_team(db, owner, {admin: "admin"})
    error = interleave(
        db,
        rpc(admin, INVITE, team, f"guest-{uuid.uuid4().hex[:8]}@example.com"),
        rpc(owner, CHANGE_ROLE, team, admin, "editor"),
    )
    assert error is None
    assert pending_invitations(db, admin) == 0


def test_an_invitation_after_the_inviters_demotion_is_refused(db):
    owner, admin = new_user(db, "owner"), new_user(db, "admin")
    team = new_team(db, owner, {admin: "admin"})
    error = interleave(
        db,
        rpc(owner, CHANGE_ROLE, team, admin, "editor"),
        rpc(admin, INVITE, team, f"guest-{uuid.uuid4().hex[:8]}@example.com"),
    )
    assert sqlstate(error) == "PT403"
    assert pending_invitations(db, admin) == 0


def test_an_invitation_racing_the_inviters_suspension_is_revoked_with_it(db):
    owner, admin = new_user(db, "owner"), new_user(db, "admin")
    team = new_team(db, owner, {admin: "admin"})

    def suspend(conn: psycopg.Connection):  # an operator, as the database owner
        conn.execute("update public.profiles set status = 'suspended' where id = %s", (admin,))

    error = interleave(
        db, rpc(admin, INVITE, team, f"guest-{uuid.uuid4().hex[:8]}@example.com"), suspend
    )
    assert error is None
    assert pending_invitations(db, admin) == 0


def test_two_invitations_racing_for_a_teams_last_pending_place_take_it_once(db):
    """The cap on pending invitations is a count checked before an insert: two invitations
    racing for the last place queue on the team's lock, and the second finds it taken."""
    owner, admin = new_user(db, "owner"), new_user(db, "admin")
    team = new_team(db, owner, {admin: "admin"})
    with psycopg.connect(db) as conn:
        conn.execute(
            "update private.settings set value = '1' where key = 'max_pending_invitations'"
        )
    try:
        error = interleave(
            db,
            rpc(admin, INVITE, team, f"first-{uuid.uuid4().hex[:8]}@example.com"),
            rpc(owner, INVITE, team, f"second-{uuid.uuid4().hex[:8]}@example.com"),
        )
    finally:
        with psycopg.connect(db) as conn:
            conn.execute(
                "update private.settings set value = '500' where key = 'max_pending_invitations'"
            )
    assert sqlstate(error) == "PT409"
    with psycopg.connect(db) as conn:
        (pending,) = conn.execute(
            "select count(*) from public.invitations where team_id = %s and revoked_at is null",
            (team,),
        ).fetchone()
    assert pending == 1


# project links and the team's bound on them ---------------------------------------------------

LINK = "select public.link_project_team(%s, %s, 'viewer')"


def new_project(db: str, owner: uuid.UUID) -> uuid.UUID:
    project_id = uuid.uuid4()
    with psycopg.connect(db) as conn:
        conn.execute(
            "insert into public.projects (id, name, owner_id) values (%s, 'Race', %s)",
            (project_id, owner),
        )
    return project_id


def links(db: str, team: uuid.UUID) -> int:
    with psycopg.connect(db) as conn:
        (count,) = conn.execute(
            "select count(*) from public.project_teams where team_id = %s", (team,)
        ).fetchone()
    return count


def max_project_links(db: str, value: int) -> None:
    with psycopg.connect(db) as conn:
        conn.execute(
            "update private.settings set value = to_jsonb(%s::integer)"
            " where key = 'max_project_links_per_team'",
            (value,),
        )


def test_two_links_racing_for_a_teams_last_place_take_it_once(db):
    """The cap on a team's project links is a count checked before an insert: two owners
    linking their projects into the team's last place queue on the team's lock, and the
    second finds it taken (409), not a second link past the bound."""
    owner, first, second = (new_user(db, p) for p in ("owner", "first", "second"))
    team = new_team(db, owner, {first: "editor", second: "editor"})
    first_project, second_project = new_project(db, first), new_project(db, second)
    max_project_links(db, 1)
    try:
        error = interleave(
            db, rpc(first, LINK, first_project, team), rpc(second, LINK, second_project, team)
        )
    finally:
        max_project_links(db, 1000)
    assert sqlstate(error) == "PT409", error
    assert "unlink some" in str(error)
    assert links(db, team) == 1


def test_many_links_racing_for_a_teams_last_places_never_pass_the_bound(db):
    """Owners of two teams' worth of projects link them into one team at once: exactly as
    many as there are places win, every other is refused with 409, never a deadlock or a
    duplicate key."""
    owner = new_user(db, "owner")
    linkers = [new_user(db, f"linker{i}") for i in range(8)]
    team = new_team(db, owner, dict.fromkeys(linkers, "editor"))
    other_team = new_team(db, owner, dict.fromkeys(linkers, "editor"))
    calls = []
    for linker in linkers:
        for target in (team, other_team):
            calls.append((linker, LINK, (new_project(db, linker), target)))
    random.shuffle(calls)
    max_project_links(db, 3)
    try:
        errors = race(db, calls)
    finally:
        max_project_links(db, 1000)
    assert [sqlstate(error) for error in errors] == ["PT409"] * (len(calls) - 6), errors
    assert (links(db, team), links(db, other_team)) == (3, 3)


def invited(db: str, owner: uuid.UUID, team: uuid.UUID, guest: uuid.UUID) -> dict:
    """The owner's committed invitation of the guest's address to the team (id and token)."""
    with psycopg.connect(db) as conn:
        (guest_email,) = conn.execute(
            "select email from auth.users where id = %s", (guest,)
        ).fetchone()
    with closing(psycopg.connect(db)) as conn:
        as_user(conn, owner)
        (invitation,) = conn.execute(INVITE, (team, guest_email)).fetchone()
        conn.commit()
    return invitation


def test_acceptance_racing_a_revocation_either_joins_or_is_gone(db):
    owner, guest = new_user(db, "owner"), new_user(db, "guest")
    team = new_team(db, owner, {})
    invitation = invited(db, owner, team, guest)

    revoke = rpc(
        owner, "select public.revoke_invitation(%s, %s)", team, invitation["invitation_id"]
    )
    accept = rpc(guest, "select public.accept_invitation(%s)", invitation["token"])
    error = interleave(db, revoke, accept)
    assert sqlstate(error) == "PT410"
    with psycopg.connect(db) as conn:
        joined = conn.execute(
            "select 1 from public.team_members where team_id = %s and user_id = %s", (team, guest)
        ).fetchall()
    assert joined == []


def test_an_invitation_that_expires_while_its_acceptance_waits_is_refused(db):
    """Acceptance waits for the team's lock behind another membership change, and the
    invitation expires meanwhile: its expiry is judged when the lock is held, not when the
    transaction (or the statement) began."""
    owner, guest = new_user(db, "owner"), new_user(db, "guest")
    team = new_team(db, owner, {})
    invitation = invited(db, owner, team, guest)
    with psycopg.connect(db) as conn:
        conn.execute(
            "update public.invitations set expires_at = clock_timestamp() + interval '1 second'"
            " where id = %s",
            (invitation["invitation_id"],),
        )

    other_invitation = rpc(owner, INVITE, team, f"other-{uuid.uuid4().hex[:8]}@example.com")
    accept = rpc(guest, "select public.accept_invitation(%s)", invitation["token"])
    error = interleave(db, other_invitation, accept, hold_seconds=1.5)
    assert sqlstate(error) == "PT410", error
    assert "this invitation has expired" in str(error)
    with psycopg.connect(db) as conn:
        joined = conn.execute(
            "select 1 from public.team_members where team_id = %s and user_id = %s", (team, guest)
        ).fetchall()
    assert joined == []


# account deletion ----------------------------------------------------------------------------


def test_an_account_deleted_while_a_teammate_starts_work_in_its_project_is_deleted(db):
    """A teammate's generation in the owner's project is uncommitted when the owner's account
    is deleted: the deletion waits for it, then cancels and refunds it with the rest, instead
    of failing on a charged generation in flight it did not see when it cancelled."""
    owner, editor, project_id = owner_and_editor_of_a_project(db)
    start = balance(db, editor)
    error = interleave(db, new_work(editor, project_id), account_deletion(owner))
    assert error is None, error
    assert balance(db, editor) == start
    with psycopg.connect(db) as conn:
        assert (
            conn.execute("select 1 from public.projects where id = %s", (project_id,)).fetchall()
            == []
        )


def test_work_started_in_a_project_whose_owner_is_being_deleted_finds_it_gone(db):
    owner, editor, project_id = owner_and_editor_of_a_project(db)
    start = balance(db, editor)
    error = interleave(db, account_deletion(owner), new_work(editor, project_id))
    assert sqlstate(error) == "23503"  # the API's 400 invalid_reference: the project is gone
    assert balance(db, editor) == start


def new_work(editor: uuid.UUID, project_id: uuid.UUID):
    return rpc(
        editor,
        "select id from public.create_generation(p_model_id => %s, p_prompt => %s,"
        " p_idempotency_key => %s, p_project_id => %s)",
        "fal-ai/flux-pro/v1.1-ultra",
        "a fox",
        "k1",
        project_id,
    )


def balance(db: str, user_id: uuid.UUID) -> int:
    with psycopg.connect(db) as conn:
        (credits,) = conn.execute(
            "select credits from public.profiles where id = %s", (user_id,)
        ).fetchone()
    return credits


def account_deletion(user_id: uuid.UUID):
    def delete(conn: psycopg.Connection):
        conn.execute("delete from auth.users where id = %s", (user_id,))

    return delete


def owner_and_editor_of_a_project(db: str) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """An owner, and an editor with credits who may add work to the owner's project (a team
    link at editor level): (owner, editor, project)."""
    owner, editor = new_user(db, "leaving"), new_user(db, "staying")
    team_id = new_team(db, owner, {editor: "editor"})
    project_id = uuid.uuid4()
    with psycopg.connect(db) as conn:
        conn.execute(
            "insert into public.projects (id, owner_id, name, visibility)"
            " values (%s, %s, 'Race', 'team')",
            (project_id, owner),
        )
        conn.execute(
            "insert into public.project_teams (project_id, team_id, access_level, linked_by)"
            " values (%s, %s, 'editor', %s)",
            (project_id, team_id, owner),
        )
        conn.execute("select public.grant_credits(%s, 1000)", (editor,))
    return owner, editor, project_id
