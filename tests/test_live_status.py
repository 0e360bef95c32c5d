"""Live status: Server-Sent Events driven by Postgres notifications, and Prefer: wait.

A real HTTP server serves the app; the worker's status changes are made with the service
role's RPC, as the worker makes them, on their own connections."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest
import requests
from media_support import running_world

from backend.api import generations
from backend.cache import EXTENSION as CACHE
from backend.cache.listener import CHANNEL as INVALIDATION_CHANNEL
from backend.cache.listener import EXTENSION as LISTENER
from backend.live import EXTENSION as LIVE
from backend.live import routes as live_routes


@pytest.fixture(scope="module")
def world(database_factory, migrated_template, tmp_path_factory):
    with running_world(
        database_factory(migrated_template),
        str(tmp_path_factory.mktemp("media")),
        LIVE_MAX_PER_USER=4,  # several streams of one user on one generation
    ) as running:
        yield running


@pytest.fixture
def owner(world):
    user = world.api.user("live")
    world.api.grant_credits(user, 1000)
    return user


class Stream:
    """Reads an event stream in a thread; ``events`` are (event, id, data) tuples."""

    def __init__(self, url: str, token: str, last_event_id: str | None = None):
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.response = requests.get(url, headers=headers, stream=True, timeout=30)
        self.events: list[tuple] = []
        self.arrived = threading.Condition()
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        event = {}
        for line in self.response.iter_lines(decode_unicode=True):
            if line == "":
                if "event" in event:
                    with self.arrived:
                        self.events.append(
                            (event["event"], event.get("id"), json.loads(event["data"]))
                        )
                        self.arrived.notify_all()
                event = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                event[name] = value
        self.ended.set()

    def wait_for(self, count: int) -> list[tuple]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.events) >= count, 30), self.events
        return self.events[:count]


def refused_stream(world, generation, user) -> requests.Response:
    """An event stream request expected to be answered at once (refused, not streamed)."""
    headers = {"Authorization": f"Bearer {user.access_token}"}
    return requests.get(events_url(world, generation), headers=headers, timeout=10)


def events_url(world, generation) -> str:
    return f"{world.url}/api/v1/generations/{generation['id']}/events"


def test_every_transition_arrives_once_in_order_and_the_stream_ends(world, owner):
    generation = world.api.generation(owner)
    stream = Stream(events_url(world, generation), owner.access_token)
    assert stream.wait_for(1)[0][:2] == ("status", "pending")
    # back to back, as webhooks may come; then late and duplicate ones that change nothing
    world.advance(generation["id"], "queued", "req-live-1")
    world.advance(generation["id"], "processing")
    world.advance(generation["id"], "completed", outputs={"images": []})
    world.advance(generation["id"], "completed")
    world.advance(generation["id"], "failed")
    assert stream.ended.wait(30), "the stream did not end after the final status"
    assert [(event, status) for event, status, _ in stream.events] == [
        ("status", "pending"),
        ("status", "queued"),
        ("status", "processing"),
        ("status", "completed"),
    ]
    assert [data["status"] for _, _, data in stream.events] == [
        "pending",
        "queued",
        "processing",
        "completed",
    ]
    assert stream.events[-1][2]["id"] == generation["id"]


def test_concurrent_writers_and_streams_each_see_every_transition_once(world, owner):
    """Several streams on one generation, and writers on their own connections racing to
    move it forward (each transition attempted by two writers at once)."""
    generation = world.api.generation(owner)
    streams = [Stream(events_url(world, generation), owner.access_token) for _ in range(2)]
    for stream in streams:
        stream.wait_for(1)

    def write(status):
        with psycopg.connect(world.db_url) as conn:
            conn.execute("select set_config('role', 'service_role', true)")
            conn.execute(
                "select public.record_generation_progress(%s, %s::public.generation_status)",
                (generation["id"], status),
            )

    for status in ("queued", "processing", "completed"):
        writers = [threading.Thread(target=write, args=(status,)) for _ in range(2)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
    for stream in streams:
        assert stream.ended.wait(30)
        assert [status for _, status, _ in stream.events] == [
            "pending",
            "queued",
            "processing",
            "completed",
        ]


def test_a_reconnecting_client_gets_only_what_it_has_not_seen(world, owner):
    generation = world.api.generation(owner)
    world.advance(generation["id"], "queued", "req-live-2")
    stream = Stream(events_url(world, generation), owner.access_token, last_event_id="queued")
    world.advance(generation["id"], "processing")
    world.advance(generation["id"], "completed")
    assert stream.ended.wait(30)
    assert [status for _, status, _ in stream.events] == ["processing", "completed"]


def test_a_finished_generation_streams_its_state_and_ends(world, owner):
    generation = world.api.generation(owner)
    world.advance(generation["id"], "failed")
    stream = Stream(events_url(world, generation), owner.access_token)
    assert stream.ended.wait(30)
    assert [status for _, status, _ in stream.events] == ["failed"]


def test_only_readers_may_follow(world, owner):
    generation = world.api.generation(owner)
    stranger = world.api.user("stranger")
    response = refused_stream(world, generation, stranger)
    assert (response.status_code, response.json()["error"]) == (404, "not_found")
    assert requests.get(events_url(world, generation), timeout=10).status_code == 401


# Prefer: wait ------------------------------------------------------------------------------


def created_with(world, owner, prefer: str, key: str):
    return world.api.call(
        "POST",
        "/api/v1/generations",
        owner,
        json={"model_id": "fal-ai/flux-pro/v1.1-ultra", "prompt": "a waiting fox"},
        headers={"Prefer": prefer, "Idempotency-Key": key},
    )


def once_followed(world, key: str, then) -> threading.Thread:
    """Calls ``then(generation_id)`` in a thread once a request of the app follows the
    generation made with ``key``."""
    listener = world.api.app.extensions[LIVE]

    def run():
        for _ in range(3000):
            rows = world.api.sql(
                "select id from public.generations where idempotency_key = %s", (key,)
            )
            if rows and listener.subscribers(rows[0]["id"]):
                then(rows[0]["id"])
                return
            time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def finish_once_followed(world, key: str, status: str = "completed"):
    """Completes the generation made with ``key`` once a request of the app follows it."""

    def finish(generation_id):
        world.advance(generation_id, "queued", f"req-{key}")
        world.advance(generation_id, status, outputs={"images": []})

    return once_followed(world, key, finish)


def test_prefer_wait_answers_with_the_finished_generation(world, owner):
    key = f"wait-{time.monotonic_ns()}"
    finisher = finish_once_followed(world, key)
    response = created_with(world, owner, "wait=30", key)
    finisher.join()
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "wait=30"
    assert response.get_json()["status"] == "completed"


def test_prefer_wait_answers_with_the_pending_generation_when_time_runs_out(world, owner):
    response = created_with(world, owner, "wait=1", f"late-{time.monotonic_ns()}")
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "wait=1"
    assert response.get_json()["status"] == "pending"


def test_a_wait_whose_session_ends_answers_with_what_it_created_and_charged(world, owner):
    """The caller logs out while the request waits, then the generation ends: the read that
    would answer with it is refused, but the generation exists and is charged, so the answer
    is the generation as last read (its id, so the client does not pay again), without
    Preference-Applied, never a 401."""
    key = f"logout-{time.monotonic_ns()}"

    def log_out_then_fail(generation_id):
        logout = requests.post(
            f"{world.url}/api/v1/auth/logout?scope=local",
            headers={"Authorization": f"Bearer {owner.access_token}"},
            timeout=10,
        )
        assert logout.status_code == 204
        world.advance(generation_id, "failed")

    follower = once_followed(world, key, log_out_then_fail)
    response = created_with(world, owner, "wait=30", key)
    follower.join()
    assert response.status_code == 201, response.get_json()
    assert "Preference-Applied" not in response.headers
    [charged] = world.api.sql(
        "select id, cost from public.generations where idempotency_key = %s", (key,)
    )
    body = response.get_json()
    assert (body["id"], body["status"], body["cost"]) == (str(charged["id"]), "pending", 50)
    assert world.api.call("GET", "/api/v1/auth/me", owner).status_code == 401


def test_a_wait_whose_read_meets_a_database_failure_answers_with_the_last_read(
    world, owner, monkeypatch
):
    """The database goes away as the generation ends: the same answer as after a logout."""
    read, reads = generations._read, []

    def read_then_fail(generation_id):
        reads.append(generation_id)
        if len(reads) > 1:
            raise psycopg.OperationalError("the server closed the connection unexpectedly")
        return read(generation_id)

    monkeypatch.setattr(generations, "_read", read_then_fail)
    key = f"hiccup-{time.monotonic_ns()}"
    finisher = finish_once_followed(world, key)
    response = created_with(world, owner, "wait=30", key)
    finisher.join()
    assert len(reads) == 2, "the generation was read after subscribing and once it ended"
    assert response.status_code == 201
    assert "Preference-Applied" not in response.headers
    assert response.get_json()["status"] == "pending"


@pytest.mark.parametrize(
    "prefer", ["wait=0", "wait=61", "wait=abc", "wait=", "wait=1.5", "wait=\u00b2"]
)
def test_a_bad_wait_is_a_400_and_nothing_is_written(world, owner, prefer):
    before = world.api.fingerprint()
    response = created_with(world, owner, prefer, f"bad-{time.monotonic_ns()}")
    assert response.status_code == 400
    assert "from 1 to 60" in response.get_json()["message"]
    assert world.api.fingerprint() == before


def test_other_preferences_are_ignored(world, owner):
    response = created_with(world, owner, "return=minimal", f"other-{time.monotonic_ns()}")
    assert response.status_code == 201
    assert "Preference-Applied" not in response.headers


def test_held_requests_are_bounded_per_process(database_factory, migrated_template, tmp_path):
    """With one live slot taken by a stream, another stream is a 503 and a Prefer: wait
    answers at once, without Preference-Applied: threads stay free for other requests."""
    with running_world(
        database_factory(migrated_template), str(tmp_path), LIVE_MAX_WAITERS=1, LIVE_MAX_PER_USER=2
    ) as small:
        owner = small.api.user("bounded")
        small.api.grant_credits(owner, 1000)
        generation = small.api.generation(owner)
        stream = Stream(events_url(small, generation), owner.access_token)
        stream.wait_for(1)
        second = refused_stream(small, generation, owner)
        assert (second.status_code, second.json()["error"]) == (503, "unavailable")
        response = created_with(small, owner, "wait=30", f"full-{time.monotonic_ns()}")
        assert response.status_code == 201
        assert "Preference-Applied" not in response.headers
        assert response.get_json()["status"] == "pending"
        small.advance(generation["id"], "failed")
        assert stream.ended.wait(30)


def test_one_user_holds_only_their_share_of_the_live_slots(
    database_factory, migrated_template, tmp_path
):
    """A user who opens stream after stream gets a 503 past their share (one by default),
    and the slots left are still there for everyone else; a stream reconnecting to the same
    generation (Last-Event-ID) replaces the older stream, a new one does not."""
    with running_world(
        database_factory(migrated_template), str(tmp_path), LIVE_MAX_WAITERS=3
    ) as small:
        greedy, other = small.api.user("greedy"), small.api.user("other")
        for user in (greedy, other):
            small.api.grant_credits(user, 1000)
        mine, also_mine = small.api.generation(greedy), small.api.generation(greedy)
        theirs = small.api.generation(other)
        first = Stream(events_url(small, mine), greedy.access_token)
        first.wait_for(1)
        second = refused_stream(small, also_mine, greedy)
        assert second.status_code == 503
        assert "you follow as many generations live" in second.json()["message"]
        response = created_with(small, greedy, "wait=30", f"greedy-{time.monotonic_ns()}")
        assert "Preference-Applied" not in response.headers  # no second slot for a wait either
        other_stream = Stream(events_url(small, theirs), other.access_token)
        other_stream.wait_for(1)
        # a reconnect to the generation the user follows already takes the older stream's
        # place at once (a dropped stream holds its slot until a keepalive write fails)
        reconnected = Stream(events_url(small, mine), greedy.access_token, last_event_id="pending")
        assert first.ended.wait(30), "the older stream ends"
        small.advance(also_mine["id"], "failed")
        for generation, stream in ((mine, reconnected), (theirs, other_stream)):
            small.advance(generation["id"], "failed")
            assert stream.ended.wait(30)
        assert [status for _, status, _ in reconnected.events] == ["failed"]
        # a new stream (no Last-Event-ID) does not take over: it is over the share
        fresh = small.api.generation(greedy)
        holder = Stream(events_url(small, fresh), greedy.access_token)
        holder.wait_for(1)
        again = refused_stream(small, fresh, greedy)
        assert again.status_code == 503
        assert not holder.ended.is_set()
        small.advance(fresh["id"], "failed")
        assert holder.ended.wait(30)


def test_a_logged_out_token_is_refused_before_it_touches_its_users_streams(
    database_factory, migrated_template, tmp_path
):
    """A token whose session was logged out (another session of the user streams on) gets
    401 before its stream subscribes: reconnecting (Last-Event-ID) to the generation the
    user follows does not take the live stream's place, and at the user's share (one) a new
    stream is a 401, not a 503."""
    with running_world(database_factory(migrated_template), str(tmp_path)) as small:
        victim = small.api.user("victim")
        small.api.grant_credits(victim, 1000)
        followed, other = small.api.generation(victim), small.api.generation(victim)
        login = {"email": victim.email, "password": victim.password}
        logged_out = small.api.ok("POST", "/api/v1/auth/login", json=login)["access_token"]
        small.api.ok("POST", "/api/v1/auth/logout?scope=local", logged_out, 204)
        stream = Stream(events_url(small, followed), victim.access_token)
        stream.wait_for(1)
        for generation, last_seen in ((followed, "pending"), (followed, ""), (other, None)):
            headers = {"Authorization": f"Bearer {logged_out}"}
            if last_seen is not None:
                headers["Last-Event-ID"] = last_seen
            response = requests.get(events_url(small, generation), headers=headers, timeout=20)
            assert (response.status_code, response.json()["error"]) == (401, "invalid_token")
        assert not stream.ended.is_set()
        small.advance(followed["id"], "queued", "req-victim")
        assert stream.wait_for(2)[1][:2] == ("status", "queued"), "the stream still runs"
        small.advance(followed["id"], "failed")
        assert stream.ended.wait(30)


def test_a_stream_survives_the_listeners_connection_being_killed(world, owner):
    """The listener reconnects and every follower reads the status again: what changed in
    the gap is not lost, nothing is sent twice, and the order holds."""
    generation = world.api.generation(owner)
    stream = Stream(events_url(world, generation), owner.access_token)
    stream.wait_for(1)
    killed = world.api.sql(
        "select pg_terminate_backend(pid) as killed from pg_stat_activity"
        " where application_name = 'velro-listener' and datname = current_database()"
    )
    assert [row["killed"] for row in killed] == [True]
    world.advance(generation["id"], "queued", "req-killed")
    world.advance(generation["id"], "processing")
    world.advance(generation["id"], "completed")
    assert stream.ended.wait(30)
    statuses = [status for _, status, _ in stream.events]
    assert statuses[0] == "pending" and statuses[-1] == "completed"
    order = ["pending", "queued", "processing", "completed"]
    assert [order.index(status) for status in statuses] == sorted(
        {order.index(status) for status in statuses}
    )


def test_closing_the_app_ends_its_streams(database_factory, migrated_template, tmp_path):
    with running_world(database_factory(migrated_template), str(tmp_path)) as short:
        owner = short.api.user("closing")
        short.api.grant_credits(owner, 100)
        generation = short.api.generation(owner)
        stream = Stream(events_url(short, generation), owner.access_token)
        stream.wait_for(1)
        short.api.app.extensions[LIVE].stop()
        assert stream.ended.wait(30)
        assert [status for _, status, _ in stream.events] == ["pending"]


def test_a_follower_who_loses_access_gets_an_error_and_the_stream_ends(world, owner):
    viewer = world.api.user("viewer")
    team = world.api.team(owner)
    world.api.join(team, owner, viewer, "viewer")
    generation = world.api.generation(owner)
    world.api.ok(
        "PUT",
        f"/api/v1/generations/{generation['id']}/share",
        owner,
        json={"team_id": team["id"], "role": "viewer"},
    )
    stream = Stream(events_url(world, generation), viewer.access_token)
    stream.wait_for(1)
    world.api.ok("DELETE", f"/api/v1/generations/{generation['id']}/share/{team['id']}", owner, 204)
    world.advance(generation["id"], "queued", "req-revoked")
    assert stream.ended.wait(30)
    assert [(event, data.get("error")) for event, _, data in stream.events] == [
        ("status", None),
        ("error", "not_found"),
    ]


@pytest.mark.parametrize("ending", ["logout", "unshare"])
def test_a_stream_ends_at_its_next_keepalive_once_its_follower_may_no_longer_read(
    world, owner, monkeypatch, ending
):
    """No status changes, so no notice reaches the stream: the keepalive asks again, and the
    stream ends with an error event instead of holding its slot for SSE_MAX_SECONDS."""
    monkeypatch.setattr(live_routes, "KEEPALIVE_SECONDS", 0.2)
    viewer = world.api.user("viewer")
    team = world.api.team(owner)
    world.api.join(team, owner, viewer, "viewer")
    generation = world.api.generation(owner)
    share = f"/api/v1/generations/{generation['id']}/share"
    world.api.ok("PUT", share, owner, json={"team_id": team["id"], "role": "viewer"})
    stream = Stream(events_url(world, generation), viewer.access_token)
    stream.wait_for(1)
    if ending == "logout":
        world.api.ok("POST", "/api/v1/auth/logout", viewer, 204)
    else:
        world.api.ok("DELETE", f"{share}/{team['id']}", owner, 204)
    assert stream.ended.wait(10)
    expected = "invalid_token" if ending == "logout" else "not_found"
    assert [(event, data.get("error")) for event, _, data in stream.events] == [
        ("status", None),
        ("error", expected),
    ]


def listen_connections(db_url: str) -> list[tuple[str, int]]:
    """The app's connections to its database outside its pool ('velro'): (name, pid)."""
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "select application_name, pid from pg_stat_activity"
            " where datname = current_database() and application_name like 'velro-%'"
        ).fetchall()


def wait_until(condition, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_one_connection_per_process_carries_the_cache_and_live_status(
    database_factory, migrated_template, tmp_path
):
    """The cache's invalidations and the live streams' status notices share one LISTEN
    connection: one backend per process, both channels on it, both back after it is cut."""
    with running_world(
        database_factory(migrated_template), str(tmp_path), CACHE_ENABLED=True
    ) as world:
        app = world.api.app
        cache = app.extensions[CACHE]
        assert app.extensions[LISTENER].connected.wait(10), "the listener never connected"
        owner = world.api.user("shared")
        world.api.grant_credits(owner, 100)
        generation = world.api.generation(owner)
        stream = Stream(events_url(world, generation), owner.access_token)
        stream.wait_for(1)
        [(name, first_pid)] = listen_connections(world.db_url)
        assert name == "velro-listener"

        # the cache's channel
        assert cache.get_or_load("shared", lambda: ("cached", ["team:t-shared"]))[1] == "db"
        received = cache.stats()["invalidations_received"]
        with psycopg.connect(world.db_url, autocommit=True) as conn:
            conn.execute(
                "select pg_notify(%s, json_build_object('scope', 'team', 'id', 't-shared')::text)",
                (INVALIDATION_CHANNEL,),
            )
        assert wait_until(lambda: cache.stats()["invalidations_received"] > received)
        assert cache.get_or_load("shared", lambda: ("again", ["team:t-shared"])) == ("again", "db")
        # live status's channel, on the same connection
        world.advance(generation["id"], "queued", "req-shared")
        assert stream.wait_for(2)[1][:2] == ("status", "queued")

        # cut it: the cache distrusts itself and comes back, the stream reads again
        with psycopg.connect(world.db_url, autocommit=True) as conn:
            conn.execute("select pg_terminate_backend(%s)", (first_pid,))
        world.advance(generation["id"], "processing")
        assert stream.wait_for(3)[2][:2] == ("status", "processing")
        assert wait_until(lambda: cache.trusted), "the cache was not trusted again"
        [(name, second_pid)] = listen_connections(world.db_url)
        assert (name, second_pid != first_pid) == ("velro-listener", True)
        world.advance(generation["id"], "completed")
        assert stream.ended.wait(30)
