"""Two real gunicorn servers on one Postgres and one Redis, as production scales out; every
test runs twice: on one Redis server, and on a Redis Cluster of three primaries
(``REDIS_URL=redis+cluster://...``).

Proves what only a second process can show:

- a revocation made through instance A is refused by instance B, whose own L1 held the
  grant, within a bound: over TRIALS trials, the time from A's response to B's first
  refusal (B polled back to back) is printed as percentiles (``pytest -rP``); the test
  asserts each trial under STALE_BOUND_SECONDS, a bound far above the 100 ms target so
  that a loaded CI machine cannot make it flake (``make bench`` reports the real figure);
- a rate limit is counted across both instances (one Redis counter);
- an L2 entry written by one instance is read by the other.

Each server runs one gthread worker, so its /api/v1/health/cache describes the process
that served the requests. Both share PUBLIC_URL (the token issuer), as servers behind one
load balancer do. Clients are told apart by X-Forwarded-For (TRUSTED_PROXIES=1), so the
tight login limit under test does not throttle the users the other tests sign up.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests
from fixtures_app import MAIL_DIR, PASSWORD, probe_session, unique_email
from isolated_redis import claim_database

from harness.servers import Server, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = "fal-ai/flux-pro/v1.1-ultra"
STARTUP_SECONDS = 30.0
TRIALS = 24
TARGET_P99_SECONDS = 0.100  # the target bound; reported, not asserted (see the docstring)
STALE_BOUND_SECONDS = 1.0
LOGIN_LIMIT = 4
# one worker, so that a server's /api/v1/health/cache describes the process that served
ADDRESSES = (f"198.51.{n // 250}.{n % 250 + 1}" for n in itertools.count())


# servers ----------------------------------------------------------------------------------


def server_env(database_url: str, redis_url: str, public_url: str) -> dict:
    return {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PUBLIC_URL": public_url,
        "CACHE_ENABLED": "true",
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_PER_IP": "100000/hour",
        "RATE_LIMIT_PER_USER": "100000/hour",
        "RATE_LIMIT_AUTH_PER_IP": f"{LOGIN_LIMIT}/minute",
        "RATE_LIMIT_AUTH_PER_EMAIL": "1000/minute",
        "TRUSTED_PROXIES": "1",
        "ANALYTICS_REFRESH_SECONDS": "0",
        "DB_POOL_MIN_SIZE": "1",
        "DB_POOL_MAX_SIZE": "4",
        # sign-ups get their session at once, as in every API suite
        "AUTH_AUTOCONFIRM": "true",
        "MAIL_DIR": MAIL_DIR,
    }


@dataclass
class Instance:
    name: str
    base_url: str
    process: subprocess.Popen
    log: Path

    def __post_init__(self):
        self.http = probe_session()

    def url(self, path: str) -> str:
        return self.base_url + path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def gunicorn(name: str, port: int, env: dict, log: Path) -> Iterator[Instance]:
    workers, threads = 1, 4
    with Server(env["DATABASE_URL"], env, workers, threads, port, log, STARTUP_SECONDS) as server:
        instance = Instance(name, server.url(), server.process, log)
        try:
            yield instance
        finally:
            instance.http.close()


def wait_until_serving(instance: Instance) -> None:
    """Ready (the database answers) and the cache trusted (its listener is connected)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if instance.process.poll() is not None:
            pytest.fail(f"{instance.name} exited while starting:\n{instance.log_tail()}")
        try:
            ready = instance.http.get(instance.url("/api/v1/health/ready"), timeout=2)
            stats = instance.http.get(instance.url("/api/v1/health/cache"), timeout=2)
            if ready.status_code == 200 and stats.json()["trusted"]:
                return
        except requests.RequestException:
            pass  # not listening yet, or the worker is still booting
        time.sleep(0.1)
    pytest.fail(f"{instance.name} was not serving after {STARTUP_SECONDS}s:\n{instance.log_tail()}")


@dataclass
class Pair:
    a: Instance
    b: Instance
    database_url: str


@pytest.fixture(scope="module", params=["server", "cluster"])
def pair(request, database_factory, migrated_template, tmp_path_factory) -> Iterator[Pair]:
    database_url = database_factory(migrated_template)
    logs = tmp_path_factory.mktemp("two-instances")
    with ExitStack() as stack:
        if request.param == "cluster":
            shared_redis = request.getfixturevalue("redis_cluster").url
        else:
            shared_redis = stack.enter_context(claim_database(request.getfixturevalue("redis_url")))
        port_a, port_b = free_port(), free_port()
        env = server_env(database_url, shared_redis, public_url=f"http://127.0.0.1:{port_a}")
        a = stack.enter_context(gunicorn("A", port_a, env, logs / "a.log"))
        b = stack.enter_context(gunicorn("B", port_b, env, logs / "b.log"))
        wait_until_serving(a)
        wait_until_serving(b)
        yield Pair(a, b, database_url)


# clients ----------------------------------------------------------------------------------


@dataclass
class User:
    id: str
    email: str
    token: str


def call(
    instance: Instance,
    method: str,
    path: str,
    user: User | None = None,
    *,
    address: str = "192.0.2.1",
    **kwargs,
) -> requests.Response:
    headers = {"X-Forwarded-For": address, **kwargs.pop("headers", {})}
    if user is not None:
        headers["Authorization"] = f"Bearer {user.token}"
    return instance.http.request(method, instance.url(path), headers=headers, timeout=10, **kwargs)


def ok(
    instance: Instance,
    method: str,
    path: str,
    user: User | None = None,
    status: int = 200,
    **kwargs,
) -> dict | None:
    response = call(instance, method, path, user, **kwargs)
    assert response.status_code == status, (instance.name, method, path, response.text)
    return response.json() if response.content else None


def sign_up(instance: Instance, prefix: str) -> User:
    email = unique_email(prefix)
    body = ok(
        instance,
        "POST",
        "/api/v1/auth/signup",
        status=201,
        address=next(ADDRESSES),
        json={"email": email, "password": PASSWORD},
    )
    return User(body["user"]["id"], email, body["access_token"])


def grant_credits(pair: Pair, user: User, amount: int) -> None:
    with psycopg.connect(pair.database_url) as conn:
        conn.execute("select public.grant_credits(%s, %s)", (user.id, amount))


def authorize(instance: Instance, user: User, generation_id: str) -> dict:
    return ok(instance, "POST", f"/api/v1/generations/{generation_id}/authorize", user)


def cached_on(instance: Instance, user: User, generation_id: str) -> dict:
    """Ask until the answer comes from the cache (a fresh change blocks storing for a moment)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        answer = authorize(instance, user, generation_id)
        if answer["cache_hit"]:
            return answer
        time.sleep(0.02)
    pytest.fail(f"{instance.name} never served the answer from its cache")


@dataclass
class Refusal:
    """When B first refused, in seconds after A's response: the refusing request's send
    and its answer's arrival; and how many stale grants B gave before it."""

    sent: float
    answered: float
    stale_grants: int


def first_refusal(instance: Instance, user: User, generation_id: str) -> Refusal:
    """Poll ``instance`` back to back from now until it refuses."""
    started = time.perf_counter()
    stale = 0
    while True:
        sent = time.perf_counter() - started
        answer = authorize(instance, user, generation_id)
        answered = time.perf_counter() - started
        if not answer["access_granted"]:
            return Refusal(sent, answered, stale)
        stale += 1
        if answered > 5 * STALE_BOUND_SECONDS:
            pytest.fail(f"{instance.name} still granted access after {answered:.1f}s")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, round(fraction * len(ordered) + 0.5) - 1)]


# (a) revocation through A, refused by B ------------------------------------------------------


@dataclass
class Workspace:
    owner: User
    team: dict
    generation_id: str


@pytest.fixture(scope="module")
def workspace(pair) -> Workspace:
    """An owner's team, a team project linked to it, and a generation in that project."""
    owner = sign_up(pair.a, "owner")
    grant_credits(pair, owner, 1000)
    team = ok(pair.a, "POST", "/api/v1/teams", owner, 201, json={"name": "propagation"})
    project = ok(
        pair.a,
        "POST",
        "/api/v1/projects",
        owner,
        201,
        json={"name": "propagation", "visibility": "team"},
    )
    ok(
        pair.a,
        "PUT",
        f"/api/v1/projects/{project['id']}/teams/{team['id']}",
        owner,
        json={"access_level": "editor"},
    )
    generation = ok(
        pair.a,
        "POST",
        "/api/v1/generations",
        owner,
        201,
        headers={"Idempotency-Key": unique_email("key")},
        json={"model_id": MODEL, "prompt": "a lighthouse", "project_id": project["id"]},
    )
    return Workspace(owner, team, generation["id"])


def join(pair: Pair, workspace: Workspace, member: User) -> None:
    team_id = workspace.team["id"]
    invitation = ok(
        pair.a,
        "POST",
        f"/api/v1/teams/{team_id}/invite",
        workspace.owner,
        201,
        json={"email": member.email, "role": "editor"},
    )
    ok(pair.a, "POST", "/api/v1/invitations/accept", member, json={"token": invitation["token"]})


def member_removal_trial(pair: Pair, workspace: Workspace) -> Refusal:
    member = sign_up(pair.a, "member")
    join(pair, workspace, member)
    assert cached_on(pair.b, member, workspace.generation_id)["access_method"] == "project_team"
    ok(
        pair.a,
        "DELETE",
        f"/api/v1/teams/{workspace.team['id']}/members/{member.id}",
        workspace.owner,
        204,
    )
    return first_refusal(pair.b, member, workspace.generation_id)


def unshare_trial(pair: Pair, workspace: Workspace) -> Refusal:
    """A generation of its own in no project, shared with a team the member is in."""
    generation = ok(
        pair.a,
        "POST",
        "/api/v1/generations",
        workspace.owner,
        201,
        headers={"Idempotency-Key": unique_email("key")},
        json={"model_id": MODEL, "prompt": "a harbour"},
    )
    member = sign_up(pair.a, "member")
    join(pair, workspace, member)
    team_id = workspace.team["id"]
    ok(
        pair.a,
        "PUT",
        f"/api/v1/generations/{generation['id']}/share",
        workspace.owner,
        json={"team_id": team_id, "role": "viewer"},
    )
    assert cached_on(pair.b, member, generation["id"])["access_method"] == "generation_share"
    ok(
        pair.a,
        "DELETE",
        f"/api/v1/generations/{generation['id']}/share/{team_id}",
        workspace.owner,
        204,
    )
    return first_refusal(pair.b, member, generation["id"])


def describe(name: str, seconds: list[float]) -> str:
    figures = {f"p{p}": percentile(seconds, p / 100) for p in (50, 90, 99)}
    figures["max"] = max(seconds)
    return f"{name}: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in figures.items())


def test_a_revocation_through_a_is_refused_by_b_within_the_bound(pair, workspace):
    trials = [member_removal_trial, unshare_trial] * (TRIALS // 2)
    refusals = [trial(pair, workspace) for trial in trials]
    answered = [r.answered for r in refusals]

    p99 = percentile(answered, 0.99)
    print(
        f"revocation through A, refused by B, over {len(refusals)} trials "
        f"(seconds after A's response)"
    )
    print(describe("first refusal answered", answered))
    print(describe("first refusing request sent", [r.sent for r in refusals]))
    print(
        f"stale grants B gave after A's response: {sum(r.stale_grants for r in refusals)}; "
        f"target p99 {TARGET_P99_SECONDS * 1000:.0f} ms "
        f"{'met' if p99 <= TARGET_P99_SECONDS else 'NOT met'}"
    )
    assert len(refusals) >= 20
    assert max(answered) <= STALE_BOUND_SECONDS, describe("answered", answered)


# (b) one rate limit across both ------------------------------------------------------------


def test_the_login_limit_is_counted_across_both_instances(pair):
    user = sign_up(pair.a, "limited")
    address = next(ADDRESSES)  # one client, load-balanced over both instances

    def login(instance: Instance) -> requests.Response:
        return call(
            instance,
            "POST",
            "/api/v1/auth/login",
            address=address,
            json={"email": user.email, "password": PASSWORD},
        )

    statuses = [login(pair.a).status_code for _ in range(2)]
    statuses += [login(pair.b).status_code for _ in range(LOGIN_LIMIT - 2)]
    refused = login(pair.b)

    assert statuses == [200] * LOGIN_LIMIT
    assert refused.status_code == 429, refused.text
    assert set(refused.json()) >= {"error", "message", "request_id"}
    assert int(refused.headers["Retry-After"]) > 0


# (c) L2 shared --------------------------------------------------------------------------------


def test_an_l2_entry_written_by_a_is_read_by_b(pair):
    owner = sign_up(pair.a, "owner")
    grant_credits(pair, owner, 1000)
    generation = ok(
        pair.a,
        "POST",
        "/api/v1/generations",
        owner,
        201,
        headers={"Idempotency-Key": unique_email("key")},
        json={"model_id": MODEL, "prompt": "a quiet street"},
    )
    stats_before = ok(pair.b, "GET", "/api/v1/health/cache")
    answer_a = cached_on(pair.a, owner, generation["id"])  # in A's L1, so written to L2 too

    answer_b = authorize(pair.b, owner, generation["id"])

    assert answer_b["cache_hit"] is True
    assert answer_b["access_method"] == answer_a["access_method"] == "direct_ownership"
    stats_after = ok(pair.b, "GET", "/api/v1/health/cache")
    assert stats_after["l2"]["hits"] > stats_before["l2"]["hits"]
    assert authorize(pair.b, owner, generation["id"])["cache_hit"] is True
    assert ok(pair.b, "GET", "/api/v1/health/cache")["l2"]["hits"] == stats_after["l2"]["hits"]
