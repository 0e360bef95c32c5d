"""The generation pipeline against a fake FAL over real HTTPS: outbox, submit, webhooks,
poller, cancel, circuit breaker, and a worker killed mid-job.

The app is served over real HTTP (the fake posts its signed webhooks there); jobs run
through the real worker (``backend.jobs.worker.run(wait=False)`` drains the queue) or, where
a test needs one step, by calling the task's function.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from api_support import MODEL, MODEL_COST, assert_error, running_api
from fakes.fal import sign
from integrity import assert_sound
from psycopg.rows import dict_row
from werkzeug.datastructures import MultiDict
from werkzeug.serving import make_server

from backend.api import generations as generations_routes
from backend.config import load_settings
from backend.fal.breaker import CircuitOpen
from backend.fal.queue import FalUnavailable
from backend.jobs import tasks, worker
from backend.jobs.engine import on_database
from backend.observability.metrics import counter_total

pytest_plugins = ["fixtures_fal"]


@pytest.fixture(scope="module")
def api(database_factory, migrated_template, fal_server):
    # the app reads its FAL settings at start: aimed at the fake for this module only
    with pytest.MonkeyPatch.context() as env:
        for name, value in fal_server.client_environment().items():
            env.setenv(name, value)
        with running_api(database_factory(migrated_template)) as running:
            server = make_server("127.0.0.1", 0, running.app, threaded=True)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            running.base_url = f"http://127.0.0.1:{server.server_port}"
            yield running
            server.shutdown()
            server.server_close()


@pytest.fixture(autouse=True)
def pipeline_env(api, fake_fal, monkeypatch):
    """The worker's settings for this test: the module's database, the app's webhook URL."""
    monkeypatch.setenv("APP_ENV", "test")  # the worker validates its settings as the app does
    monkeypatch.setenv("DATABASE_URL", api.db_url)
    monkeypatch.setenv("FAL_WEBHOOK_URL", f"{api.base_url}/api/v1/webhooks/fal")
    monkeypatch.setenv("FAL_SUBMIT_RETRY_SECONDS", "0")
    monkeypatch.setenv("FAL_BREAKER_THRESHOLD", "1000")
    api.sql("delete from private.circuit_breakers")
    api.sql("delete from procrastinate.procrastinate_jobs where status = 'todo'")


def create(api, user, **fields) -> dict:
    body = {"model_id": MODEL, "prompt": "a lighthouse at dusk", **fields}
    return api.ok("POST", "/api/v1/generations", user, 201, json=body)


def generation(api, generation_id) -> dict:
    return api.sql("select * from public.generations where id = %s", (generation_id,))[0]


def ledger(api, generation_id) -> list[str]:
    rows = api.sql(
        "select kind::text from public.credit_ledger where generation_id = %s order by created_at",
        (generation_id,),
    )
    return [row["kind"] for row in rows]


def balance(api, user) -> int:
    return api.sql("select credits from public.profiles where id = %s", (user.id,))[0]["credits"]


def jobs(api, generation_id, task="velro.submit_generation") -> list[dict]:
    return api.sql(
        "select id, status::text from procrastinate.procrastinate_jobs"
        " where task_name = %s and args ->> 'generation_id' = %s",
        (task, str(generation_id)),
    )


def submitted(api, user, fake_fal) -> tuple[dict, str]:
    """A generation the worker has sent to the fake FAL: (generation, FAL request id)."""
    created = create(api, user)
    tasks.submit_generation(generation_id=created["id"])
    row = generation(api, created["id"])
    assert row["status"] == "queued"
    return created, row["fal_request_id"]


def post_webhook(api, headers: dict, body: bytes):
    return api.client.post("/api/v1/webhooks/fal", data=body, headers=headers)


# the outbox ----------------------------------------------------------------------------


def test_a_new_generation_commits_with_its_submit_job(api):
    user = api.user()
    created = create(api, user)
    assert [job["status"] for job in jobs(api, created["id"])] == ["todo"]


def test_a_refused_create_leaves_no_job(api):
    user = api.user()
    api.set_credits(user, 0)
    before = api.sql("select count(*) as n from procrastinate.procrastinate_jobs")[0]["n"]
    response = api.call(
        "POST", "/api/v1/generations", user, json={"model_id": MODEL, "prompt": "x"}
    )
    assert_error(response, 402)
    assert api.sql("select count(*) as n from procrastinate.procrastinate_jobs")[0]["n"] == before


def test_a_generation_created_by_direct_sql_as_postgrest_gets_submitted(api, fake_fal):
    user = api.user()
    claims = json.dumps({"sub": user.id, "role": "authenticated", "aud": "authenticated"})
    with psycopg.connect(api.db_url, row_factory=dict_row) as conn:
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        created = conn.execute(
            "select id from public.create_generation(%s, %s)", (MODEL, "direct from PostgREST")
        ).fetchone()
    worker.run(api.db_url, wait=False)
    row = generation(api, created["id"])
    assert row["status"] == "queued"
    request = fake_fal.requests[row["fal_request_id"]]
    assert request.arguments["prompt"] == "direct from PostgREST"
    assert request.webhook_url == tagged_url(load_settings(), created["id"])
    assert request.webhook_url.startswith(f"{api.base_url}/api/v1/webhooks/fal?generation_id=")
    assert ledger(api, created["id"]) == ["charge"]


def test_the_job_engine_is_out_of_reach_of_the_api_roles(api):
    with psycopg.connect(api.db_url) as conn:
        for role in ("anon", "authenticated", "service_role"):
            conn.execute(f"set local role {role}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select count(*) from procrastinate.procrastinate_jobs")
            conn.rollback()


# submission ----------------------------------------------------------------------------


def test_submit_sends_the_prompt_and_parameters_and_queues(api, fake_fal):
    user = api.user()
    created = create(api, user, parameters={"aspect_ratio": "16:9"})
    worker.run(api.db_url, wait=False)
    row = generation(api, created["id"])
    assert row["status"] == "queued"
    request = fake_fal.only_request()
    assert request.model_id == MODEL
    assert request.arguments == {"prompt": "a lighthouse at dusk", "aspect_ratio": "16:9"}
    assert jobs(api, created["id"]) == []  # done and deleted


def test_a_refused_submission_fails_and_refunds_once(api, fake_fal):
    user = api.user()
    start = balance(api, user)
    created = create(api, user)
    fake_fal.submit_status = 422
    tasks.submit_generation(generation_id=created["id"])
    tasks.submit_generation(generation_id=created["id"])  # a retry changes nothing
    row = generation(api, created["id"])
    assert row["status"] == "failed"
    assert "422" in row["error"]
    assert ledger(api, created["id"]) == ["charge", "refund"]
    assert balance(api, user) == start


def test_an_unreachable_fal_is_retried_until_the_deadline_then_refunded_once(
    api, fake_fal, monkeypatch
):
    user = api.user()
    start = balance(api, user)
    created = create(api, user)
    fake_fal.submit_failures = 2
    for _ in range(2):
        with pytest.raises(FalUnavailable):
            tasks.submit_generation(generation_id=created["id"])
    assert generation(api, created["id"])["status"] == "pending"
    assert balance(api, user) == start - MODEL_COST
    fake_fal.submit_failures = 10
    monkeypatch.setenv("FAL_SUBMIT_DEADLINE_SECONDS", "0")
    tasks.submit_generation(generation_id=created["id"])
    tasks.submit_generation(generation_id=created["id"])
    row = generation(api, created["id"])
    assert row["status"] == "failed"
    assert ledger(api, created["id"]) == ["charge", "refund"]
    assert balance(api, user) == start
    assert fake_fal.submits == 2  # past the deadline it does not try again


def test_a_failed_attempt_is_retried_by_the_worker(api, fake_fal):
    user = api.user()
    created = create(api, user)
    fake_fal.submit_failures = 1
    worker.run(api.db_url, wait=False)  # the first attempt fails; its retry is due at once
    worker.run(api.db_url, wait=False)
    assert generation(api, created["id"])["status"] == "queued"
    assert fake_fal.submits == 2
    assert ledger(api, created["id"]) == ["charge"]


def test_the_breaker_opens_after_consecutive_failures_and_holds_submissions(
    api, fake_fal, monkeypatch
):
    monkeypatch.setenv("FAL_BREAKER_THRESHOLD", "2")
    user = api.user()
    created = create(api, user)
    fake_fal.submit_failures = 5
    for _ in range(2):
        with pytest.raises(FalUnavailable):
            tasks.submit_generation(generation_id=created["id"])
    with pytest.raises(CircuitOpen):
        tasks.submit_generation(generation_id=created["id"])
    assert fake_fal.submits == 2  # failed fast: FAL was not asked
    assert generation(api, created["id"])["status"] == "pending"  # waiting, not lost
    # the breaker is every instance's: still ready; operators see it in /status
    assert api.client.get("/api/v1/health/ready").status_code == 200
    assert fal_state(api) == "failing"
    api.sql("update private.circuit_breakers set opened_until = now() where name = 'fal'")
    fake_fal.submit_failures = 0
    tasks.submit_generation(generation_id=created["id"])  # the trial closes it
    assert generation(api, created["id"])["status"] == "queued"
    assert fal_state(api) == "ok"


def fal_state(api) -> str:
    return api.ok("GET", "/api/v1/health/status")["dependencies"]["fal"]["state"]


# webhooks ------------------------------------------------------------------------------


def test_a_webhook_completes_the_generation_and_queues_the_media_copy(api, fake_fal):
    user = api.user()
    created, request_id = submitted(api, user, fake_fal)
    fake_fal.complete(request_id)
    webhook = fake_fal.sent[-1]
    assert webhook.answers == [200]
    row = generation(api, created["id"])
    assert row["status"] == "completed"
    assert row["outputs"][0]["url"].endswith(f"{request_id}.png")
    assert row["outputs"][0]["width"] == 1024
    assert ledger(api, created["id"]) == ["charge"]
    assert len(jobs(api, created["id"], "velro.copy_outputs")) == 1


def many_images(request_id: str, count: int) -> dict:
    return {
        "images": [
            {"url": f"https://fal.media/files/{request_id}-{n}.png", "content_type": "image/png"}
            for n in range(count)
        ]
    }


@pytest.mark.parametrize("announced_by", ["webhook", "poller"])
def test_a_result_with_thousands_of_outputs_keeps_only_as_many_as_are_copied(
    api, fake_fal, monkeypatch, announced_by
):
    """What the media copy takes at most (MEDIA_MAX_OUTPUTS) is all that is stored of a
    result, however it arrives: the first ones, in order, and the generation completes."""
    monkeypatch.setenv("FAL_POLL_AFTER_SECONDS", "0")
    most = api.app.config["SETTINGS"].MEDIA_MAX_OUTPUTS
    assert most == load_settings().MEDIA_MAX_OUTPUTS  # the worker's copy job reads this one
    user = api.user()
    created, request_id = submitted(api, user, fake_fal)
    result = many_images(request_id, 2000)
    if announced_by == "webhook":
        fake_fal.complete(request_id, result)
        assert fake_fal.sent[-1].answers == [200]
    else:
        fake_fal.complete(request_id, result, send=False)
        tasks.poll_once(load_settings())
    row = generation(api, created["id"])
    assert row["status"] == "completed"
    assert row["outputs"] == result["images"][:most]
    assert len(jobs(api, created["id"], "velro.copy_outputs")) == 1


def test_a_failure_webhook_refunds_once_even_when_duplicated(api, fake_fal):
    user = api.user()
    start = balance(api, user)
    created, request_id = submitted(api, user, fake_fal)
    fake_fal.duplicate = True
    fake_fal.fail(request_id, "out of memory")
    assert [webhook.answers for webhook in fake_fal.sent] == [[200], [200]]
    row = generation(api, created["id"])
    assert row["status"] == "failed"
    assert "out of memory" in row["error"]
    assert ledger(api, created["id"]) == ["charge", "refund"]
    assert balance(api, user) == start


def test_duplicate_and_late_webhooks_change_nothing(api, fake_fal):
    user = api.user()
    created, request_id = submitted(api, user, fake_fal)
    fake_fal.duplicate = True
    fake_fal.complete(request_id)
    finished = generation(api, created["id"])
    late = fake_fal.send_webhook(fake_fal.requests[request_id], {"status": "ERROR", "error": "x"})
    assert late.answers == [200]
    assert generation(api, created["id"]) == finished
    assert ledger(api, created["id"]) == ["charge"]
    assert len(jobs(api, created["id"], "velro.copy_outputs")) == 1


def test_reordered_webhooks_keep_the_first_final_answer(api, fake_fal):
    user = api.user()
    created, request_id = submitted(api, user, fake_fal)
    request = fake_fal.requests[request_id]
    fake_fal.hold_webhooks = True
    fake_fal.send_webhook(request, {"status": "OK", "payload": {"images": []}})  # sent first
    fake_fal.complete(request_id)  # sent second, arrives first
    fake_fal.release(reverse=True)
    row = generation(api, created["id"])
    assert row["status"] == "completed"
    assert ledger(api, created["id"]) == ["charge"]


def test_a_webhook_that_outruns_the_workers_record_applies_at_once(api, fake_fal, monkeypatch):
    """FAL answers the submission and finishes before the worker writes the request id
    down: the webhook URL names the generation, which takes the request id then and there,
    and the worker's record that follows changes nothing and cancels nothing."""
    user = api.user()
    created = create(api, user)
    fake_fal.auto_complete = fake_fal.hold_webhooks = True
    record_submission = tasks.progress.record_submission

    def webhook_first(cur, generation_id, request_id):
        wait_for(lambda: fake_fal.held, "the fake's webhook")
        fake_fal.release()  # over HTTP, on the app's own connection, before this record
        return record_submission(cur, generation_id, request_id)

    monkeypatch.setattr(tasks.progress, "record_submission", webhook_first)
    tasks.submit_generation(generation_id=created["id"])
    [webhook] = fake_fal.sent
    [request] = fake_fal.requests.values()
    assert webhook.answers == [200]
    row = generation(api, created["id"])
    assert (row["status"], row["fal_request_id"]) == ("completed", request.request_id)
    assert request.error is None, "the run the generation holds is not cancelled"
    assert ledger(api, created["id"]) == ["charge"]


@pytest.mark.parametrize("url", ["naming no generation", "with a tag we did not make"])
def test_an_unrecorded_delivery_without_our_name_waits_for_the_record(api, fake_fal, url):
    """Found by its request id alone: 404 (FAL retries) until the id is recorded."""
    user = api.user()
    created = create(api, user)
    other = create(api, user)
    settings = load_settings()
    webhook_url = {
        "naming no generation": settings.fal_webhook_url,
        # a genuine tag, of another generation: a tag names one generation only
        "with a tag we did not make": tagged_url(settings, other["id"]).replace(
            str(other["id"]), str(created["id"])
        ),
    }[url]
    fake_fal.hold_webhooks = True
    request_id = fake_fal_submit(fake_fal, webhook_url)
    fake_fal.complete(request_id)
    webhook = fake_fal.held[0]
    fake_fal.release()
    assert webhook.answers == [404]  # FAL retries non-2xx deliveries
    assert generation(api, created["id"])["status"] == "pending"
    api.sql(
        "select public.record_generation_progress(%s, 'queued', %s)", (created["id"], request_id)
    )
    fake_fal.held.append(webhook)
    fake_fal.release()
    assert webhook.answers == [404, 200]
    assert generation(api, created["id"])["status"] == "completed"


@pytest.mark.parametrize("held", ["another request", "nothing: it was cancelled"])
def test_a_delivery_of_a_request_its_generation_does_not_hold_is_acknowledged(api, fake_fal, held):
    """A submission repeated after its worker died unrecorded, or a generation cancelled
    while FAL took it: the delivery gets 200 (so FAL stops retrying) and changes nothing."""
    user = api.user()
    if held == "another request":
        created, recorded = submitted(api, user, fake_fal)
    else:
        created, recorded = create(api, user), None
        api.ok("POST", f"/api/v1/generations/{created['id']}/cancel", user)
    before = api.fingerprint()
    _, webhook = finished_at_fal(fake_fal, tagged_url(load_settings(), created["id"]))
    not_held = counter_total("velro_fal_webhooks", outcome="not_held")
    fake_fal.release()
    assert webhook.answers == [200]
    assert counter_total("velro_fal_webhooks", outcome="not_held") - not_held == 1
    assert json.loads(webhook.replies[0])["applied"] is False
    assert json.loads(webhook_response(webhook))["applied"] is False  # and again, the same
    assert api.fingerprint() == before
    row = generation(api, created["id"])
    assert row["fal_request_id"] == recorded


def test_the_workers_record_and_an_early_webhook_race_on_real_connections(api, fake_fal):
    """The webhook of a first, unrecorded submission (R1) and the worker's record of a
    repeated one (R2) lock the same row: whichever is first decides, the other follows."""
    settings = load_settings()
    user = api.user()

    # the worker's record holds the row first: the webhook waits, then finds R2 and stays out
    first = create(api, user)
    finished_at_fal(fake_fal, tagged_url(settings, first["id"]))
    delivered_while_the_worker_records(
        api,
        fake_fal,
        first["id"],
        lambda cur: cur.execute(
            "select public.record_generation_progress(%s, 'queued', 'R2')", (first["id"],)
        ),
    )
    assert fake_fal.sent[-1].answers == [200]
    row = generation(api, first["id"])
    assert (row["status"], row["fal_request_id"]) == ("queued", "R2")

    # the webhook is first: it takes R1, and the worker's record of R2 reports it is not held
    second = create(api, user)
    early, _ = finished_at_fal(fake_fal, tagged_url(settings, second["id"]))
    fake_fal.release()
    assert fake_fal.sent[-1].answers == [200]
    with psycopg.connect(api.db_url, row_factory=dict_row) as worker_conn:
        assert tasks.progress.record_submission(worker_conn.cursor(), second["id"], "R2") is False
    row = generation(api, second["id"])
    assert (row["status"], row["fal_request_id"]) == ("completed", early)
    assert ledger(api, second["id"]) == ["charge"]


def test_a_delivery_waiting_on_the_workers_record_of_its_own_request_applies(api, fake_fal):
    """The delivery looks for its request id before the worker's record commits, finds
    none, and waits on the named generation's lock: once the worker has recorded that same
    request, the delivery applies (it is not a request the generation does not hold)."""
    settings = load_settings()
    user = api.user()
    created = create(api, user)
    request_id, _ = finished_at_fal(fake_fal, tagged_url(settings, created["id"]))
    recorded = delivered_while_the_worker_records(
        api,
        fake_fal,
        created["id"],
        lambda cur: tasks.progress.record_submission(cur, created["id"], request_id),
    )
    assert recorded
    [webhook] = fake_fal.sent
    assert webhook.answers == [200]
    receipt = json.loads(webhook.replies[0])
    assert (receipt["status"], receipt["applied"]) == ("completed", True)
    row = generation(api, created["id"])
    assert (row["status"], row["fal_request_id"]) == ("completed", request_id)
    assert ledger(api, created["id"]) == ["charge"]


def test_an_unrecorded_failure_named_by_its_url_is_refunded_once(api, fake_fal):
    settings = load_settings()
    user = api.user()
    created = create(api, user)
    request_id, webhook = finished_at_fal(fake_fal, tagged_url(settings, created["id"]), "fail")
    fake_fal.release()
    assert webhook.answers == [200]
    webhook_response(webhook)  # FAL delivers it again: nothing more happens
    row = generation(api, created["id"])
    assert (row["status"], row["fal_request_id"]) == ("failed", request_id)
    assert ledger(api, created["id"]) == ["charge", "refund"]


def test_a_delivery_for_a_generation_deleted_since_is_acknowledged(api, fake_fal):
    """Its URL names a generation that no longer exists (an account's deletion took it):
    200, so that FAL stops retrying, and nothing changes."""
    settings = load_settings()
    user = api.user()
    created = create(api, user)
    _, webhook = finished_at_fal(fake_fal, tagged_url(settings, created["id"]))
    api.sql("delete from auth.users where id = %s", (user.id,))  # the account, and its work
    before = api.fingerprint()
    fake_fal.release()
    assert webhook.answers == [200]
    receipt = json.loads(webhook.replies[0])
    assert receipt == {"generation_id": created["id"], "status": None, "applied": False}
    assert api.fingerprint() == before


@pytest.mark.parametrize("tag", ["%C3%A9", "%E2%82%AC" * 11, "0" * 33])
def test_a_tag_that_is_not_ours_in_any_spelling_is_a_404_not_a_500(api, fake_fal, tag):
    user = api.user()
    created = create(api, user)
    url = f"{load_settings().fal_webhook_url}?generation_id={created['id']}&tag={tag}"
    _, webhook = finished_at_fal(fake_fal, url)
    fake_fal.release()
    assert webhook.answers == [404]
    assert generation(api, created["id"])["status"] == "pending"


def test_webhook_urls_keep_the_configured_query_and_name_one_generation(monkeypatch):
    from backend.fal.webhooks import generation_named

    monkeypatch.setenv("FAL_WEBHOOK_URL", "https://api.example/api/v1/webhooks/fal?source=fal")
    settings = load_settings()
    generation_id = str(uuid.uuid4())
    url = httpx.URL(tagged_url(settings, generation_id))
    arguments = dict(url.params)
    assert arguments["source"] == "fal"
    assert generation_named(settings, arguments) == generation_id
    for changed in (
        {"generation_id": str(uuid.uuid4())},
        {"tag": "0" * len(arguments["tag"])},
        {"tag": ""},
        {"generation_id": "not-a-uuid"},
    ):
        assert generation_named(settings, {**arguments, **changed}) is None
    assert generation_named(settings, {}) is None
    # a repeated name: the first is the one checked and the one used
    other = str(uuid.uuid4())
    named_twice = MultiDict([*url.params.multi_items(), ("generation_id", other)])
    assert generation_named(settings, named_twice) == generation_id
    named_first = MultiDict([("generation_id", other), *url.params.multi_items()])
    assert generation_named(settings, named_first) is None


def test_the_configured_webhook_query_is_kept_as_written(monkeypatch):
    monkeypatch.setenv("FAL_WEBHOOK_URL", "https://api.example/hooks/fal?flag&x=&space=a%20b")
    url = tagged_url(load_settings(), uuid.uuid4())
    assert url.startswith("https://api.example/hooks/fal?flag&x=&space=a%20b&generation_id=")


def tagged_url(settings, generation_id) -> str:
    from backend.fal.webhooks import webhook_url

    return webhook_url(settings, str(generation_id))


def finished_at_fal(fake_fal, webhook_url: str, end: str = "complete"):
    """A request FAL took and finished (``end``: complete or fail) before our record of its
    id: (its id, its delivery, held until ``fake_fal.release()``)."""
    fake_fal.hold_webhooks = True
    request_id = fake_fal_submit(fake_fal, webhook_url)
    getattr(fake_fal, end)(request_id)
    [webhook] = fake_fal.held
    return request_id, webhook


def delivered_while_the_worker_records(api, fake_fal, generation_id, record):
    """The held delivery waits on the generation's row, which a worker's connection holds
    locked, while ``record(cursor)`` runs there and commits; record's answer."""
    with psycopg.connect(api.db_url, row_factory=dict_row) as worker_conn:
        worker_conn.execute(
            "select 1 from public.generations where id = %s for update", (generation_id,)
        )
        with ThreadPoolExecutor(1) as pool:
            delivered = pool.submit(fake_fal.release)
            wait_for(lambda: waiting_on_a_lock(api), "the webhook waiting on the worker's lock")
            recorded = record(worker_conn.cursor())
            worker_conn.commit()
            delivered.result(timeout=30)
    return recorded


def fake_fal_submit(fake_fal, webhook_url: str) -> str:
    """FAL has the request, but our record of its id has not committed yet."""
    from backend.fal.queue import FalQueue

    return FalQueue(fake_fal.KEY).submit(MODEL, {"prompt": "x"}, webhook_url)


def webhook_response(webhook) -> bytes:
    """The app's answer to this delivery, sent once more (a duplicate changes nothing)."""
    return post_webhook_to(webhook.url, webhook.headers, webhook.body)


def post_webhook_to(url: str, headers: dict, body: bytes) -> bytes:
    with httpx.Client() as client:
        response = client.post(url, content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.content


def waiting_on_a_lock(api) -> bool:
    """The webhook's lookup of its named generation waits for a row lock in this database."""
    return bool(
        api.sql(
            "select 1 from pg_stat_activity where wait_event_type = 'Lock'"
            " and datname = current_database() and pid <> pg_backend_pid()"
            " and starts_with(query, %s)",
            ('select id, status, fal_request_id from public.generations where "id" = ',),
        )
    )


@pytest.mark.parametrize(
    "forgery", ["forged_signature", "unknown_key", "stale", "future", "body_altered"]
)
def test_unverified_webhooks_get_401_and_change_nothing(api, fake_fal, forgery):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    user = api.user()
    created, request_id = submitted(api, user, fake_fal)
    body = json.dumps({"request_id": request_id, "status": "ERROR", "error": "forged"}).encode()
    now = int(time.time())
    headers = {
        "forged_signature": {**sign(fake_fal.key, request_id, now, body)},
        "unknown_key": sign(Ed25519PrivateKey.generate(), request_id, now, body),
        "stale": sign(fake_fal.key, request_id, now - 301, body),
        # a minute beyond the 300 s window: the call may cross a second boundary meanwhile
        "future": sign(fake_fal.key, request_id, now + 360, body),  # kept to replay later
        "body_altered": sign(fake_fal.key, request_id, now, body.replace(b"ERROR", b"OK")),
    }[forgery]
    if forgery == "forged_signature":
        headers["X-Fal-Webhook-Signature"] = "00" * 64
    before = api.fingerprint()
    body_error = assert_error(post_webhook(api, headers, body), 401, "invalid_signature")
    assert body_error["message"]
    assert api.fingerprint() == before
    assert generation(api, created["id"])["status"] == "queued"


def test_an_unknown_key_refetches_the_jwks_once_within_the_interval(api, fake_fal):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    user = api.user()
    _created, request_id = submitted(api, user, fake_fal)
    body = json.dumps({"request_id": request_id, "status": "OK", "payload": {}}).encode()
    stranger = Ed25519PrivateKey.generate()
    fetches = fake_fal.jwks_fetches
    for _ in range(3):
        headers = sign(stranger, request_id, int(time.time()), body)
        assert_error(post_webhook(api, headers, body), 401)
    assert fake_fal.jwks_fetches - fetches <= 1


def test_a_failing_key_server_is_asked_once_by_concurrent_deliveries_and_not_again_soon():
    """While FAL's key server hangs, forged deliveries do not each hold a thread on a fetch:
    one fetches, the others take its failure, and none fetches again for a while."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from backend.fal.signatures import KeysUnavailable, WebhookVerifier

    fetched = []

    def hanging_then_failing(url):
        fetched.append(url)
        time.sleep(0.3)
        raise httpx.ConnectTimeout("no answer")

    verifier = WebhookVerifier("https://keys.fal.example/jwks.json", fetch=hanging_then_failing)
    headers = sign(Ed25519PrivateKey.generate(), "forged", int(time.time()), b"{}")
    barrier = threading.Barrier(8)

    def deliver():
        barrier.wait()
        with pytest.raises(KeysUnavailable):
            verifier.verify(headers, b"{}")

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(deliver) for _ in range(8)]:
            future.result()
    with pytest.raises(KeysUnavailable):
        verifier.verify(headers, b"{}")
    assert len(fetched) == 1


def test_a_rotated_key_is_picked_up_by_one_refetch(api, fake_fal):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from backend.api.fal_webhooks import VERIFIER, WebhookVerifier

    user = api.user()
    created, request_id = submitted(api, user, fake_fal)
    fake_fal.complete(request_id, send=False)
    verifier = api.app.extensions[VERIFIER] = WebhookVerifier(fake_fal.jwks_url)
    primer = sign(fake_fal.key, "primer", int(time.time()), b"{}")
    assert verifier.verify(primer, b"{}") == "primer"  # the old key, cached
    fake_fal.key = Ed25519PrivateKey.generate()  # FAL rotates
    verifier._fetched_at -= 3600  # an hour later: the refetch interval has passed
    verifier._attempted_at -= 3600
    request = fake_fal.requests[request_id]
    webhook = fake_fal.send_webhook(request, {"status": "OK", "payload": request.result})
    assert webhook.answers == [200]
    assert verifier.fetches == 2
    assert generation(api, created["id"])["status"] == "completed"


# cancel --------------------------------------------------------------------------------


def test_cancel_while_queued_cancels_at_fal_and_refunds(api, fake_fal):
    user = api.user()
    start = balance(api, user)
    created, request_id = submitted(api, user, fake_fal)
    body = api.ok("POST", f"/api/v1/generations/{created['id']}/cancel", user)
    assert body["status"] == "cancelled"
    assert fake_fal.requests[request_id].error == "cancelled"
    assert ledger(api, created["id"]) == ["charge", "refund"]
    assert balance(api, user) == start


def test_cancel_before_submission_stops_the_submit_job(api, fake_fal):
    user = api.user()
    created = create(api, user)
    api.ok("POST", f"/api/v1/generations/{created['id']}/cancel", user)
    worker.run(api.db_url, wait=False)
    assert fake_fal.submits == 0
    assert generation(api, created["id"])["status"] == "cancelled"


@pytest.mark.parametrize("meanwhile", ["the user cancels it", "the account is deleted"])
def test_a_generation_gone_during_its_submission_is_cancelled_at_fal(
    api, fake_fal, monkeypatch, meanwhile
):
    """Between the submit job's read of the pending row and FAL's answer the generation is
    cancelled (and refunded) or deleted: the job cannot record the request id on it, so it
    cancels the run at FAL instead of leaving it to run for nobody."""
    user = api.user()
    start = balance(api, user)
    created = create(api, user)
    real_queue_for = tasks.queue_for

    def act():
        if meanwhile == "the user cancels it":
            api.ok("POST", f"/api/v1/generations/{created['id']}/cancel", user)
        else:
            api.sql("delete from auth.users where id = %s", (user.id,))

    class ActsDuringSubmit:
        def __init__(self, queue):
            self.queue = queue

        def submit(self, *args):
            act()
            return self.queue.submit(*args)

        def cancel(self, *args):
            return self.queue.cancel(*args)

    monkeypatch.setattr(tasks, "queue_for", lambda s: ActsDuringSubmit(real_queue_for(s)))
    tasks.submit_generation(generation_id=created["id"])
    assert fake_fal.submits == 1
    [request] = fake_fal.requests.values()
    assert request.error == "cancelled", "the run nobody waits for is cancelled at FAL"
    if meanwhile == "the user cancels it":
        assert generation(api, created["id"])["status"] == "cancelled"
        assert ledger(api, created["id"]) == ["charge", "refund"]
        assert balance(api, user) == start
    else:
        assert not api.sql("select 1 from public.generations where id = %s", (created["id"],))


def test_a_failure_reported_while_fal_confirms_a_cancel_stands_refunded_once(
    api, fake_fal, monkeypatch
):
    """FAL's failure webhook for the request lands after FAL took it off its queue and before
    the route records the cancellation: the failure stands, and the charge comes back once."""
    user = api.user()
    start = balance(api, user)
    created, request_id = submitted(api, user, fake_fal)
    real_queue_for = generations_routes.queue_for

    class FailureArrivesDuringCancel:
        def __init__(self, queue):
            self.queue = queue

        def cancel(self, *args):
            self.queue.cancel(*args)
            fake_fal.fail(request_id, "cancelled")  # its webhook is answered before this returns

    monkeypatch.setattr(
        generations_routes, "queue_for", lambda s: FailureArrivesDuringCancel(real_queue_for(s))
    )
    body = api.ok("POST", f"/api/v1/generations/{created['id']}/cancel", user)
    assert body["status"] == "failed"
    assert ledger(api, created["id"]) == ["charge", "refund"]
    assert balance(api, user) == start


def test_work_an_account_deletion_drops_is_cancelled_at_fal(api, fake_fal):
    """The account's own generation, queued at FAL, goes with the account: its deletion
    commits a job that cancels the request at FAL, which nobody waits for any more."""
    user = api.user()
    _, request_id = submitted(api, user, fake_fal)
    api.sql("delete from auth.users where id = %s", (user.id,))
    jobs = api.sql(
        "select args from procrastinate.procrastinate_jobs "
        "where task_name = 'velro.cancel_fal_request' and status = 'todo'"
    )
    assert [job["args"] for job in jobs] == [{"model_id": MODEL, "request_id": request_id}]
    assert fake_fal.requests[request_id].status == "IN_QUEUE"
    tasks.cancel_fal_request(**jobs[0]["args"])
    assert fake_fal.requests[request_id].error == "cancelled"
    tasks.cancel_fal_request(**jobs[0]["args"])  # a retry after FAL ended it: nothing to do


def test_a_cancel_waiting_on_the_workers_record_is_409_and_a_second_goes_through_fal(api, fake_fal):
    """The cancel finds no request id, then waits on the row the worker holds while it
    records FAL's answer: it must not refund what FAL now holds (409, nothing changed). Sent
    again, the cancel asks FAL, which takes the request off its queue, and refunds once."""
    user = api.user()
    start = balance(api, user)
    created = create(api, user)
    request_id = fake_fal_submit(fake_fal, "https://hooks.invalid/fal")
    cancel = f"/api/v1/generations/{created['id']}/cancel"
    with psycopg.connect(api.db_url, row_factory=dict_row) as worker_conn:
        worker_conn.execute(
            "select 1 from public.generations where id = %s for update", (created["id"],)
        )
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(api.call, "POST", cancel, user)
            wait_for(
                lambda: api.sql(
                    "select 1 from pg_stat_activity where wait_event_type = 'Lock'"
                    " and datname = current_database() and query like %s",
                    ("%cancel_generation%",),
                ),
                "the cancel waiting on the worker's lock",
            )
            assert tasks.progress.record_submission(worker_conn.cursor(), created["id"], request_id)
            worker_conn.commit()
            refused = first.result(timeout=30)
    assert "FAL already holds this generation" in assert_error(refused, 409)["message"]
    assert ledger(api, created["id"]) == ["charge"]
    assert fake_fal.requests[request_id].status == "IN_QUEUE"

    assert api.ok("POST", cancel, user)["status"] == "cancelled"
    assert fake_fal.requests[request_id].error == "cancelled"
    assert ledger(api, created["id"]) == ["charge", "refund"]
    assert balance(api, user) == start


def test_cancel_after_fal_started_is_409_and_changes_nothing(api, fake_fal):
    user = api.user()
    created, request_id = submitted(api, user, fake_fal)
    fake_fal.start_processing(request_id)
    before = api.fingerprint()
    response = api.call("POST", f"/api/v1/generations/{created['id']}/cancel", user)
    assert "already started" in assert_error(response, 409)["message"]
    assert api.fingerprint() == before
    # FAL answered CANCELLATION_REQUESTED: a signal to the model, which ran on
    assert fake_fal.requests[request_id].status == "IN_PROGRESS"


def test_cancel_after_completion_is_409(api, fake_fal):
    user = api.user()
    created, request_id = submitted(api, user, fake_fal)
    fake_fal.complete(request_id)
    response = api.call("POST", f"/api/v1/generations/{created['id']}/cancel", user)
    assert_error(response, 409)
    assert ledger(api, created["id"]) == ["charge"]


# the poller ----------------------------------------------------------------------------


def test_the_poller_completes_a_generation_whose_webhook_never_came(api, fake_fal, monkeypatch):
    monkeypatch.setenv("FAL_POLL_AFTER_SECONDS", "0")
    user = api.user()
    created, request_id = submitted(api, user, fake_fal)
    fake_fal.start_processing(request_id)
    tasks.poll_once(load_settings())
    assert generation(api, created["id"])["status"] == "processing"
    fake_fal.complete(request_id, send=False)
    tasks.poll_once(load_settings())
    row = generation(api, created["id"])
    assert row["status"] == "completed"
    assert row["outputs"][0]["content_type"] == "image/png"


def test_the_poller_records_a_failure_reported_by_fal(api, fake_fal, monkeypatch):
    monkeypatch.setenv("FAL_POLL_AFTER_SECONDS", "0")
    user = api.user()
    created, request_id = submitted(api, user, fake_fal)
    fake_fal.fail(request_id, "nsfw content", send=False)
    tasks.poll_once(load_settings())
    assert generation(api, created["id"])["status"] == "failed"
    assert ledger(api, created["id"]) == ["charge", "refund"]


def test_the_poller_gives_up_at_the_deadline_and_refunds_once(api, fake_fal, monkeypatch):
    user = api.user()
    start = balance(api, user)
    created, request_id = submitted(api, user, fake_fal)
    monkeypatch.setenv("FAL_POLL_AFTER_SECONDS", "0")
    monkeypatch.setenv("FAL_DEADLINE_SECONDS", "0")
    tasks.poll_once(load_settings())
    tasks.poll_once(load_settings())
    row = generation(api, created["id"])
    assert row["status"] == "failed"
    assert "deadline" in row["error"]
    assert ledger(api, created["id"]) == ["charge", "refund"]
    assert balance(api, user) == start
    assert fake_fal.requests[request_id].error == "cancelled"  # FAL stops working on it too


def test_past_the_deadline_the_poller_still_collects_what_fal_finished(api, fake_fal, monkeypatch):
    """FAL finished it but every webhook was lost (an outage longer than the deadline): the
    poller collects the result instead of failing and refunding work FAL did and charged."""
    user = api.user()
    created, request_id = submitted(api, user, fake_fal)
    fake_fal.complete(request_id, send=False)
    monkeypatch.setenv("FAL_POLL_AFTER_SECONDS", "0")
    monkeypatch.setenv("FAL_DEADLINE_SECONDS", "0")
    tasks.poll_once(load_settings())
    row = generation(api, created["id"])
    assert row["status"] == "completed"
    assert row["outputs"][0]["content_type"] == "image/png"
    assert ledger(api, created["id"]) == ["charge"]


def test_a_generation_gone_mid_round_does_not_hold_back_the_rest(api, fake_fal, monkeypatch):
    """The round's first generation is deleted (its account with it) before the poller gets
    to it: the round still completes the next one."""
    monkeypatch.setenv("FAL_POLL_AFTER_SECONDS", "0")
    leaving, staying = api.user(), api.user()
    gone, gone_request = submitted(api, leaving, fake_fal)
    kept, kept_request = submitted(api, staying, fake_fal)
    fake_fal.start_processing(gone_request)
    fake_fal.complete(kept_request, send=False)
    reconcile = tasks.reconcile

    def deleting_the_first(settings, queue, late):
        if str(late["id"]) == gone["id"]:
            api.sql("delete from auth.users where id = %s returning id", (leaving.id,))
        return reconcile(settings, queue, late)

    monkeypatch.setattr(tasks, "reconcile", deleting_the_first)
    outcomes = tasks.poll_once(load_settings())
    assert outcomes.get("error") == 1, outcomes
    assert generation(api, kept["id"])["status"] == "completed"


def test_a_success_whose_result_missed_its_webhook_is_fetched_not_failed(
    api, fake_fal, monkeypatch
):
    """OK without its payload (FAL's payload_error: the result did not fit the webhook) is
    no failure: nothing is refunded, and the poller fetches the result from FAL's queue."""
    monkeypatch.setenv("FAL_POLL_AFTER_SECONDS", "0")
    user = api.user()
    created, request_id = submitted(api, user, fake_fal)
    request = fake_fal.requests[request_id]
    fake_fal.complete(request_id, send=False)
    fake_fal.send_webhook(
        request, {"status": "OK", "payload": None, "payload_error": "Response payload too large"}
    )
    assert fake_fal.sent[-1].answers == [200]
    assert generation(api, created["id"])["status"] == "processing"
    assert ledger(api, created["id"]) == ["charge"]
    tasks.poll_once(load_settings())
    row = generation(api, created["id"])
    assert row["status"] == "completed"
    assert row["outputs"] == request.result["images"]
    assert ledger(api, created["id"]) == ["charge"]


def test_the_poller_leaves_recent_generations_alone(api, fake_fal, monkeypatch):
    monkeypatch.setenv("FAL_POLL_AFTER_SECONDS", "3600")
    user = api.user()
    created, request_id = submitted(api, user, fake_fal)
    fake_fal.complete(request_id, send=False)
    tasks.poll_once(load_settings())
    assert generation(api, created["id"])["status"] == "queued"


# several workers, and one that dies -----------------------------------------------------


def test_two_worker_processes_share_the_queue_and_submit_each_generation_once(api, fake_fal):
    user = api.user()
    api.grant_credits(user, MODEL_COST * 20)
    created = [create(api, user, prompt=f"prompt {n}") for n in range(20)]
    fake_fal.submit_delay = 0.02
    workers = [worker_process(wait=False) for _ in range(2)]
    for each in workers:
        assert each.wait(timeout=120) == 0
    assert {generation(api, g["id"])["status"] for g in created} == {"queued"}
    assert fake_fal.submits == 20
    assert len({generation(api, g["id"])["fal_request_id"] for g in created}) == 20


def worker_process(*, wait: bool = True, **env) -> subprocess.Popen:
    """``velro worker`` as its own process, on this test's database and fake FAL."""
    code = f"from backend.jobs import worker; worker.run(wait={wait})"
    environment = {**os.environ, "PYTHONPATH": os.getcwd(), **env}
    return subprocess.Popen([sys.executable, "-c", code], env=environment)


def test_a_worker_killed_mid_job_has_its_job_retried_and_nothing_charged_twice(api, fake_fal):
    user = api.user()
    start = balance(api, user)
    created = create(api, user)
    fake_fal.submit_delay = 30  # the worker is inside the FAL call when it dies
    process = worker_process(WORKER_HEARTBEAT_SECONDS="0.2")
    try:
        wait_for(lambda: fake_fal.submits == 1, "the worker to call FAL")
        assert [job["status"] for job in jobs(api, created["id"])] == ["doing"]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    fake_fal.submit_delay = 0
    wait_for(
        lambda: (
            api.sql(
                "select count(*) as n from procrastinate.procrastinate_workers"
                " where last_heartbeat > now() - interval '1 second'"
            )[0]["n"]
            == 0
        ),
        "the dead worker's heartbeat to go stale",
    )
    import asyncio

    from backend.jobs.engine import app

    async def recover() -> int:
        async with app.open_async():
            return await tasks.retry_jobs_of_stopped_workers(1)

    with on_database(api.db_url):
        # the dead worker may also have been running a periodic job: those come back too
        assert asyncio.run(recover()) >= 1
    assert [job["status"] for job in jobs(api, created["id"])] == ["todo"]
    worker.run(api.db_url, wait=False)
    assert generation(api, created["id"])["status"] == "queued"
    assert ledger(api, created["id"]) == ["charge"]
    assert balance(api, user) == start - MODEL_COST
    assert_sound(api.db_url, user)


def test_a_stalled_periodic_job_whose_next_run_is_queued_does_not_stop_the_retries(api):
    # A dead worker held a periodic job (queueing lock) whose next run is already queued:
    # putting it back would break the lock's uniqueness. It ends as failed, and the
    # stalled jobs after it are still retried.
    with psycopg.connect(api.db_url, autocommit=True) as conn:
        conn.execute("set search_path = procrastinate")
        (dead,) = conn.execute(
            "insert into procrastinate_workers (last_heartbeat)"
            " values (now() - interval '1 hour') returning id"
        ).fetchone()
        periodic, submit = (
            conn.execute(
                "insert into procrastinate_jobs (queue_name, task_name, queueing_lock, status,"
                " worker_id) values ('velro', %s, %s, 'doing', %s) returning id",
                (task, lock, dead),
            ).fetchone()[0]
            for task, lock in (("velro.deliver_webhooks", "periodic-lock"), ("velro.x", None))
        )
        conn.execute(
            "insert into procrastinate_jobs (queue_name, task_name, queueing_lock)"
            " values ('velro', 'velro.deliver_webhooks', 'periodic-lock')"
        )
    import asyncio

    from backend.jobs.engine import app

    async def recover() -> int:
        async with app.open_async():
            return await tasks.retry_jobs_of_stopped_workers(1)

    with on_database(api.db_url):
        assert asyncio.run(recover()) == 2
    with psycopg.connect(api.db_url) as conn:
        statuses = dict(
            conn.execute(
                "select id, status::text from procrastinate.procrastinate_jobs where id = any(%s)",
                ([periodic, submit],),
            ).fetchall()
        )
    assert statuses == {periodic: "failed", submit: "todo"}


def wait_for(condition, what: str, attempts: int = 600) -> None:
    for _ in range(attempts):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def test_racing_outcomes_on_real_connections_end_in_one_final_state_and_one_refund(api, fake_fal):
    user = api.user()
    api.grant_credits(user, MODEL_COST * 5)
    for _ in range(5):
        created, request_id = submitted(api, user, fake_fal)
        outcomes = ["completed", "failed"] * 4
        barrier = threading.Barrier(len(outcomes))

        def report(
            status: str, generation_id=created["id"], request_id=request_id, barrier=barrier
        ):
            with psycopg.connect(api.db_url) as conn:
                barrier.wait()
                with conn.transaction():
                    conn.execute("set local role service_role")
                    conn.execute(
                        "select public.record_generation_progress(%s, %s, %s, %s, %s)",
                        (generation_id, status, request_id, '[{"url": "https://x/y.png"}]', "x"),
                    )

        threads = [threading.Thread(target=report, args=(status,)) for status in outcomes]
        for each in threads:
            each.start()
        for each in threads:
            each.join(timeout=60)
        final = generation(api, created["id"])["status"]
        assert final in ("completed", "failed")
        refunds = ledger(api, created["id"]).count("refund")
        assert refunds == (1 if final == "failed" else 0)
        copies = len(jobs(api, created["id"], "velro.copy_outputs"))
        assert copies == (1 if final == "completed" else 0)
    assert_sound(api.db_url, user)


def test_a_storm_of_concurrent_duplicate_webhooks_refunds_once(api, fake_fal):
    user = api.user()
    start = balance(api, user)
    created, request_id = submitted(api, user, fake_fal)
    fake_fal.hold_webhooks = True
    for _ in range(10):
        fake_fal.fail(request_id, "crashed")
    held, fake_fal.held = fake_fal.held, []
    barrier = threading.Barrier(len(held))

    def deliver(webhook) -> None:
        barrier.wait()
        fake_fal._post(webhook)

    threads = [threading.Thread(target=deliver, args=(webhook,)) for webhook in held]
    for each in threads:
        each.start()
    for each in threads:
        each.join(timeout=60)
    assert [webhook.answers for webhook in held] == [[200]] * 10
    assert ledger(api, created["id"]) == ["charge", "refund"]
    assert balance(api, user) == start
    assert_sound(api.db_url, user)


def test_webhook_for_an_unknown_request_is_404(api, fake_fal):
    request_id = str(uuid.uuid4())
    body = json.dumps({"request_id": request_id, "status": "OK", "payload": {}}).encode()
    response = post_webhook(api, sign(fake_fal.key, request_id, int(time.time()), body), body)
    assert_error(response, 404)


def test_the_worker_refuses_to_start_in_production_without_a_fal_key(api):
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("FAL_KEY", "APP_ENV", "PYTEST_CURRENT_TEST")
    }
    result = subprocess.run(
        [sys.executable, "-m", "backend", "worker", "--until-empty"],
        env={**environment, "APP_ENV": "production", "PYTHONPATH": os.getcwd()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "FAL_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_fal_webhooks_are_not_held_by_per_client_rate_limits(api, fake_fal):
    from fixtures_app import app_settings, within_one_clock_minute

    from backend import close_app, create_app

    limited = create_app(
        app_settings(api.db_url, RATE_LIMIT_ENABLED=True, RATE_LIMIT_PER_IP="1/minute")
    )
    try:
        client = limited.test_client()
        client.environ_base["REMOTE_ADDR"] = f"10.9.{uuid.uuid4().int % 256}.{os.getpid() % 250}"
        request_id = str(uuid.uuid4())
        body = json.dumps({"request_id": request_id, "status": "OK", "payload": {}}).encode()
        within_one_clock_minute()
        headers = sign(fake_fal.key, request_id, int(time.time()), body)
        answers = [
            client.post("/api/v1/webhooks/fal", data=body, headers=headers).status_code
            for _ in range(4)
        ]
        assert answers == [404] * 4  # verified, unknown request: never 429
        assert client.get("/api/v1/models").status_code == 200
        assert client.get("/api/v1/models").status_code == 429  # the limit is on
    finally:
        close_app(limited)
