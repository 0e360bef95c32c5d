"""`python -m bench.pipeline [options]`: the FAL pipeline's own costs, on the fake FAL.

`make bench` runs the same code as its scenarios ``pipeline`` and ``live_events``
(bench/scenarios/pipeline.py, bench/scenarios/live_events.py).

Four figures, each against a floor measured in the same run:

1. submission overhead: our submit job (read the generation, ask the breaker, submit
   through fal-client, record the request id) against the fake FAL's own submit answered
   to a bare httpx client; the difference is what we add.
2. webhook handling: signed FAL webhooks through the app's route (verify, parse, record)
   against the same app answering its liveness route, both in-process, one thread.
3. job-engine throughput: submit jobs drained per second by 1 and by 2 worker processes.
4. webhook to live event: a signed FAL webhook POSTed to a real gunicorn, until the SSE
   ``status`` event it causes reaches a client following ``GET .../events`` on that server,
   against the webhook POST's own response time.

It builds its own database (``velro_bench_pipeline_<pid>``: runs in parallel, such as the
test suite's, do not collide) on $DATABASE_URL's server and drops it at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fakes.fal import FakeFal, reserve_queue_host, sign

PORT = reserve_queue_host()  # before fal_client is imported, which reads the host once

import httpx  # noqa: E402
import psycopg  # noqa: E402
import trustme  # noqa: E402

from backend.cli.migrations import apply_database  # noqa: E402
from backend.jobs.engine import install_schema  # noqa: E402
from bench.stats import summarize  # noqa: E402

DATABASE = f"velro_bench_pipeline_{os.getpid()}"
SERVER = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
MODEL = "fal-ai/flux-pro/v1.1-ultra"


def database_url() -> str:
    return psycopg.conninfo.make_conninfo(SERVER, dbname=DATABASE)


def recreate_database() -> str:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"drop database if exists {DATABASE} with (force)")
        conn.execute(f"create database {DATABASE}")
    url = database_url()
    apply_database(url, log=lambda _line: None)
    install_schema(url, lambda _line: None)
    return url


def drop_database() -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"drop database if exists {DATABASE} with (force)")


def start_fake() -> FakeFal:
    fake = FakeFal(trustme.CA(), PORT).start()
    point_fal_client_at_fake()
    os.environ.update(fake.client_environment())
    return fake


def point_fal_client_at_fake() -> None:
    """fal-client reads its hosts once, when imported; `make bench` may have imported it
    (through the app) before this module chose the fake's port, so set them again here."""
    import fal_client.client

    fal_client.client.QUEUE_URL_FORMAT = f"https://127.0.0.1:{PORT}/"
    fal_client.client.RUN_URL_FORMAT = f"https://127.0.0.1:{PORT}/"


def make_user(url: str, credits: int) -> str:
    user_id = str(uuid.uuid4())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into auth.users (id, aud, role, email, raw_app_meta_data,"
            " raw_user_meta_data, created_at, updated_at) values (%s, 'authenticated',"
            " 'authenticated', %s, '{}', '{}', now(), now())",
            (user_id, f"bench-{user_id[:8]}@example.com"),
        )
        conn.execute("update public.profiles set credits = %s where id = %s", (credits, user_id))
    return user_id


def create_generations(url: str, user_id: str, count: int) -> list[str]:
    claims = json.dumps({"sub": user_id, "role": "authenticated"})
    ids = []
    with psycopg.connect(url) as conn:
        for n in range(count):
            with conn.transaction():
                conn.execute("set local role authenticated")
                conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
                row = conn.execute(
                    "select id from public.create_generation(%s, %s)", (MODEL, f"bench {n}")
                ).fetchone()
            ids.append(str(row[0]))
    return ids


def clear_jobs(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("delete from procrastinate.procrastinate_jobs")


def nanos_since(started: int) -> int:
    return time.perf_counter_ns() - started


def submission_overhead(url: str, fake: FakeFal, rounds: int) -> dict:
    """Latency summaries (µs) of the fake's submit to a bare client and of our submit job."""
    from backend.jobs import tasks

    ids = create_generations(url, make_user(url, rounds * 100), rounds)
    floor = []
    with httpx.Client() as client:
        for _ in range(rounds):
            started = time.perf_counter_ns()
            client.post(
                f"{fake.base_url}/{MODEL}?fal_webhook=http://127.0.0.1:1/",
                json={"prompt": "x"},
                headers={"Authorization": f"Key {FakeFal.KEY}"},
            ).raise_for_status()
            floor.append(nanos_since(started))
    ours = []
    for generation_id in ids:
        started = time.perf_counter_ns()
        tasks.submit_generation(generation_id=generation_id)
        ours.append(nanos_since(started))
    subject, baseline = summarize(ours), summarize(floor)
    return {
        "subject": subject.as_dict(),
        "baseline": baseline.as_dict(),
        "overhead_p50_us": round(subject.p50 - baseline.p50, 1),
    }


def queued_generations(url: str, count: int) -> list[tuple[str, str]]:
    """(generation id, FAL request id) of ``count`` generations waiting at FAL."""
    ids = create_generations(url, make_user(url, count * 100), count)
    pairs = []
    with psycopg.connect(url, autocommit=True) as conn:
        for generation_id in ids:
            request_id = str(uuid.uuid4())
            conn.execute(
                "update public.generations set status = 'queued', fal_request_id = %s"
                " where id = %s",
                (request_id, generation_id),
            )
            pairs.append((generation_id, request_id))
    return pairs


def signed_completion(fake: FakeFal, request_id: str) -> tuple[dict, bytes]:
    """FAL's webhook for a finished request: (signed headers, body)."""
    body = json.dumps(
        {
            "request_id": request_id,
            "status": "OK",
            "payload": {"images": [{"url": "https://x/y.png"}]},
        }
    ).encode()
    return sign(fake.key, request_id, int(time.time()), body), body


def webhook_throughput(url: str, fake: FakeFal, count: int) -> dict:
    """Requests per second: signed webhooks, and the liveness route as the floor."""
    from backend import close_app, create_app

    pairs = queued_generations(url, count)
    app = create_app(
        {
            "APP_ENV": "test",
            "DATABASE_URL": url,
            "RATE_LIMIT_ENABLED": False,
            "CACHE_ENABLED": False,
        }
    )
    client = app.test_client()
    deliveries = [signed_completion(fake, request_id) for _, request_id in pairs]
    try:
        started = time.perf_counter()
        for _ in range(count):
            assert client.get("/api/v1/health/live").status_code == 200
        floor = count / (time.perf_counter() - started)
        started = time.perf_counter()
        for headers, body in deliveries:
            response = client.post("/api/v1/webhooks/fal", data=body, headers=headers)
            assert response.status_code == 200, response.get_json()
        ours = count / (time.perf_counter() - started)
    finally:
        close_app(app)
    return {
        "subject_per_second": round(ours, 1),
        "baseline_per_second": round(floor, 1),
        "ratio": round(ours / floor, 3),
        "count": count,
    }


def engine_throughput(url: str, count: int) -> dict:
    """Workers already running and idle; the clock runs from the commit of ``count``
    generations (with their jobs) until the last one is queued at FAL.

    Keyed by the number of workers: submits per second, how many, how long."""
    figures = {}
    for workers in (1, 2):
        clear_jobs(url)
        user_id = make_user(url, count * 100)
        code = "from backend.jobs import worker; worker.run()"
        env = {
            "APP_ENV": "development",
            **os.environ,
            "DATABASE_URL": url,
            "PYTHONPATH": os.getcwd(),
        }
        processes = [
            subprocess.Popen([sys.executable, "-c", code], env=env)  # noqa: S603 - our own code
            for _ in range(workers)
        ]
        try:
            wait_until(lambda n=workers: registered_workers(url) >= n)
            started = time.perf_counter()
            create_all_at_once(url, user_id, count)
            wait_until(lambda who=user_id: queued(url, who) == count)
            elapsed = time.perf_counter() - started
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=60)
        figures[str(workers)] = {
            "submits_per_second": round(count / elapsed, 1),
            "count": count,
            "seconds": round(elapsed, 2),
        }
    return figures


class EventStream(threading.Thread):
    """Follows one generation's ``GET .../events`` and stamps each complete event's arrival
    (perf_counter_ns) as it is read, so the stamp does not wait for anything else."""

    def __init__(self, port: int, generation_id: str, token: str) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request(
            "GET",
            f"/api/v1/generations/{generation_id}/events",
            headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        )
        self.response = self.conn.getresponse()
        if self.response.status != 200:
            raise RuntimeError(f"the event stream answered {self.response.status}")
        self.events: list[tuple[int, str, str]] = []  # (arrived ns, event, id)
        self.arrived = threading.Condition()

    def run(self) -> None:
        try:
            for event, event_id in parse_events(self.response):
                with self.arrived:
                    self.events.append((time.perf_counter_ns(), event, event_id))
                    self.arrived.notify_all()
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed under the reader by close(): the trial is over
        with self.arrived:
            self.events.append((time.perf_counter_ns(), "closed", ""))
            self.arrived.notify_all()

    def wait_for(self, event_id: str, seconds: float = 30.0) -> int:
        """When the ``status`` event with this id arrived; fails if the stream ends first."""
        with self.arrived:
            self.arrived.wait_for(
                lambda: any(e[1] == "closed" or e[2] == event_id for e in self.events), seconds
            )
            for arrived, event, identifier in self.events:
                if event == "status" and identifier == event_id:
                    return arrived
        raise RuntimeError(f"no status event {event_id!r} on the stream: {self.events}")

    def close(self) -> None:
        self.conn.close()


def parse_events(stream) -> Iterator[tuple[str, str]]:
    """(event, id) of each complete Server-Sent Event read from a binary stream."""
    event: dict[str, str] = {}
    for raw in iter(stream.readline, b""):
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if "event" in event:
                yield event["event"], event.get("id", "")
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")


def open_session_token(url: str, user_id: str) -> str:
    """A signed access token of a fresh session, as sign-in issues, with the run's secret."""
    from bench.scenarios.cache_support import sign_tokens

    with psycopg.connect(url, autocommit=True) as conn:
        session_id = conn.execute(
            "insert into auth.sessions (id, user_id, created_at, updated_at, aal)"
            " values (gen_random_uuid(), %s, now(), now(), 'aal1') returning id",
            (user_id,),
        ).fetchone()[0]
    return sign_tokens(url, {user_id: session_id})[user_id]


def live_event_latency(url: str, fake: FakeFal, trials: int) -> dict:
    """Webhook POST sent -> its SSE ``status`` event read by a connected client, on gunicorn.

    Each trial follows a fresh queued generation (the stream's opening event says
    ``queued``), POSTs FAL's signed completion on a second connection, and stamps the
    POST's response (the floor) and the status event the POST named (the figure)."""
    from bench.scenarios.cache_support import app_env
    from harness.servers import Server

    pairs = queued_generations(url, trials)
    with psycopg.connect(url) as conn:
        owner = str(
            conn.execute(
                "select owner_id from public.generations where id = %s", (pairs[0][0],)
            ).fetchone()[0]
        )
    token = open_session_token(url, owner)
    env = app_env(None, CACHE_ENABLED="false")  # FAL_JWKS_URL: inherited, set by start_fake
    event_ns, response_ns = [], []
    with Server(url, env=env) as server:
        poster = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            for generation_id, request_id in pairs:
                webhook_ns, post_ns = one_live_trial(
                    server.port, poster, generation_id, request_id, token, fake
                )
                event_ns.append(webhook_ns)
                response_ns.append(post_ns)
        finally:
            poster.close()
    subject, baseline = summarize(event_ns), summarize(response_ns)
    return {
        "subject": subject.as_dict(),
        "baseline": baseline.as_dict(),
        "ratio_p50": round(subject.p50 / baseline.p50, 2),
        "trials": trials,
    }


def one_live_trial(port, poster, generation_id, request_id, token, fake) -> tuple[int, int]:
    """(ns from sending the webhook to its event arriving, ns to the webhook's response)."""
    stream = EventStream(port, generation_id, token)
    stream.start()
    try:
        stream.wait_for("queued")  # connected, subscribed, and up to date
        headers, body = signed_completion(fake, request_id)
        started = time.perf_counter_ns()
        poster.request("POST", "/api/v1/webhooks/fal", body=body, headers=headers)
        response = poster.getresponse()
        answer = json.loads(response.read())
        answered = time.perf_counter_ns()
        if response.status != 200:
            raise RuntimeError(f"the webhook answered {response.status}: {answer}")
        arrived = stream.wait_for(answer["status"])
    finally:
        stream.join(timeout=5)  # a final status ends the stream from the server's side
        stream.close()
    return arrived - started, answered - started


def wait_until(condition, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the workers did not finish in time")
        time.sleep(0.02)


def registered_workers(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("select count(*) from procrastinate.procrastinate_workers").fetchone()[
            0
        ]


def queued(url: str, user_id: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select count(*) from public.generations where owner_id = %s and status = 'queued'",
            (user_id,),
        ).fetchone()[0]


def create_all_at_once(url: str, user_id: str, count: int) -> None:
    claims = json.dumps({"sub": user_id, "role": "authenticated"})
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        conn.execute(
            "select public.create_generation(%s, 'bench ' || n) from generate_series(1, %s) as n",
            (MODEL, count),
        )


SECTIONS = ("submission", "webhooks", "engine", "live_events")


@contextmanager
def pipeline_world() -> Iterator[tuple[str, FakeFal]]:
    """The pipeline's own database and a running fake FAL, for one block; the process's
    environment (which the app and fal-client read) is put back afterwards."""
    saved = dict(os.environ)
    url = recreate_database()
    os.environ["APP_ENV"] = "test"  # the jobs run here validate their settings as the app does
    os.environ["DATABASE_URL"] = url
    os.environ["FAL_WEBHOOK_URL"] = "http://127.0.0.1:1/api/v1/webhooks/fal"
    fake = start_fake()
    try:
        yield url, fake
    finally:
        fake.stop()
        drop_database()
        os.environ.clear()
        os.environ.update(saved)


def measure(generations: int, trials: int, sections=SECTIONS) -> dict:
    """The chosen figures, keyed as SECTIONS, on a database built and dropped here."""
    figures = {}
    with pipeline_world() as (url, fake):
        if "submission" in sections:
            figures["submission"] = submission_overhead(url, fake, generations)
        if "webhooks" in sections:
            figures["webhooks"] = webhook_throughput(url, fake, generations)
        if "engine" in sections:
            figures["engine"] = engine_throughput(url, generations)
        if "live_events" in sections:
            figures["live_events"] = live_event_latency(url, fake, trials)
    return figures


def text_lines(figures: dict) -> list[str]:
    """The figures as plain lines, for this module's own command."""
    lines = []
    if "submission" in figures:
        submit = figures["submission"]
        lines += [
            "Submission overhead",
            f"  fake FAL submit (bare httpx): {micros(submit['baseline'])}",
            f"  our submit job: {micros(submit['subject'])}",
            f"  overhead (p50): {submit['overhead_p50_us'] / 1000:.2f} ms",
        ]
    if "webhooks" in figures:
        hooks = figures["webhooks"]
        lines += [
            "Webhook handling",
            f"  floor: GET health/live: {hooks['baseline_per_second']:.0f} req/s",
            f"  FAL webhooks (verify + record): {hooks['subject_per_second']:.0f} req/s",
            f"  ratio: {hooks['ratio']:.2f}",
        ]
    if "engine" in figures:
        lines.append("Job engine")
        for workers, run in figures["engine"].items():
            lines.append(
                f"  {workers} worker(s): {run['submits_per_second']:.0f} submits/s "
                f"({run['count']} in {run['seconds']:.1f} s)"
            )
    if "live_events" in figures:
        live = figures["live_events"]
        lines += [
            f"Webhook to live event ({live['trials']} trials, gunicorn)",
            f"  webhook POST answered: {micros(live['baseline'])}",
            f"  SSE status event at the client: {micros(live['subject'])}",
        ]
    return lines


def micros(summary: dict) -> str:
    return f"p50 {summary['p50'] / 1000:.2f} ms, p99 {summary['p99'] / 1000:.2f} ms"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--trials", type=int, default=100, help="webhook -> SSE event trials")
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="measure only this (repeatable)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    figures = measure(args.generations, args.trials, tuple(args.only or SECTIONS))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print("\n".join(text_lines(figures)))


if __name__ == "__main__":
    main()
