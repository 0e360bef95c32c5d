"""Prometheus across processes: a real gunicorn with two workers and a ``velro worker``
share one metrics directory; /metrics adds up every process's counts, and the Grafana
dashboard only asks for metrics the app exports.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from harness.servers import Server

REPO_ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = REPO_ROOT / "ops" / "grafana" / "velro.json"
LIVE = "/api/v1/health/live"
MAX_REQUESTS = 2000  # enough for the kernel to hand connections to both workers
METRIC_NAME = re.compile(r"\bvelro_[a-z0-9_]+")


def samples(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def sample_value(text: str, name: str, **labels) -> float:
    return sum(
        s.value
        for s in samples(text)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def live_requests_by_process(directory: Path) -> dict[int, float]:
    """Each process's own count of liveness requests, read from its file."""
    counts: dict[int, float] = {}
    for path in glob.glob(str(directory / "histogram_*.db")):
        pid = int(re.search(r"_(\d+)\.db$", path).group(1))
        for key, value, *_ in MmapedDict.read_all_values_from_file(path):
            _metric, sample, labels, _help = json.loads(key)
            # a process's file holds each bucket's own count (not cumulative) and the sum
            if sample.endswith("_bucket") and labels.get("route") == LIVE:
                counts[pid] = counts.get(pid, 0) + value
    return {pid: count for pid, count in counts.items() if count}


def defer_analytics_refresh(database_url: str) -> None:
    from backend.jobs.engine import on_database

    with on_database(database_url) as engine, engine.open():
        engine.configure_task("velro.refresh_analytics").defer(timestamp=0)


def run_worker_until_empty(database_url: str, env: dict) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backend", "worker", "--until-empty"],
        env={**os.environ, **env, "DATABASE_URL": database_url, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_metrics_add_up_across_gunicorn_workers_and_the_job_worker(db_url, tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {
        "APP_ENV": "test",
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "CACHE_ENABLED": "true",
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_AUTH_PER_EMAIL": "2/minute",
        "ANALYTICS_REFRESH_SECONDS": "0",
    }
    with Server(db_url, env=env, workers=2, log=tmp_path / "gunicorn.log") as server:
        # after gunicorn's start, which deletes the files of processes no longer running
        defer_analytics_refresh(db_url)
        run_worker_until_empty(db_url, env)
        sent = 0
        probes = sum(live_requests_by_process(directory).values())  # the harness's start
        while sent < MAX_REQUESTS and len(live_requests_by_process(directory)) < 2:
            for _ in range(20):  # a new connection each: the workers take turns accepting
                assert requests.get(server.url(LIVE), timeout=10).status_code == 200
                sent += 1
        by_process = live_requests_by_process(directory)
        assert len(by_process) == 2, f"one worker served all {sent} requests: {by_process}"

        email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
        statuses = []
        while 429 not in statuses and len(statuses) < 40:
            answer = requests.post(
                server.url("/api/v1/auth/login"),
                json={"email": email, "password": "wrong-password"},
                timeout=10,
            )
            statuses.append(answer.status_code)
        assert 429 in statuses, statuses

        text = requests.get(server.url("/metrics"), timeout=10).text
        assert sum(by_process.values()) == sent + probes
        assert (
            sample_value(
                text, "velro_http_request_duration_seconds_count", route=LIVE, status="200"
            )
            == sent + probes
        ), "the scrape adds up both workers"
        assert sample_value(text, "velro_auth_failed_logins_total") == statuses.count(401) + (
            statuses.count(400)
        )
        assert sample_value(text, "velro_rate_limit_refusals_total") == statuses.count(429)
        # only the job worker runs jobs; it ran the deferred refresh, and its own periodic one
        # too when that tick came after the first had finished
        assert (
            sample_value(text, "velro_jobs_total", kind="refresh_analytics", outcome="succeeded")
            >= 1
        ), "the job worker's counts are in the same scrape"
        assert sample_value(text, "velro_job_queue_depth", status="todo") >= 0
        assert sample_value(text, "velro_db_pool_connections", state="size") >= 2

        status = requests.get(server.url("/api/v1/health/status"), timeout=10).json()
        assert status["requests"]["rate_limited"] == statuses.count(429)
        routes = requests.get(server.url("/api/v1/health/metrics"), timeout=10).json()["routes"]
        live = next(r for r in routes if r["route"] == LIVE and r["method"] == "GET")
        assert live["count"] == sent + probes

    exported = {s.name for s in samples(text)}
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in METRIC_NAME.findall(target["expr"])
    }
    assert len(dashboard["panels"]) >= 10 and queried
    missing = queried - exported
    assert not missing, f"the dashboard asks for metrics the app does not export: {missing}"
    families = {re.sub(r"_(total|count|sum|bucket)$", "", name) for name in exported}
    unplotted = {f for f in families if f.startswith("velro_")} - {
        re.sub(r"_(total|count|sum|bucket)$", "", name) for name in queried
    }
    assert not unplotted, f"exported but on no panel: {unplotted}"


def test_a_replaced_worker_keeps_its_counts_but_not_its_live_gauges(db_url, tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {"APP_ENV": "test", "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    with Server(db_url, env=env, workers=1, log=tmp_path / "gunicorn.log") as server:
        for _ in range(3):
            requests.get(server.url(LIVE), timeout=10)
        (first,) = live_requests_by_process(directory)
        os.kill(first, 15)  # gunicorn starts another worker; child_exit runs in the master
        gauges_left = directory / f"gauge_livesum_{first}.db"
        for _ in range(200):
            response = requests.get(server.url(LIVE), timeout=10)
            if not gauges_left.exists() and response.status_code == 200:
                break
        assert not gauges_left.exists(), "child_exit marks the dead worker"
        text = requests.get(server.url("/metrics"), timeout=10).text
        total = sample_value(text, "velro_http_request_duration_seconds_count", route=LIVE)
        assert total >= 4, "the dead worker's requests still count"
        assert sum(live_requests_by_process(directory).values()) == total


# in one process ---------------------------------------------------------------------------


def counter(name: str, **labels) -> float:
    from backend.observability.metrics import counter_total

    return counter_total(name, **labels)


def test_jobs_are_counted_by_kind_and_outcome():
    import asyncio

    from backend.observability.metrics import counted_job

    @counted_job
    def sample_job(fail: bool) -> str:
        if fail:
            raise RuntimeError("this attempt fails")
        return "done"

    @counted_job
    async def sample_async_job() -> str:
        return "done"

    assert sample_job(False) == "done"
    with pytest.raises(RuntimeError):
        sample_job(True)
    assert asyncio.run(sample_async_job()) == "done"
    assert counter("velro_jobs", kind="sample_job", outcome="succeeded") == 1
    assert counter("velro_jobs", kind="sample_job", outcome="failed") == 1
    assert counter("velro_jobs", kind="sample_async_job", outcome="succeeded") == 1
    assert counter("velro_jobs", kind="sample_async_job", outcome="failed") == 0


def test_forged_fal_webhooks_are_counted(make_app):
    client = make_app().test_client()
    before = counter("velro_fal_webhooks", outcome="bad_signature")
    body = json.dumps({"request_id": str(uuid.uuid4()), "status": "OK", "payload": {}}).encode()
    unsigned = {"X-Fal-Webhook-Request-Id": "x"}
    response = client.post("/api/v1/webhooks/fal", data=body, headers=unsigned)
    assert response.status_code == 401, response.get_json()
    assert counter("velro_fal_webhooks", outcome="bad_signature") - before == 1
