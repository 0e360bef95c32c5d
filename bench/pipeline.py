"""`python -m bench.pipeline [--generations N]`: the FAL pipeline's own costs, on the fake FAL.

Three figures, each against a floor measured in the same run:

1. submission overhead: our submit job (read the generation, ask the breaker, submit
   through fal-client, record the request id) against the fake FAL's own submit answered
   to a bare httpx client; the difference is what we add.
2. webhook handling: signed FAL webhooks through the app's route (verify, parse, record)
   against the same app answering its liveness route, both in-process, one thread.
3. job-engine throughput: submit jobs drained per second by 1 and by 2 worker processes.

It builds its own database (``velro_bench_pipeline``) on $DATABASE_URL's server and drops
it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fakes.fal import FakeFal, reserve_queue_host, sign

PORT = reserve_queue_host()  # before fal_client is imported, which reads the host once

import httpx  # noqa: E402
import psycopg  # noqa: E402
import trustme  # noqa: E402

from backend.cli.migrations import apply_database  # noqa: E402
from backend.jobs.engine import install_schema  # noqa: E402

DATABASE = "velro_bench_pipeline"
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
    ca = trustme.CA()
    bundle = tempfile.NamedTemporaryFile(suffix=".pem", delete=False)  # noqa: SIM115
    bundle.write(ca.cert_pem.bytes())
    bundle.close()
    fake = FakeFal(ca, PORT).start()
    os.environ.update(SSL_CERT_FILE=bundle.name, FAL_KEY="bench:key")
    os.environ["FAL_JWKS_URL"] = fake.jwks_url
    return fake


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


def millis(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"


def submission_overhead(url: str, fake: FakeFal, rounds: int) -> dict:
    from backend.jobs import tasks

    ids = create_generations(url, make_user(url, rounds * 100), rounds)
    floor = []
    with httpx.Client() as client:
        for _ in range(rounds):
            started = time.perf_counter()
            client.post(
                f"{fake.base_url}/{MODEL}?fal_webhook=http://127.0.0.1:1/",
                json={"prompt": "x"},
                headers={"Authorization": "Key bench:key"},
            ).raise_for_status()
            floor.append(time.perf_counter() - started)
    ours = []
    for generation_id in ids:
        started = time.perf_counter()
        tasks.submit_generation(generation_id=generation_id)
        ours.append(time.perf_counter() - started)
    extra = statistics.median(ours) - statistics.median(floor)
    return {
        "fake FAL submit (bare httpx)": millis(floor),
        "our submit job": millis(ours),
        "overhead (p50)": f"{extra * 1000:.2f} ms",
    }


def webhook_throughput(url: str, fake: FakeFal, count: int) -> dict:
    from backend import close_app, create_app

    ids = create_generations(url, make_user(url, count * 100), count)
    request_ids = []
    with psycopg.connect(url, autocommit=True) as conn:
        for generation_id in ids:
            request_id = str(uuid.uuid4())
            conn.execute(
                "update public.generations set status = 'queued', fal_request_id = %s"
                " where id = %s",
                (request_id, generation_id),
            )
            request_ids.append(request_id)
    app = create_app(
        {
            "APP_ENV": "test",
            "DATABASE_URL": url,
            "RATE_LIMIT_ENABLED": False,
            "CACHE_ENABLED": False,
        }
    )
    client = app.test_client()
    deliveries = []
    for request_id in request_ids:
        body = json.dumps(
            {
                "request_id": request_id,
                "status": "OK",
                "payload": {"images": [{"url": "https://x/y.png"}]},
            }
        ).encode()
        deliveries.append((sign(fake.key, request_id, int(time.time()), body), body))
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
        "floor: GET health/live": f"{floor:.0f} req/s",
        "FAL webhooks (verify + record)": f"{ours:.0f} req/s",
        "ratio": f"{ours / floor:.2f}",
    }


def engine_throughput(url: str, count: int) -> dict:
    """Workers already running and idle; the clock runs from the commit of ``count``
    generations (with their jobs) until the last one is queued at FAL."""
    figures = {}
    for workers in (1, 2):
        clear_jobs(url)
        user_id = make_user(url, count * 100)
        code = "from backend.jobs import worker; worker.run()"
        env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": os.getcwd()}
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
        figures[f"{workers} worker(s)"] = (
            f"{count / elapsed:.0f} submits/s ({count} in {elapsed:.1f} s)"
        )
    return figures


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=200)
    args = parser.parse_args()
    url = recreate_database()
    os.environ["DATABASE_URL"] = url
    os.environ["FAL_WEBHOOK_URL"] = "http://127.0.0.1:1/api/v1/webhooks/fal"
    fake = start_fake()
    try:
        sections = {
            "Submission overhead": submission_overhead(url, fake, args.generations),
            "Webhook handling": webhook_throughput(url, fake, args.generations),
            "Job engine": engine_throughput(url, args.generations),
        }
    finally:
        fake.stop()
        drop_database()
    for title, figures in sections.items():
        print(f"\n{title}")
        for name, value in figures.items():
            print(f"  {name}: {value}")


if __name__ == "__main__":
    main()
