"""Revocation under concurrency, with real connections interleaving their writes.

A member V keeps writing (``create_team``, which touches her own memberships) while an owner
revokes her access: removes her, demotes her, unlinks the project, makes it private, or
unshares a generation. Each path is tried as a fixed two-session interleaving (V's
transaction open across the owner's commit) and in a bounded stress loop. After each, V
must be denied, no call may fail with a unique violation, and the derived copy of project
publicity (generations.project_is_public) must equal its definition. The copy has its own
races: a generation written into a project while the project's visibility changes, in both
orders.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass

import psycopg
import pytest
from integrity import assert_sound
from psycopg.rows import dict_row

MODEL = "fal-ai/flux-pro/v1.1-ultra"
LOCK_WAIT_SECONDS = 10  # how long a session may take to either finish or queue on a lock
STRESS_TRIALS = 40


@pytest.fixture(scope="module")
def url(database_factory, migrated_template) -> str:
    return database_factory(migrated_template)


# sessions ------------------------------------------------------------------------------------


def as_user(conn: psycopg.Connection, user_id: uuid.UUID) -> None:
    """Open a transaction the way PostgREST does for a request carrying the user's token."""
    claims = json.dumps({"sub": str(user_id), "role": "authenticated", "aud": "authenticated"})
    conn.execute("set local role authenticated")
    conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))


def user_session(url: str, user_id: uuid.UUID) -> psycopg.Connection:
    conn = psycopg.connect(url, row_factory=dict_row)
    as_user(conn, user_id)
    return conn


def call_as(url: str, user_id: uuid.UUID, statement: str, params=()) -> list[dict]:
    """One committed request of a user."""
    with user_session(url, user_id) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def superuser(url: str, statement: str, params=()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def backend_pid(conn: psycopg.Connection) -> int:
    return conn.info.backend_pid


def waits_on_a_lock(url: str, pid: int) -> bool:
    rows = superuser(url, "select wait_event_type from pg_stat_activity where pid = %s", (pid,))
    return bool(rows) and rows[0][0] == "Lock"


class Background:
    """A statement run in its own transaction on a thread, committed when it returns."""

    def __init__(self, url: str, user_id: uuid.UUID | None, statement: str, params=()):
        self.conn = (
            user_session(url, user_id) if user_id else psycopg.connect(url, row_factory=dict_row)
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(statement, params), daemon=True)

    def _run(self, statement: str, params) -> None:
        try:
            self.conn.execute(statement, params)
            self.conn.commit()
        except psycopg.Error as error:
            self.error = error
            self.conn.rollback()

    def start_and_settle(self, url: str) -> None:
        """Start, then wait until it has committed or is queued behind another's lock."""
        pid = backend_pid(self.conn)
        self.thread.start()
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while self.thread.is_alive() and not waits_on_a_lock(url, pid):
            if time.monotonic() > deadline:
                raise AssertionError("the background session neither finished nor waited on a lock")
            time.sleep(0.01)

    def finish(self) -> BaseException | None:
        self.thread.join(LOCK_WAIT_SECONDS)
        assert not self.thread.is_alive(), "the background session is still running"
        self.conn.close()
        return self.error


# the world: owner O, victim V in O's team T, O's project P linked to T, generations in P ------


@dataclass
class World:
    owner: uuid.UUID
    victim: uuid.UUID
    team: uuid.UUID
    project: uuid.UUID
    generation: uuid.UUID  # in P, made by O
    shared: uuid.UUID  # outside any project, made by O, shared with T


def new_user(url: str, label: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    superuser(
        url,
        "insert into auth.users (id, aud, role, email, encrypted_password, email_confirmed_at,"
        " raw_app_meta_data, raw_user_meta_data, created_at, updated_at)"
        " values (%s, 'authenticated', 'authenticated', %s, '', now(), '{}', '{}', now(), now())",
        (user_id, f"{label}-{user_id.hex[:8]}@velro.test"),
    )
    return user_id


def build_world(url: str, victim_role: str = "admin", link_level: str = "admin") -> World:
    owner, victim = new_user(url, "owner"), new_user(url, "victim")
    team, project = uuid.uuid4(), uuid.uuid4()
    generation, shared = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "insert into public.teams (id, name, owner_id) values (%s, 'T', %s)", (team, owner)
        )
        conn.execute(
            "insert into public.team_members (team_id, user_id, role)"
            " values (%s, %s, 'owner'), (%s, %s, %s)",
            (team, owner, team, victim, victim_role),
        )
        conn.execute(
            "insert into public.projects (id, owner_id, name, visibility)"
            " values (%s, %s, 'P', 'team')",
            (project, owner),
        )
        conn.execute(
            "insert into public.project_teams (project_id, team_id, access_level)"
            " values (%s, %s, %s)",
            (project, team, link_level),
        )
        conn.execute(
            # finished work: a charged generation in flight may not be deleted at all
            "insert into public.generations (id, owner_id, project_id, model_id, prompt, cost,"
            " idempotency_key, status)"
            " values (%s, %s, %s, %s, 'g', 50, %s, 'completed'),"
            " (%s, %s, null, %s, 's', 50, %s, 'completed')",
            (
                generation,
                owner,
                project,
                MODEL,
                f"g-{generation}",
                shared,
                owner,
                MODEL,
                f"s-{shared}",
            ),
        )
        conn.execute(
            "insert into public.generation_shares (generation_id, team_id, role)"
            " values (%s, %s, 'admin')",
            (shared, team),
        )
    return World(owner, victim, team, project, generation, shared)


# the revoking paths: the owner's request, and what V must hold afterwards ---------------------


@dataclass(frozen=True)
class Revocation:
    statement: str  # run as the owner; {team}, {victim}, {project}, {shared} are filled in
    target: str  # which generation V loses: "generation" or "shared"
    role_after: str | None  # V's effective role afterwards; None: no access at all


REVOCATIONS = {
    "remove member": Revocation(
        "select public.remove_member('{team}', '{victim}')", "generation", None
    ),
    "demote member": Revocation(
        "select public.change_member_role('{team}', '{victim}', 'viewer')", "generation", "viewer"
    ),
    "unlink project": Revocation(
        "select public.unlink_project_team('{project}', '{team}')", "generation", None
    ),
    "set project private": Revocation(
        "update public.projects set visibility = 'private' where id = '{project}'",
        "generation",
        None,
    ),
    "unshare generation": Revocation(
        "select public.unshare_generation('{shared}', '{team}')", "shared", None
    ),
}


def revoking_statement(path: str, world: World) -> str:
    return REVOCATIONS[path].statement.format(
        team=world.team, victim=world.victim, project=world.project, shared=world.shared
    )


def access_of(url: str, world: World, generation: uuid.UUID) -> dict:
    """What V is told, what RLS lets her read, and whether RLS lets her delete."""
    with user_session(url, world.victim) as conn:
        answer = conn.execute(
            "select public.authorize_generation(%s) as a", (generation,)
        ).fetchone()["a"]
        readable = conn.execute(
            "select count(*) as n from public.generations where id = %s", (generation,)
        ).fetchone()["n"]
        deletable = conn.execute(
            "delete from public.generations where id = %s returning id", (generation,)
        ).fetchall()
        conn.rollback()
    return {
        "role": answer["effective_role"],
        "readable": readable == 1,
        "deletable": bool(deletable),
    }


def assert_revoked(url: str, world: World, path: str) -> None:
    revocation = REVOCATIONS[path]
    generation = getattr(world, revocation.target)
    seen = access_of(url, world, generation)
    expected = {
        "role": revocation.role_after,
        "readable": revocation.role_after is not None,
        "deletable": False,
    }
    assert seen == expected, f"after '{path}' the revoked member still holds {seen}"


def drift(url: str) -> list[tuple]:
    return superuser(url, "select * from private.check_access()")


# deterministic interleavings -------------------------------------------------------------------


@pytest.mark.parametrize("path", list(REVOCATIONS))
def test_a_revocation_committed_while_the_member_writes_holds(url, path):
    world = build_world(url)
    assert access_of(url, world, getattr(world, REVOCATIONS[path].target))["deletable"]

    victim = user_session(url, world.victim)
    victim.execute("select public.create_team('decoy')")  # left open
    owner = Background(url, world.owner, revoking_statement(path, world))
    owner.start_and_settle(url)
    victim.commit()
    victim.close()

    assert owner.finish() is None
    assert_revoked(url, world, path)
    assert drift(url) == []


def test_two_overlapping_create_team_by_one_user_both_succeed(url):
    world = build_world(url)
    first = user_session(url, world.victim)
    first.execute("select public.create_team('one')")
    second = Background(url, world.victim, "select public.create_team('two')")
    second.start_and_settle(url)
    first.commit()
    first.close()
    assert second.finish() is None
    teams = call_as(
        url,
        world.victim,
        "select name from public.teams where owner_id = %s order by name",
        (world.victim,),
    )
    assert [t["name"] for t in teams] == ["one", "two"]


# stress: the member loops on two connections while the owner revokes ---------------------------


def keep_writing(url: str, user_id: uuid.UUID, stop: threading.Event, errors: list) -> None:
    """V's own writes, one transaction each, until told to stop."""
    with psycopg.connect(url) as conn:
        while not stop.is_set():
            try:
                as_user(conn, user_id)
                conn.execute("select public.create_team('decoy')")
                conn.commit()
            except psycopg.Error as error:
                conn.rollback()
                errors.append(error)


def run_trial(url: str, path: str, rng: random.Random) -> list:
    world = build_world(url)
    stop, errors = threading.Event(), []
    writers = [
        threading.Thread(target=keep_writing, args=(url, world.victim, stop, errors), daemon=True)
        for _ in range(2)
    ]
    for writer in writers:
        writer.start()
    time.sleep(rng.uniform(0, 0.02))
    try:
        call_as(url, world.owner, revoking_statement(path, world))
    except psycopg.Error as error:
        errors.append(error)
    stop.set()
    for writer in writers:
        writer.join(LOCK_WAIT_SECONDS)
    assert_revoked(url, world, path)
    return errors


def test_stress_revocations_racing_the_members_own_writes(url):
    rng = random.Random(7)
    paths = list(REVOCATIONS)
    failures = []
    for trial in range(STRESS_TRIALS):
        path = paths[trial % len(paths)]
        failures += [(path, error) for error in run_trial(url, path, rng)]
        assert drift(url) == [], f"derived access state drifted after trial {trial} ({path})"
    assert failures == [], f"calls failed while racing: {failures[:3]}"


# the copy of project publicity: a generation written while its project changes visibility -------


def create_generation_statement(world: World) -> tuple[str, tuple]:
    return (
        "select public.create_generation(%s, 'raced', %s, %s)",
        (MODEL, f"raced-{uuid.uuid4()}", world.project),
    )


def set_visibility_statement(world: World, visibility: str) -> tuple[str, tuple]:
    return ("update public.projects set visibility = %s where id = %s", (visibility, world.project))


def prepare_race(url: str, start_public: bool) -> tuple[World, str]:
    world = build_world(url)
    superuser(url, "select private.move_credits(%s, 'grant', 500)", (world.owner,))
    start, end = ("public", "team") if start_public else ("team", "public")
    superuser(
        url, "update public.projects set visibility = %s where id = %s", (start, world.project)
    )
    return world, end


def public_copy_matches(url: str, world: World, expected: bool) -> None:
    rows = superuser(
        url,
        "select project_is_public from public.generations where project_id = %s",
        (world.project,),
    )
    assert rows and all(public is expected for (public,) in rows), rows
    assert drift(url) == []


@pytest.mark.parametrize("start_public", [True, False], ids=["public->team", "team->public"])
def test_insert_first_then_visibility_change(url, start_public):
    world, end = prepare_race(url, start_public)
    writer = user_session(url, world.owner)
    writer.execute(*create_generation_statement(world))  # left open
    change = Background(url, world.owner, *set_visibility_statement(world, end))
    change.start_and_settle(url)
    writer.commit()
    writer.close()
    assert change.finish() is None
    public_copy_matches(url, world, end == "public")


@pytest.mark.parametrize("start_public", [True, False], ids=["public->team", "team->public"])
def test_visibility_change_first_then_insert(url, start_public):
    world, end = prepare_race(url, start_public)
    change = user_session(url, world.owner)
    change.execute(*set_visibility_statement(world, end))  # left open
    writer = Background(url, world.owner, *create_generation_statement(world))
    writer.start_and_settle(url)
    change.commit()
    change.close()
    assert writer.finish() is None
    public_copy_matches(url, world, end == "public")


def test_stress_inserts_racing_visibility_flips(url):
    world, _ = prepare_race(url, start_public=False)
    superuser(url, "select private.move_credits(%s, 'grant', 100000)", (world.owner,))
    stop, errors = threading.Event(), []

    def keep_creating() -> None:
        with psycopg.connect(url) as conn:
            while not stop.is_set():
                try:
                    as_user(conn, world.owner)
                    conn.execute(*create_generation_statement(world))
                    conn.commit()
                except psycopg.Error as error:
                    conn.rollback()
                    errors.append(error)

    creators = [threading.Thread(target=keep_creating, daemon=True) for _ in range(2)]
    for creator in creators:
        creator.start()
    for flip in range(STRESS_TRIALS):
        call_as(url, world.owner, *set_visibility_statement(world, ("public", "team")[flip % 2]))
    stop.set()
    for creator in creators:
        creator.join(LOCK_WAIT_SECONDS)
    assert errors == []
    public_copy_matches(url, world, expected=False)
    # the world's shares are inserted directly, so they have no audit event
    assert_sound(url, world.owner, setup_wrote_around=("every share is audited",))
