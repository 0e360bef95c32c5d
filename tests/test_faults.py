"""Faults injected while real traffic runs against a real gunicorn.

Each test starts gunicorn (one worker, four threads, so /api/v1/health/cache describes the
process that served) on a database of its own, runs ``Traffic`` (threads sending real HTTP
requests back to back: authorizations, lists, balances, the catalog and new generations),
injects one fault, and then checks:

- no request lost: every request got an answer, a 2xx or a clean 4xx/503 in the one error
  shape, never another 5xx, a connection error or a timeout at the client;
- ``private.integrity_audit()`` on the whole database returns no row;
- what the fault threatens: the cache and the limits recover, no stale grant is served
  across a revocation, the pool and the listeners come back, money moves once.

Every test records its figures in test-artifacts/faults.json (``fault_support.record_fault``);
``python tests/fault_support.py`` prints them as the README's table.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fakes.fal import sign
from fault_support import (
    REQUEST_TIMEOUT,
    BlackholeProxy,
    OwnRedis,
    Traffic,
    assert_nothing_lost,
    record_fault,
    traffic_figures,
    wait_for,
)
from fixtures_app import MAIL_DIR, PASSWORD, TestUser, probe_session, unique_email
from psycopg.rows import dict_row

from backend.fal.breaker import CircuitOpen
from backend.fal.queue import FalUnavailable
from backend.jobs import tasks, worker
from harness.servers import Server

pytest_plugins = ["fixtures_fal"]

MODEL = "fal-ai/flux-pro/v1.1-ultra"
MODEL_COST = 50
CREDITS = 1_000_000
PHASE_REQUESTS = 150  # answers each phase of traffic waits for, at least
STALE_WAIT_SECONDS = 5.0  # a revocation not refused by then is a failure


# the server and its callers ---------------------------------------------------------------


@pytest.fixture
def database_url(database_factory, migrated_template) -> str:
    """A database of the test's own: the audit at the end reads all of it."""
    return database_factory(migrated_template)


REDIS_NAMESPACE = "velro-faults"  # the cache's keys in Redis start {velro-faults}:
CACHE_KEYS = "{" + REDIS_NAMESPACE + "}:"
CACHE_ENTRIES = CACHE_KEYS + "c:"


def server_env(**extra) -> dict:
    limits = "1000000/hour"
    return {
        "APP_ENV": "test",
        "REDIS_URL": "",
        "REDIS_NAMESPACE": REDIS_NAMESPACE,
        "CACHE_ENABLED": "true",
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_PER_IP": limits,
        "RATE_LIMIT_PER_USER": limits,
        "RATE_LIMIT_AUTH_PER_IP": limits,
        "RATE_LIMIT_AUTH_PER_EMAIL": limits,
        "RATE_LIMIT_GENERATIONS_PER_USER": limits,
        "ANALYTICS_REFRESH_SECONDS": "0",
        "DB_POOL_MIN_SIZE": "1",
        "DB_POOL_MAX_SIZE": "6",
        "AUTH_AUTOCONFIRM": "true",
        "MAIL_DIR": MAIL_DIR,
        **extra,
    }


class Site:
    """One gunicorn server and the test's own (untallied) calls to it."""

    def __init__(self, server: Server, database_url: str) -> None:
        self.server = server
        self.database_url = database_url
        self.http = probe_session()

    def url(self, path: str) -> str:
        return self.server.url(path)

    def call(self, method: str, path: str, user: TestUser | None = None, **kwargs):
        headers = {**(user.headers if user else {}), **kwargs.pop("headers", {})}
        return self.http.request(
            method, self.url(path), headers=headers, timeout=REQUEST_TIMEOUT, **kwargs
        )

    def ok(self, method: str, path: str, user: TestUser | None = None, status: int = 200, **kw):
        response = self.call(method, path, user, **kw)
        assert response.status_code == status, (method, path, response.text)
        return response.json() if response.content else None

    def sql(self, statement: str, params=()) -> list[dict]:
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def cache(self) -> dict:
        return self.ok("GET", "/api/v1/health/cache")

    def status(self) -> dict:
        return self.ok("GET", "/api/v1/health/status")

    def wait_until_serving(self) -> None:
        def serving() -> bool:
            try:
                ready = self.call("GET", "/api/v1/health/ready")
                return ready.status_code == 200 and self.cache()["trusted"]
            except requests.RequestException:
                return False

        wait_for(serving, "the server to be ready with its cache trusted")

    # building blocks through the API ---------------------------------------------------

    def sign_up(self, prefix: str) -> TestUser:
        email = unique_email(prefix)
        body = self.ok(
            "POST", "/api/v1/auth/signup", status=201, json={"email": email, "password": PASSWORD}
        )
        return TestUser(
            body["user"]["id"], email, PASSWORD, body["access_token"], body["refresh_token"]
        )

    def generation(self, user: TestUser, project_id: str | None = None) -> dict:
        body = {"model_id": MODEL, "prompt": "a lighthouse at dusk"}
        if project_id:
            body["project_id"] = project_id
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        return self.ok("POST", "/api/v1/generations", user, 201, json=body, headers=headers)

    def authorize(self, user: TestUser, generation_id: str) -> dict:
        return self.ok("POST", f"/api/v1/generations/{generation_id}/authorize", user)


@contextmanager
def serving(database_url: str, log: Path, **env) -> Iterator[Site]:
    server = Server(database_url, env=server_env(**env), workers=1, threads=4, log=log)
    with server:
        site = Site(server, database_url)
        try:
            site.wait_until_serving()
            yield site
        except BaseException:
            print(server.log_tail())
            raise
        finally:
            site.http.close()


def audit_rows(database_url: str) -> list[dict]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute("select * from private.integrity_audit()").fetchall()


def conclude(name: str, traffic: Traffic, database_url: str, **recorded) -> None:
    """Record a fault's figures, then check what every fault must keep: no request lost, and
    no row from the integrity audit of the whole database."""
    rows = audit_rows(database_url)
    record_fault(name, **recorded, **traffic_figures(traffic), audit_rows=len(rows))
    assert_nothing_lost(traffic.tally())
    assert rows == [], rows


# a team workspace, and revocations in it ----------------------------------------------------


@dataclass
class Workspace:
    owner: TestUser
    reader: TestUser  # a member the traffic reads as; never revoked
    team_id: str
    project_id: str
    generation_id: str


def workspace(site: Site) -> Workspace:
    """An owner with credits, a team project linked at editor, a generation in it, and a
    member of the team who reads it."""
    owner = site.sign_up("owner")
    site.sql("select public.grant_credits(%s, %s)", (owner.id, CREDITS))
    team = site.ok("POST", "/api/v1/teams", owner, 201, json={"name": "faults"})
    project = site.ok(
        "POST", "/api/v1/projects", owner, 201, json={"name": "faults", "visibility": "team"}
    )
    link = f"/api/v1/projects/{project['id']}/teams/{team['id']}"
    site.ok("PUT", link, owner, json={"access_level": "editor"})
    generation = site.generation(owner, project["id"])
    space = Workspace(owner, owner, team["id"], project["id"], generation["id"])
    space.reader = member(site, space)
    return space


def member(site: Site, space: Workspace) -> TestUser:
    """A new user who joined the workspace's team as an editor."""
    user = site.sign_up("member")
    invitation = site.ok(
        "POST",
        f"/api/v1/teams/{space.team_id}/invite",
        space.owner,
        201,
        json={"email": user.email, "role": "editor"},
    )
    site.ok("POST", "/api/v1/invitations/accept", user, json={"token": invitation["token"]})
    return user


def everyday_calls(site: Site, space: Workspace) -> list:
    """What the traffic sends, in turn: cached reads, lists, money, the catalog, writes."""
    owner, reader, generation = space.owner.headers, space.reader.headers, space.generation_id
    authorize = site.url(f"/api/v1/generations/{generation}/authorize")
    timeout = REQUEST_TIMEOUT

    def create(session: requests.Session) -> requests.Response:
        return session.post(
            site.url("/api/v1/generations"),
            headers={**owner, "Idempotency-Key": str(uuid.uuid4())},
            json={"model_id": MODEL, "prompt": "traffic", "project_id": space.project_id},
            timeout=timeout,
        )

    return [
        lambda s: s.post(authorize, headers=owner, timeout=timeout),
        lambda s: s.post(authorize, headers=reader, timeout=timeout),
        lambda s: s.get(site.url("/api/v1/generations?limit=5"), headers=owner, timeout=timeout),
        lambda s: s.get(site.url("/api/v1/credits/balance"), headers=owner, timeout=timeout),
        lambda s: s.get(site.url("/api/v1/models"), timeout=timeout),
        lambda s: s.post(authorize, headers=reader, timeout=timeout),
        create,
    ]


def cached_grant(site: Site, user: TestUser, generation_id: str) -> None:
    """Ask until the grant comes from the cache (a fresh change blocks storing a moment)."""

    def from_cache() -> bool:
        answer = site.authorize(user, generation_id)
        assert answer["access_granted"], answer
        return answer["cache_hit"]

    wait_for(from_cache, "the grant to be served from the cache", timeout=10)


@dataclass
class Revocation:
    grants_before_refusal: int  # answered after the removal's response, before its notice
    grants_after_refusal: int  # must be 0: once refused, never granted again


def revoke_and_watch(site: Site, space: Workspace, after_refusal: int = 20) -> Revocation:
    """A member whose grant is cached is removed; ask until refused, then ask again."""
    user = member(site, space)
    cached_grant(site, user, space.generation_id)
    site.ok("DELETE", f"/api/v1/teams/{space.team_id}/members/{user.id}", space.owner, 204)
    deadline = time.monotonic() + STALE_WAIT_SECONDS
    before = 0
    while site.authorize(user, space.generation_id)["access_granted"]:
        before += 1
        assert time.monotonic() < deadline, f"still granted {STALE_WAIT_SECONDS}s after removal"
    after = sum(
        site.authorize(user, space.generation_id)["access_granted"] for _ in range(after_refusal)
    )
    return Revocation(before, after)


def run_phase(traffic: Traffic, name: str, requests_at_least: int = PHASE_REQUESTS) -> None:
    traffic.phase(name)
    traffic.wait_for_requests(requests_at_least)


# 1. Redis stopped and restarted -------------------------------------------------------------


def redis_keys(own: OwnRedis) -> dict[str, int]:
    """Keys in the test's Redis: cache entries, and everything else (the limiter's counters)."""
    with own.client() as client:
        keys = [key.decode() for key in client.scan_iter(count=1000)]
    entries = sum(key.startswith(CACHE_ENTRIES) for key in keys)
    limits = sum("velro" in key and not key.startswith(CACHE_KEYS) for key in keys)
    return {"cache_entries": entries, "limit_counters": limits}


def test_redis_stopped_and_restarted_under_traffic(database_url, tmp_path):
    # an L1 of two entries: most reads fall through to L2, so its hits show whether it works
    with (
        OwnRedis() as own,
        serving(
            database_url, tmp_path / "server.log", REDIS_URL=own.url, CACHE_L1_SIZE="2"
        ) as site,
    ):
        space = workspace(site)
        with Traffic(everyday_calls(site, space)) as traffic:
            run_phase(traffic, "before")
            wait_for(lambda: site.cache()["l2"]["hits"] > 0, "L2 hits before the fault")
            keys_before = redis_keys(own)
            assert keys_before["cache_entries"] > 0 and keys_before["limit_counters"] > 0

            traffic.phase("during")
            own.stop()
            wait_for(lambda: not site.cache()["l2"]["available"], "the app to notice")
            # every instance shares Redis, and this one serves without it: still ready,
            # and degraded for operators
            assert site.call("GET", "/api/v1/health/ready").status_code == 200
            status_down = site.status()
            assert status_down["status"] == "degraded", status_down
            assert status_down["dependencies"]["redis"]["state"] == "failing", status_down
            traffic.wait_for_requests(PHASE_REQUESTS)
            l2_hits_down = site.cache()["l2"]["hits"]

            traffic.phase("after")
            own.start()  # empty: it lost every key
            wait_for(lambda: site.cache()["l2"]["hits"] > l2_hits_down, "L2 hits again", 30)
            keys_after = wait_for(
                lambda: (lambda k: k if k["limit_counters"] and k["cache_entries"] else None)(
                    redis_keys(own)
                ),
                "cache entries and limit counters in the restarted Redis",
                timeout=60,  # the limiter retries its store after 1, 2, 4 ... 32 seconds
            )
            traffic.wait_for_requests(PHASE_REQUESTS)
            assert site.call("GET", "/api/v1/health/ready").status_code == 200
            wait_for(
                lambda: site.status()["dependencies"]["redis"]["state"] == "ok",
                "Redis answering /status again",
            )
            revocation = revoke_and_watch(site, space)
        stats = site.cache()

    conclude(
        "redis_restart",
        traffic,
        database_url,
        order=1,
        fault="Redis stopped and restarted",
        injected="own redis-server killed mid-traffic, restarted empty",
        invariants="L2 hits and limit counters return; a later revocation refused",
        l2_hits=stats["l2"]["hits"],
        keys_after_restart=keys_after,
        grants_after_refusal=revocation.grants_after_refusal,
    )
    assert revocation.grants_after_refusal == 0


# 2. Redis evicting keys under memory pressure ------------------------------------------------


def fill(own: OwnRedis, stop: threading.Event) -> None:
    """Write big junk keys until stopped: an evicting Redis throws other keys out."""
    junk = b"x" * 65536
    with own.client() as client:
        for n in range(1_000_000):
            if stop.is_set():
                return
            with contextlib.suppress(Exception):
                client.set(f"junk:{n}", junk)


def test_an_evicting_redis_is_noticed_and_serves_no_stale_grant(database_url, tmp_path):
    policy = ("--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru")
    with (
        OwnRedis(*policy) as own,
        serving(database_url, tmp_path / "server.log", REDIS_URL=own.url) as site,
    ):
        l2 = site.cache()["l2"]
        assert l2["maxmemory_policy"] == "allkeys-lru"
        assert l2["trusted"] is False and l2["available"] is False
        space = workspace(site)
        stop_filling = threading.Event()
        filler = threading.Thread(target=fill, args=(own, stop_filling), daemon=True)
        with Traffic(everyday_calls(site, space)) as traffic:
            run_phase(traffic, "before")
            traffic.phase("during")
            filler.start()
            with own.client() as client:
                wait_for(lambda: client.info("stats")["evicted_keys"] > 0, "Redis to evict")
            revocations = [revoke_and_watch(site, space) for _ in range(5)]
            traffic.wait_for_requests(PHASE_REQUESTS)
            stop_filling.set()
            filler.join(timeout=10)
            with own.client() as client:
                evicted = client.info("stats")["evicted_keys"]
                entries = sum(1 for _ in client.scan_iter(CACHE_ENTRIES + "*"))
        stats = site.cache()

    conclude(
        "redis_evicting",
        traffic,
        database_url,
        order=2,
        fault="Redis evicting under memory pressure",
        injected="own redis-server, maxmemory 4mb, allkeys-lru, filled with junk",
        invariants="policy noticed, L2 unused; 5 revocations refused, none granted after",
        evicted_keys=evicted,
        l2_entries_written=entries,
        grants_after_refusal=sum(r.grants_after_refusal for r in revocations),
        grants_before_refusal=sum(r.grants_before_refusal for r in revocations),
    )
    assert stats["l2"]["hits"] == 0 and entries == 0, "L2 was used on an evicting Redis"
    assert stats["l1"]["hits"] > 0, "the cache served nothing from L1"
    assert [r.grants_after_refusal for r in revocations] == [0] * 5


# 3. Postgres backends terminated ------------------------------------------------------------


def terminate_backends(database_url: str) -> int:
    """End every backend of this test's database but the asking one; how many."""
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "select count(*) filter (where pg_terminate_backend(pid)) as ended"
            " from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
            (name,),
        ).fetchone()
    return rows[0]


def test_postgres_backends_terminated_under_traffic(database_url, tmp_path):
    with serving(database_url, tmp_path / "server.log") as site:
        space = workspace(site)
        with Traffic(everyday_calls(site, space)) as traffic:
            run_phase(traffic, "before")
            traffic.phase("during")
            ended = 0
            for _ in range(5):
                ended += terminate_backends(database_url)
                traffic.wait_for_requests(traffic.tally("during").requests + 30)
            traffic.phase("after")
            wait_for(lambda: site.call("GET", "/api/v1/health/ready").status_code == 200, "ready")
            wait_for(lambda: site.cache()["trusted"], "the listener to be back")
            traffic.wait_for_requests(PHASE_REQUESTS)
            revocation = revoke_and_watch(site, space)
            settled = [
                site.call("GET", "/api/v1/credits/balance", space.owner).status_code
                for _ in range(20)
            ]
        follow = live_status_seen(site, space)

    conclude(
        "postgres_backends_terminated",
        traffic,
        database_url,
        order=3,
        fault="Postgres backends terminated",
        injected=f"pg_terminate_backend on every backend of the test database, 5 times"
        f" ({ended} backends)",
        invariants="clean 503s only; pool, cache listener and live listener back without a"
        " restart; a later revocation refused",
        backends_terminated=ended,
        grants_after_refusal=revocation.grants_after_refusal,
    )
    assert ended >= 5
    assert settled == [200] * 20, "the pool did not recover"
    assert revocation.grants_after_refusal == 0
    assert follow == "completed", "the live listener did not recover"


def live_status_seen(site: Site, space: Workspace) -> str:
    """Follow a generation's events while it completes; the last status the stream sent."""
    generation = site.generation(space.owner, space.project_id)
    url = site.url(f"/api/v1/generations/{generation['id']}/events")
    seen: list[str] = []
    with requests.get(url, headers=space.owner.headers, stream=True, timeout=30) as stream:
        assert stream.status_code == 200, stream.text
        lines = stream.iter_lines(decode_unicode=True)
        for line in lines:  # the first event is the generation as it is now
            if line.startswith("data:"):
                seen.append(json.loads(line[5:])["status"])
                break
        request_id = f"fault-{uuid.uuid4()}"
        site.sql(
            "select public.record_generation_progress(%s, 'queued', %s)",
            (generation["id"], request_id),
        )
        site.sql(
            "select public.record_generation_progress(%s, 'completed', %s, %s)",
            (generation["id"], request_id, '[{"url": "https://fal.media/files/x.png"}]'),
        )
        for line in lines:
            if line.startswith("data:"):
                seen.append(json.loads(line[5:])["status"])
                if seen[-1] == "completed":
                    break
    return seen[-1]


# 4. the listener's connection blackholed ----------------------------------------------------


def test_a_blackholed_listener_under_traffic_serves_no_stale_grant(database_url, tmp_path):
    parts = urlsplit(database_url)
    proxy = BlackholeProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    direct = parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}")
    env = {"DATABASE_DIRECT_URL": direct.geturl(), "CACHE_LISTENER_TIMEOUT": "1"}
    try:
        with serving(database_url, tmp_path / "server.log", **env) as site:
            space = workspace(site)
            victim = member(site, space)
            with Traffic(everyday_calls(site, space)) as traffic:
                run_phase(traffic, "before")
                cached_grant(site, victim, space.generation_id)
                traffic.phase("during")
                proxy.blackhole()
                wait_for(lambda: not site.cache()["trusted"], "the cache to distrust itself")
                path = f"/api/v1/teams/{space.team_id}/members/{victim.id}"
                site.ok("DELETE", path, space.owner, 204)  # its notice cannot arrive
                refused_at_once = site.authorize(victim, space.generation_id)
                traffic.wait_for_requests(PHASE_REQUESTS)
                traffic.phase("after")
                proxy.restore()
                wait_for(lambda: site.cache()["trusted"], "the listener to be back", 30)
                refused_after = site.authorize(victim, space.generation_id)
                traffic.wait_for_requests(PHASE_REQUESTS)
                revocation = revoke_and_watch(site, space)
            stats = site.cache()
    finally:
        proxy.close()

    conclude(
        "listener_blackholed",
        traffic,
        database_url,
        order=4,
        fault="Listener connection blackholed",
        injected="TCP proxy on DATABASE_DIRECT_URL holds every byte (no error), then forwards",
        invariants="cache distrusted within its bound; revocation during the silence refused;"
        " trusted again after",
        bypassed_reads=stats["bypassed"],
        grants_after_refusal=revocation.grants_after_refusal,
    )
    assert refused_at_once["access_granted"] is False
    assert refused_after["access_granted"] is False
    assert stats["bypassed"] > 0 and stats["trusted"]
    assert revocation.grants_after_refusal == 0


# the FAL pipeline under traffic --------------------------------------------------------------


@pytest.fixture
def pipeline(database_url, fake_fal, monkeypatch, tmp_path) -> Iterator[Site]:
    """gunicorn with the fake FAL's keys (inherited from this process), and the worker's
    settings pointing at this database and that server's webhook route."""
    with serving(database_url, tmp_path / "server.log") as site:
        monkeypatch.setenv("APP_ENV", "test")  # the worker validates its settings as the app does
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("FAL_WEBHOOK_URL", site.url("/api/v1/webhooks/fal"))
        monkeypatch.setenv("FAL_SUBMIT_RETRY_SECONDS", "0")
        monkeypatch.setenv("FAL_BREAKER_THRESHOLD", "1000")
        yield site


def ledgers(site: Site, user: TestUser) -> dict[str, list[str]]:
    """Each of the user's generations: its ledger lines' kinds, in order."""
    rows = site.sql(
        "select g.id::text as id, coalesce(array_agg(l.kind::text order by l.created_at)"
        " filter (where l.id is not null), '{}') as kinds"
        " from public.generations as g left join public.credit_ledger as l"
        " on l.generation_id = g.id where g.owner_id = %s group by g.id",
        (user.id,),
    )
    return {row["id"]: row["kinds"] for row in rows}


def statuses(site: Site, user: TestUser) -> dict[str, str]:
    rows = site.sql(
        "select id::text, status::text from public.generations where owner_id = %s", (user.id,)
    )
    return {row["id"]: row["status"] for row in rows}


def balance(site: Site, user: TestUser) -> int:
    return site.sql("select credits from public.profiles where id = %s", (user.id,))[0]["credits"]


def granted(site: Site, user: TestUser) -> int:
    """Credits the user was given (the sign-up grant and the test's own)."""
    return site.sql(
        "select sum(amount) as total from public.credit_ledger"
        " where user_id = %s and kind in ('grant', 'purchase')",
        (user.id,),
    )[0]["total"]


def worker_process(**env) -> subprocess.Popen:
    """``velro worker`` as its own process, on this test's database and fake FAL."""
    code = "from backend.jobs import worker; worker.run()"
    environment = {**os.environ, "APP_ENV": "test", "PYTHONPATH": os.getcwd(), **env}
    return subprocess.Popen([sys.executable, "-c", code], env=environment)


# 5. a worker killed mid-job ------------------------------------------------------------------


def test_a_worker_killed_mid_job_under_traffic_charges_once(pipeline, fake_fal):
    site = pipeline
    space = workspace(site)
    submit_delay = 5.0
    with Traffic(everyday_calls(site, space)) as traffic:
        run_phase(traffic, "before")
        traffic.phase("during")
        fake_fal.submit_delay = submit_delay  # the worker is inside FAL calls when it dies
        process = worker_process(WORKER_HEARTBEAT_SECONDS="0.2", WORKER_CONCURRENCY="4")
        try:
            wait_for(
                lambda: worker_alive(process) and fake_fal.submits >= 2,
                "the worker to call FAL",
                timeout=120,  # a loaded machine takes its time to start a process
            )
            killed_at = time.monotonic()
            in_flight = site.sql(
                "select count(*) as n from procrastinate.procrastinate_jobs where status = 'doing'"
            )[0]["n"]
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        traffic.wait_for_requests(PHASE_REQUESTS)
    fake_fal.submit_delay = 0
    wait_for(
        lambda: (
            not site.sql(
                "select 1 from procrastinate.procrastinate_workers"
                " where last_heartbeat > now() - interval '1 second'"
            )
        ),
        "the dead worker's heartbeat to go stale",
    )
    retried = retry_jobs_of_stopped_workers(site.database_url)
    worker.run(site.database_url, wait=False)
    # the killed FAL calls finish at the fake (their client is gone) before it is reset
    time.sleep(max(0.0, submit_delay - (time.monotonic() - killed_at)))

    kinds = ledgers(site, space.owner)
    final = statuses(site, space.owner)
    conclude(
        "worker_killed",
        traffic,
        site.database_url,
        order=5,
        fault="Worker killed mid-job",
        injected=f"SIGKILL to `velro worker` inside {in_flight} FAL submits",
        invariants="jobs retried; every generation queued once, one charge, no refund",
        generations=len(final),
        jobs_in_flight_at_kill=in_flight,
        jobs_retried=retried,
    )
    assert in_flight >= 1 and retried >= in_flight
    assert set(final.values()) == {"queued"}, final
    assert all(k == ["charge"] for k in kinds.values()), kinds
    requests_recorded = site.sql(
        "select count(distinct fal_request_id) as n from public.generations where owner_id = %s",
        (space.owner.id,),
    )[0]["n"]
    assert requests_recorded == len(final)
    assert balance(site, space.owner) == granted(site, space.owner) - MODEL_COST * len(final)


def worker_alive(process: subprocess.Popen) -> bool:
    assert process.poll() is None, f"the worker exited with {process.returncode}"
    return True


def retry_jobs_of_stopped_workers(database_url: str) -> int:
    import asyncio

    from backend.jobs.engine import app, on_database

    async def recover() -> int:
        async with app.open_async():
            return await tasks.retry_jobs_of_stopped_workers(1)

    with on_database(database_url):
        return asyncio.run(recover())


# 6. FAL failing: 500s, timeouts, malformed bodies ---------------------------------------------


def test_a_failing_fal_opens_the_breaker_and_refunds_each_generation_once(
    pipeline, fake_fal, monkeypatch
):
    site = pipeline
    threshold = 6
    monkeypatch.setenv("FAL_BREAKER_THRESHOLD", str(threshold))
    monkeypatch.setenv("FAL_BREAKER_OPEN_SECONDS", "3600")
    space = workspace(site)
    faults = ["500", "timeout", "malformed"]
    outcomes: list[str] = []
    with Traffic(everyday_calls(site, space)) as traffic:
        run_phase(traffic, "before")
        traffic.phase("during")
        for n in range(threshold + 4):
            fake_fal.submit_fault = faults[n % len(faults)]
            pending = [g for g, s in statuses(site, space.owner).items() if s == "pending"]
            try:
                tasks.submit_generation(generation_id=pending[0])
                outcomes.append("queued")
            except FalUnavailable:
                outcomes.append("unavailable")
            except CircuitOpen:
                outcomes.append("circuit open")
        ready = site.call("GET", "/api/v1/health/ready")
        status_open = site.status()
        traffic.wait_for_requests(PHASE_REQUESTS)
    # FAL stays down past the generations' deadline: each fails and is refunded
    monkeypatch.setenv("FAL_SUBMIT_DEADLINE_SECONDS", "0")
    pending = [g for g, s in statuses(site, space.owner).items() if s == "pending"]
    for generation_id in pending * 2:  # a retried job changes nothing
        tasks.submit_generation(generation_id=generation_id)
    submits_while_open = fake_fal.submits

    kinds = ledgers(site, space.owner)
    final = statuses(site, space.owner)
    conclude(
        "fal_failing",
        traffic,
        site.database_url,
        order=6,
        fault="FAL failing",
        injected="fake FAL answers 500s, 504 timeouts and malformed 200s to every submit",
        invariants=f"breaker opens after {threshold}, FAL not called while open; every"
        " generation failed and refunded exactly once",
        generations=len(final),
        fal_calls=submits_while_open,
    )
    assert outcomes == ["unavailable"] * threshold + ["circuit open"] * 4
    assert submits_while_open == threshold, "FAL was called while the breaker was open"
    # the breaker is every instance's: still ready, the breaker shown to operators only
    assert ready.status_code == 200 and "fal" not in ready.text, ready.text
    assert status_open["status"] == "degraded", status_open
    assert "circuit breaker is open" in status_open["dependencies"]["fal"]["detail"]
    assert set(final.values()) == {"failed"}, final
    assert all(k == ["charge", "refund"] for k in kinds.values()), kinds
    assert balance(site, space.owner) == granted(site, space.owner)


# 7. webhook storms: duplicates, reordering, forgeries ----------------------------------------


def forged(fake_fal, request_id: str, kind: str) -> tuple[dict, bytes]:
    """A delivery FAL did not send: it must be refused and change nothing."""
    body = json.dumps({"request_id": request_id, "status": "ERROR", "error": "forged"}).encode()
    now = int(time.time())
    if kind == "unknown_key":
        return sign(Ed25519PrivateKey.generate(), request_id, now, body), body
    if kind == "stale":
        return sign(fake_fal.key, request_id, now - 301, body), body
    if kind == "body_altered":
        return sign(fake_fal.key, request_id, now, body), body.replace(b"ERROR", b"OK")
    headers = sign(fake_fal.key, request_id, now, body)
    headers["X-Fal-Webhook-Signature"] = "00" * 64
    return headers, body


def test_a_webhook_storm_under_traffic_moves_money_once(pipeline, fake_fal):
    site = pipeline
    space = workspace(site)
    created = [site.generation(space.owner, space.project_id)["id"] for _ in range(12)]
    for generation_id in created:
        tasks.submit_generation(generation_id=generation_id)
    requests_of = {
        row["id"]: row["fal_request_id"]
        for row in site.sql(
            "select id::text, fal_request_id from public.generations where id = any(%s::uuid[])",
            (created,),
        )
    }
    # genuine deliveries, three of each, and for a third of them both outcomes (reordered)
    fake_fal.hold_webhooks = True
    for n, generation_id in enumerate(created):
        request_id = requests_of[generation_id]
        outcomes = [("complete", "fail"), ("fail",), ("complete",)][n % 3]
        for outcome in outcomes * 3:
            if outcome == "complete":
                fake_fal.complete(request_id)
            else:
                fake_fal.fail(request_id, "the model crashed")
    genuine, fake_fal.held = fake_fal.held, []
    forgeries = [
        forged(fake_fal, requests_of[g], kind)
        for g in created
        for kind in ("forged_signature", "unknown_key", "stale", "body_altered")
    ]
    webhook_url = site.url("/api/v1/webhooks/fal")

    def deliver(delivery) -> int:
        if isinstance(delivery, tuple):
            headers, body = delivery
            return requests.post(webhook_url, data=body, headers=headers, timeout=30).status_code
        fake_fal._post(delivery)
        return delivery.answers[-1]

    storm = list(reversed(genuine)) + forgeries
    storm = [storm[(n * 7) % len(storm)] for n in range(len(storm))]  # interleaved, reordered
    with Traffic(everyday_calls(site, space)) as traffic:
        run_phase(traffic, "before")
        traffic.phase("during")
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(deliver, storm))
        traffic.wait_for_requests(PHASE_REQUESTS)

    kinds = ledgers(site, space.owner)
    final = statuses(site, space.owner)
    copies = site.sql(
        "select args ->> 'generation_id' as id, count(*) as n from procrastinate.procrastinate_jobs"
        " where task_name = 'velro.copy_outputs' group by 1"
    )
    copies_of = {row["id"]: row["n"] for row in copies}
    conclude(
        "webhook_storm",
        traffic,
        site.database_url,
        order=7,
        fault="Webhook storm",
        injected=f"{len(genuine)} signed deliveries for {len(created)} generations (each sent"
        f" 3 times, a third with both outcomes), reversed, mixed with {len(forgeries)} forged"
        " ones, 8 at a time",
        invariants="forged 401; one final state each; a refund iff failed, once; one media"
        " copy iff completed",
        webhooks=len(storm),
    )
    genuine_answers = [a for d, a in zip(storm, answers, strict=True) if not isinstance(d, tuple)]
    forged_answers = [a for d, a in zip(storm, answers, strict=True) if isinstance(d, tuple)]
    assert set(genuine_answers) == {200}
    assert set(forged_answers) == {401}
    for n, generation_id in enumerate(created):
        status = final[generation_id]
        expected = [("completed", "failed"), ("failed",), ("completed",)][n % 3]
        assert status in expected, (generation_id, status)
        assert kinds[generation_id] == (["charge", "refund"] if status == "failed" else ["charge"])
        assert copies_of.get(generation_id, 0) == (1 if status == "completed" else 0)


# 8. a NOTIFY storm: deleting a project of 10,000 generations -------------------------------------


STORM_GENERATIONS = 10_000


def test_deleting_a_project_of_ten_thousand_generations_keeps_serving(database_url, tmp_path):
    with serving(database_url, tmp_path / "server.log") as site:
        space = workspace(site)
        doomed = site.ok("POST", "/api/v1/projects", space.owner, 201, json={"name": "doomed"})
        # imported work (no request hash: never charged here), written as an operator would
        site.sql(
            "insert into public.generations (owner_id, project_id, model_id, prompt, status,"
            " cost, idempotency_key, completed_at)"
            " select %s, %s, %s, 'imported', 'completed', 0, 'import-' || n, now()"
            " from generate_series(1, %s) as n",
            (space.owner.id, doomed["id"], MODEL, STORM_GENERATIONS),
        )
        with Traffic(everyday_calls(site, space)) as traffic:
            run_phase(traffic, "before")
            invalidations = site.cache()["invalidations_received"]
            traffic.phase("during")
            site.ok("DELETE", f"/api/v1/projects/{doomed['id']}", space.owner, 204)
            wait_for(
                lambda: site.cache()["invalidations_received"] - invalidations >= STORM_GENERATIONS,
                "the storm to be applied",
                timeout=60,
            )
            traffic.wait_for_requests(PHASE_REQUESTS)
            traffic.phase("after")
            traffic.wait_for_requests(PHASE_REQUESTS)
            revocation = revoke_and_watch(site, space)
        stats = site.cache()

    conclude(
        "notify_storm",
        traffic,
        database_url,
        order=8,
        fault="NOTIFY storm",
        injected=f"DELETE of a project holding {STORM_GENERATIONS:,} generations (one notice"
        " each) mid-traffic",
        invariants="every request during the storm answered 2xx; a later revocation refused",
        latency_ms_before=traffic.tally("before").latency_ms(),
        notices_applied=stats["invalidations_received"] - invalidations,
        grants_after_refusal=revocation.grants_after_refusal,
    )
    during = traffic.tally("during")
    assert during.ok == during.requests, "a request during the storm was refused"
    assert revocation.grants_after_refusal == 0
