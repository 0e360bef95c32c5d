"""Webhooks to our users: the signing secret (shown once, rotatable), events logged once by
the status trigger, delivery signed per Standard Webhooks (verified here with the
`standardwebhooks` package a receiver would use), retries with backoff on failure, no
calls to private addresses unless a test allows it, and the owner's delivery log."""

from __future__ import annotations

import base64
import contextlib
import importlib
import itertools
import json
import math
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from media_support import Receiver, running_world, unanswering
from standardwebhooks import Webhook

from backend.webhooks_out import deliver_due_webhooks, deliver_webhook
from backend.webhooks_out.deliver import (
    FIRST_WAIT_SECONDS,
    LONGEST_WAIT_SECONDS,
    DeliveryPolicy,
    backoff_seconds,
    deliver,
)

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(database_factory, migrated_template, tmp_path_factory):
    with running_world(
        database_factory(migrated_template),
        str(tmp_path_factory.mktemp("media")),
        WEBHOOKS_ALLOW_PRIVATE=True,
        WEBHOOK_MAX_ATTEMPTS=3,
    ) as running:
        yield running


def receiver_answering(*answers):
    return Receiver(answers or (200,))


@pytest.fixture
def owner(world):
    user = world.api.user("hooks")
    world.api.grant_credits(user, 1000)
    user.secret = world.api.ok("POST", "/api/v1/webhooks/secret", user, 201)["secret"]
    return user


def generation_calling(world, owner, url: str, events=None) -> dict:
    body = {"model_id": "fal-ai/flux-pro/v1.1-ultra", "prompt": "a hooked fox", "webhook_url": url}
    if events:
        body["webhook_events_filter"] = events
    return world.api.ok("POST", "/api/v1/generations", owner, 201, json=body)


def deliveries(world, generation) -> list[dict]:
    return world.api.sql(
        "select * from public.webhook_deliveries where generation_id = %s order by event",
        (generation["id"],),
    )


def make_due(world, generation) -> None:
    """As if the backoff had passed."""
    world.api.sql(
        "update public.webhook_deliveries set next_attempt_at = now() where generation_id = %s",
        (generation["id"],),
    )


def test_the_secret_is_shown_once_and_rotates(world):
    user = world.api.user("secret")
    assert world.api.ok("GET", "/api/v1/webhooks/secret", user) == {
        "configured": False,
        "created_at": None,
    }
    first = world.api.ok("POST", "/api/v1/webhooks/secret", user, 201)
    assert first["secret"].startswith("whsec_")
    info = world.api.ok("GET", "/api/v1/webhooks/secret", user)
    assert info["configured"] is True and "secret" not in info
    second = world.api.ok("POST", "/api/v1/webhooks/secret", user, 201)
    assert second["secret"] != first["secret"]
    assert world.api.call("POST", "/api/v1/webhooks/secret").status_code == 401


def test_events_are_signed_per_standard_webhooks(world, owner):
    receiver = receiver_answering(200)
    try:
        generation = generation_calling(world, owner, receiver.url)
        world.advance(generation["id"], "queued", f"req-{generation['id']}")
        deliver_due_webhooks(world.settings)
        world.advance(generation["id"], "completed", outputs={"images": []})
        deliver_due_webhooks(world.settings)
        sent = receiver.wait_for(2)
    finally:
        receiver.close()
    verified = [Webhook(owner.secret).verify(r["body"], r["headers"]) for r in sent]
    assert [event["type"] for event in verified] == ["generation.start", "generation.completed"]
    assert [event["data"]["status"] for event in verified] == ["queued", "completed"]
    assert verified[1]["data"]["media"] == []
    assert {event["data"]["id"] for event in verified} == {generation["id"]}
    forged = Webhook("whsec_" + "A" * 43 + "=")
    with pytest.raises(Exception, match="No matching signature"):
        forged.verify(sent[0]["body"], sent[0]["headers"])
    assert [(d["event"], d["status"], d["attempts"]) for d in deliveries(world, generation)] == [
        ("completed", "delivered", 1),
        ("start", "delivered", 1),
    ]


def test_a_failed_delivery_is_retried_with_the_same_id_until_it_succeeds(world, owner):
    receiver = receiver_answering(500, 200)
    try:
        generation = generation_calling(world, owner, receiver.url, ["completed"])
        world.advance(generation["id"], "failed")
        [delivery] = deliveries(world, generation)
        assert deliver_webhook(world.settings, delivery["id"]) is True
        [after_first] = deliveries(world, generation)
        assert (after_first["status"], after_first["attempts"], after_first["response_status"]) == (
            "pending",
            1,
            500,
        )
        assert after_first["next_attempt_at"] > after_first["created_at"]  # backing off
        deliver_due_webhooks(world.settings)
        assert deliveries(world, generation)[0]["attempts"] == 1  # not due yet: not sent
        make_due(world, generation)
        deliver_due_webhooks(world.settings)
        sent = receiver.wait_for(2)
    finally:
        receiver.close()
    assert (
        sent[0]["headers"]["webhook-id"] == sent[1]["headers"]["webhook-id"] == str(delivery["id"])
    )
    for request in sent:
        Webhook(owner.secret).verify(request["body"], request["headers"])
    [done] = deliveries(world, generation)
    assert (done["status"], done["attempts"], done["response_status"]) == ("delivered", 2, 200)


def test_a_delivery_gives_up_after_its_attempts(world, owner):
    receiver = receiver_answering(503)
    try:
        generation = generation_calling(world, owner, receiver.url, ["completed"])
        world.advance(generation["id"], "cancelled")
        for _ in range(5):
            make_due(world, generation)
            deliver_due_webhooks(world.settings)
    finally:
        receiver.close()
    [delivery] = deliveries(world, generation)
    assert (delivery["status"], delivery["attempts"]) == ("failed", 3)
    assert len(receiver.requests) == 3
    assert delivery["last_error"] == "answered 503"


def test_private_and_loopback_addresses_are_refused_unless_allowed(world, owner):
    receiver = receiver_answering(200)
    try:
        generation = generation_calling(world, owner, receiver.url, ["completed"])
        world.advance(generation["id"], "failed")
        [delivery] = deliveries(world, generation)
        production_like = DeliveryPolicy(
            max_attempts=3, timeout=5, allow_private=False, require_https=False
        )
        assert deliver(world.db_url, delivery["id"], production_like) is True
    finally:
        receiver.close()
    assert receiver.requests == []
    [refused] = deliveries(world, generation)
    assert "127.0.0.1, a private or loopback address" in refused["last_error"]
    assert refused["status"] == "pending" and refused["response_status"] is None


def test_https_is_required_where_the_policy_says_so(world, owner):
    generation = generation_calling(world, owner, "http://hooks.example.com/x", ["completed"])
    world.advance(generation["id"], "failed")
    [delivery] = deliveries(world, generation)
    strict = DeliveryPolicy(max_attempts=3, timeout=5, allow_private=False, require_https=True)
    deliver(world.db_url, delivery["id"], strict)
    assert deliveries(world, generation)[0]["last_error"] == "webhook_url must be https"


def test_without_a_secret_nothing_is_sent_and_the_log_says_why(world):
    user = world.api.user("nosecret")
    world.api.grant_credits(user, 100)
    receiver = receiver_answering(200)
    try:
        generation = generation_calling(world, user, receiver.url, ["completed"])
        world.advance(generation["id"], "failed")
        deliver_due_webhooks(world.settings)
    finally:
        receiver.close()
    assert receiver.requests == []
    assert "no signing secret" in deliveries(world, generation)[0]["last_error"]


def test_two_workers_racing_on_one_delivery_send_it_once(world, owner):
    receiver = receiver_answering(200)
    try:
        generation = generation_calling(world, owner, receiver.url, ["completed"])
        world.advance(generation["id"], "failed")
        [delivery] = deliveries(world, generation)
        barrier = threading.Barrier(4)

        def worker():
            barrier.wait()
            deliver_webhook(world.settings, delivery["id"])

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        receiver.close()
    assert len(receiver.requests) == 1
    assert deliveries(world, generation)[0]["attempts"] == 1


def test_the_delivery_log_is_its_owners(world, owner):
    generation = generation_calling(world, owner, "https://hooks.example.com/x")
    world.advance(generation["id"], "queued", f"req-{generation['id']}")
    path = f"/api/v1/generations/{generation['id']}/webhook-deliveries"
    log = world.api.ok("GET", path, owner)["items"]
    assert [(entry["event"], entry["status"]) for entry in log] == [("start", "pending")]
    assert world.api.call("GET", path, world.api.user("stranger")).status_code == 404


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("webhook_url", "ftp://hooks.example.com"),
        ("webhook_url", "not a url"),
        ("webhook_url", "https://hooks.example.com:99999999999999999999/x"),
        ("webhook_url", "https://hooks.example.com:70000/x"),
        ("webhook_url", "https://xn--zz.com/x"),
        ("webhook_events_filter", ["output"]),
        ("webhook_events_filter", []),
    ],
)
def test_bad_webhook_fields_are_422_and_nothing_is_written(world, owner, field, value):
    before = world.api.fingerprint()
    body = {
        "model_id": "fal-ai/flux-pro/v1.1-ultra",
        "prompt": "x",
        "webhook_url": "https://hooks.example.com/x",
        field: value,
    }
    response = world.api.call("POST", "/api/v1/generations", owner, json=body)
    assert response.status_code == 422
    assert field in json.dumps(response.get_json()["details"])
    assert world.api.fingerprint() == before


def test_the_completed_event_waits_for_the_media_copy_and_carries_signed_urls(world, owner):
    receiver = receiver_answering(200)
    try:
        generation = generation_calling(world, owner, receiver.url, ["completed"])
        outputs = {"images": [{"url": "https://v3.fal.media/files/a.png"}]}
        world.advance(generation["id"], "completed", outputs=outputs)
        deliver_due_webhooks(world.settings)
        [waiting] = deliveries(world, generation)
        assert (waiting["status"], waiting["attempts"]) == ("pending", 0)  # no attempt used
        assert receiver.requests == []
        world.api.sql(  # the copy job's record of what it stored
            "select public.record_generation_media(%s, 0, %s, 'image/png', 3, 4, 5, %s)",
            (generation["id"], f"{generation['id']}/0.png", outputs["images"][0]["url"]),
        )
        make_due(world, generation)
        deliver_due_webhooks(world.settings)
        [sent] = receiver.wait_for(1)
    finally:
        receiver.close()
    event = Webhook(owner.secret).verify(sent["body"], sent["headers"])
    [media] = event["data"]["media"]
    assert (media["content_type"], media["width"], media["height"]) == ("image/png", 4, 5)
    assert media["url"].startswith(f"{world.url}/api/v1/media/{generation['id']}/0.png?expires=")


def test_an_event_that_cannot_be_built_is_a_failed_attempt_until_it_is_given_up(world, owner):
    """Its media's signed URLs cannot be made (say, Storage is down): each attempt is
    counted and backs off like any failed one, and the last one fails the delivery, with
    an error that says so without our internals."""

    def media_failing(_generation_id):
        raise RuntimeError("storage answered 503 at https://internal.example/sign")

    receiver = receiver_answering(200)
    policy = DeliveryPolicy(max_attempts=3, timeout=5, allow_private=True, require_https=False)
    try:
        generation = generation_calling(world, owner, receiver.url, ["completed"])
        world.advance(generation["id"], "completed", outputs={"images": []})
        [delivery] = deliveries(world, generation)
        counted = []
        for _ in range(3):
            make_due(world, generation)
            assert deliver(world.db_url, delivery["id"], policy, media_failing) is True
            [after] = deliveries(world, generation)
            counted.append((after["status"], after["attempts"]))
    finally:
        receiver.close()
    assert counted == [("pending", 1), ("pending", 2), ("failed", 3)]
    assert receiver.requests == []
    assert after["last_error"] == "the event could not be built (an error on our side)"
    assert after["response_status"] is None


# receivers that misbehave ------------------------------------------------------------------


class RawReceiver:
    """One connection on 127.0.0.1 answered by ``answer(conn)`` with raw bytes; counts what
    it managed to send."""

    def __init__(self, answer):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.sent = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(answer,), daemon=True)
        self.thread.start()

    def send(self, conn, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def _serve(self, answer):
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            with contextlib.suppress(OSError):
                answer(self, conn)
        self.done.set()

    def close(self):
        self.listener.close()
        self.done.wait(10)


def a_delivery_to(world, owner, url) -> dict:
    generation = generation_calling(world, owner, url, ["completed"])
    world.advance(generation["id"], "failed")
    [delivery] = deliveries(world, generation)
    return delivery


def test_an_answer_dripped_past_the_timeout_is_cut_off_and_holds_no_lock(world, owner):
    def drip(receiver, conn):
        receiver.send(conn, b"HTTP/1.1 200 OK\r\n")
        for _ in range(20):  # a header byte every 0.3 s: each read is quick, the whole is not
            time.sleep(0.3)
            receiver.send(conn, b"X")

    receiver = RawReceiver(drip)
    delivery = a_delivery_to(world, owner, receiver.url)
    policy = DeliveryPolicy(max_attempts=3, timeout=1, allow_private=True, require_https=False)
    attempt = threading.Thread(target=deliver, args=(world.db_url, delivery["id"], policy))
    attempt.start()
    try:
        deadline = time.monotonic() + 10
        while receiver.sent == 0:
            assert time.monotonic() < deadline, "the attempt never reached the receiver"
            time.sleep(0.05)
        # while the receiver answers, the delivery's row is not locked: a delete of its
        # generation (which cascades to it) does not wait for the receiver
        with psycopg.connect(world.db_url) as conn:
            locked = conn.execute(
                "select id from public.webhook_deliveries where id = %s for update nowait",
                (delivery["id"],),
            ).fetchall()
        assert len(locked) == 1
    finally:
        attempt.join()
        receiver.close()
    [after] = deliveries(world, {"id": delivery["generation_id"]})
    assert (after["status"], after["attempts"]) == ("pending", 1)
    assert after["last_error"] == "no answer within 1 s"
    assert receiver.sent < len(b"HTTP/1.1 200 OK\r\n") + 20, "cut off before the drip ended"


def test_only_the_status_of_an_answer_is_read_never_its_body(world, owner):
    def huge(receiver, conn):
        receiver.send(conn, b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n" % (300 << 20))
        for _ in range(300):
            receiver.send(conn, b"y" * (1 << 20))

    receiver = RawReceiver(huge)
    delivery = a_delivery_to(world, owner, receiver.url)
    try:
        assert deliver_webhook(world.settings, delivery["id"]) is True
        [after] = deliveries(world, {"id": delivery["generation_id"]})
        sent_when_done = receiver.sent
    finally:
        receiver.close()
    assert (after["response_status"], after["last_error"]) == (500, "answered 500")
    assert sent_when_done < 64 << 20, "the 300 MiB body was not read"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999999999999999999/hook",
        "https://hooks.example.com:70000/hook",
        "https://hooks.example.com:0/hook",  # not the default port: no port at all
        "https://xn--zz.com/hook",
    ],
)
def test_a_url_that_cannot_be_sent_to_is_a_failed_attempt_that_holds_back_nobody(world, owner, url):
    """Such a URL can reach the log (set_generation_webhook is callable over PostgREST too):
    the sweep records its attempt as failed and goes on to the next delivery."""
    generation = generation_calling(world, owner, "https://hooks.example.com/x", ["completed"])
    world.api.sql(
        "update public.generation_webhooks set url = %s where generation_id = %s",
        (url, generation["id"]),
    )
    world.advance(generation["id"], "failed")
    world.api.sql(  # due before anything else
        "update public.webhook_deliveries set next_attempt_at = now() - interval '1 hour'"
        " where generation_id = %s",
        (generation["id"],),
    )
    receiver = receiver_answering(200)
    try:
        behind = a_delivery_to(world, owner, receiver.url)
        deliver_due_webhooks(world.settings)
        receiver.wait_for(1)
    finally:
        receiver.close()
    [bad] = deliveries(world, generation)
    assert (bad["status"], bad["attempts"]) == ("pending", 1)
    assert bad["last_error"].startswith("webhook_url is not a valid URL")
    assert deliveries(world, {"id": behind["generation_id"]})[0]["status"] == "delivered"


def test_a_delivery_backing_off_is_not_sent_again_by_a_sweep_that_listed_it_earlier(world, owner):
    receiver = receiver_answering(500, 200)
    try:
        delivery = a_delivery_to(world, owner, receiver.url)
        assert deliver_webhook(world.settings, delivery["id"]) is True  # fails: backs off
        # a second sweep that read the due list before that attempt now reaches it
        assert deliver_webhook(world.settings, delivery["id"]) is False
    finally:
        receiver.close()
    assert len(receiver.requests) == 1
    assert deliveries(world, {"id": delivery["generation_id"]})[0]["attempts"] == 1


def test_an_attempt_whose_lease_ran_out_is_counted_once(world, owner):
    """A second sweep claims a delivery whose first attempt outlived its lease; both
    answers (failures) come back, and the one attempt is counted once."""
    receiver = receiver_answering(500)
    receiver.holds[1] = threading.Event()
    try:
        delivery = a_delivery_to(world, owner, receiver.url)
        first = threading.Thread(target=deliver_webhook, args=(world.settings, delivery["id"]))
        first.start()
        receiver.wait_for(1)  # the first attempt is waiting for its answer
        make_due(world, {"id": delivery["generation_id"]})  # as if its lease ran out
        assert deliver_webhook(world.settings, delivery["id"]) is True
        receiver.holds[1].set()
        first.join()
    finally:
        receiver.close()
    assert len(receiver.requests) == 2
    [after] = deliveries(world, {"id": delivery["generation_id"]})
    assert (after["attempts"], after["status"]) == (1, "pending")


def test_a_success_stands_whichever_attempt_records_first(world, owner):
    """The older attempt's failure is recorded before the newer attempt's 2xx, which was
    claimed with the same count: the delivery ends delivered, not pending or failed."""
    receiver = receiver_answering(500, 200)
    receiver.holds = {1: threading.Event(), 2: threading.Event()}
    try:
        delivery = a_delivery_to(world, owner, receiver.url)
        first = threading.Thread(target=deliver_webhook, args=(world.settings, delivery["id"]))
        first.start()
        receiver.wait_for(1)
        make_due(world, {"id": delivery["generation_id"]})  # as if its lease ran out
        second = threading.Thread(target=deliver_webhook, args=(world.settings, delivery["id"]))
        second.start()
        receiver.wait_for(2)
        receiver.holds[1].set()  # the first attempt's 500 is recorded first
        first.join()
        receiver.holds[2].set()
        second.join()
    finally:
        receiver.close()
    [after] = deliveries(world, {"id": delivery["generation_id"]})
    assert (after["status"], after["response_status"]) == ("delivered", 200)
    assert after["attempts"] == 1


# the lease: one sender at a time, and not forever ------------------------------------------


class Sender(threading.Thread):
    """A worker's call on a thread of its own (so on database connections of its own);
    ``outcome()`` is what it returned, or raises what it raised."""

    def __init__(self, call, *args):
        super().__init__(daemon=True)
        self.call, self.args = call, args
        self.result, self.error = None, None

    def run(self):
        try:
            self.result = self.call(*self.args)
        except BaseException as error:  # re-raised on the test's thread by outcome()
            self.error = error

    def outcome(self, timeout: float = 15.0):
        self.join(timeout)
        assert not self.is_alive(), f"still running after {timeout:g} s"
        if self.error is not None:
            raise self.error
        return self.result


def only_this_is_due(world, delivery) -> None:
    """Earlier tests' deliveries still pending wait a day, so that a sweep here meets this
    one only (and is not slowed by their unreachable addresses)."""
    world.api.sql(
        "update public.webhook_deliveries set next_attempt_at = now() + interval '1 day'"
        " where status = 'pending' and id <> %s",
        (delivery["id"],),
    )


def lease_left(world, delivery) -> float:
    """Seconds until the delivery is due again."""
    [row] = world.api.sql(
        "select (extract(epoch from next_attempt_at) - extract(epoch from now()))::float as left"
        " from public.webhook_deliveries where id = %s",
        (delivery["id"],),
    )
    return row["left"]


def test_no_other_sender_sends_a_delivery_whose_answer_is_awaited(world, owner):
    """Sender A has claimed the delivery and waits for the receiver's answer (held there);
    meanwhile sender B runs a whole sweep and then tries the delivery by its id: neither
    sends it, since A's lease outlasts A's own time limit. A's answer then ends it: one
    request, one attempt."""
    receiver = receiver_answering(200)
    receiver.holds[1] = threading.Event()
    try:
        delivery = a_delivery_to(world, owner, receiver.url)
        only_this_is_due(world, delivery)
        a = Sender(deliver_webhook, world.settings, delivery["id"])
        a.start()
        receiver.wait_for(1)  # A is sending: its claim is committed, its answer held
        assert deliver_due_webhooks(world.settings) == 0  # B's sweep passes it by
        assert deliver_webhook(world.settings, delivery["id"]) is False  # and so does B by id
        assert len(receiver.requests) == 1
        assert lease_left(world, delivery) > world.settings.WEBHOOK_TIMEOUT  # and would later
        receiver.holds[1].set()
        assert a.outcome() is True
    finally:
        receiver.holds[1].set()
        receiver.close()
    assert len(receiver.requests) == 1
    [after] = deliveries(world, {"id": delivery["generation_id"]})
    assert (after["status"], after["attempts"], after["response_status"]) == ("delivered", 1, 200)


def test_a_sweep_skips_a_delivery_another_sender_is_claiming_without_waiting(
    world, owner, monkeypatch
):
    """Sender A is stopped inside its claim's transaction, before its lease is written: the
    row is locked and still looks due. Sender B's sweep lists it, passes it by at once
    (it neither waits for A's lock nor sends), and A then sends it: one request, one
    attempt."""
    module = importlib.import_module("backend.webhooks_out.deliver")
    inside_the_claim, go_on = threading.Event(), threading.Event()
    real_media_pending = module._media_pending
    senders: dict[str, Sender] = {}

    def stop_a_inside_its_claim(*args):
        if threading.current_thread() is senders.get("a"):
            inside_the_claim.set()
            go_on.wait(30)
        return real_media_pending(*args)

    monkeypatch.setattr(module, "_media_pending", stop_a_inside_its_claim)
    receiver = receiver_answering(200)
    try:
        delivery = a_delivery_to(world, owner, receiver.url)
        only_this_is_due(world, delivery)
        senders["a"] = Sender(deliver_webhook, world.settings, delivery["id"])
        senders["a"].start()
        assert inside_the_claim.wait(10), "A never reached its claim"
        # the dangerous point: the row is still due, and A holds its lock
        assert lease_left(world, delivery) <= 0
        with (
            psycopg.connect(world.db_url) as conn,
            pytest.raises(psycopg.errors.LockNotAvailable),
        ):
            conn.execute(
                "select id from public.webhook_deliveries where id = %s for update nowait",
                (delivery["id"],),
            )
        senders["b"] = Sender(deliver_due_webhooks, world.settings)
        senders["b"].start()
        assert senders["b"].outcome(timeout=5) == 0, "B's sweep attempted it"
        assert receiver.requests == []
        go_on.set()
        assert senders["a"].outcome() is True
    finally:
        go_on.set()
        for sender in senders.values():
            sender.join(30)
        receiver.close()
    assert len(receiver.requests) == 1
    [after] = deliveries(world, {"id": delivery["generation_id"]})
    assert (after["status"], after["attempts"]) == ("delivered", 1)


DYING_SENDER = """
import sys
from backend.webhooks_out.deliver import DeliveryPolicy, deliver
policy = DeliveryPolicy(
    max_attempts=3, timeout=float(sys.argv[3]), allow_private=True, require_https=False
)
deliver(sys.argv[1], sys.argv[2], policy)
"""


def test_a_sender_that_died_mid_attempt_holds_the_delivery_only_until_its_lease_ends(world, owner):
    """A worker process claims the delivery and is killed while waiting for the answer;
    nothing records its attempt. Until its lease ends no sweep sends the delivery; once a
    minute past the attempt's own time limit has passed (moved back in the database, not
    slept), the next sweep sends it, with the same webhook-id."""
    timeout = world.settings.WEBHOOK_TIMEOUT
    longest_hold = timeout + 60  # a minute past its attempt's own limit, at most
    receiver = receiver_answering(200)
    receiver.holds[1] = threading.Event()  # the dead worker's request is never answered
    try:
        delivery = a_delivery_to(world, owner, receiver.url)
        only_this_is_due(world, delivery)
        command = [sys.executable, "-c", DYING_SENDER, world.db_url, str(delivery["id"])]
        with subprocess.Popen([*command, str(timeout)], cwd=REPOSITORY) as worker:
            try:
                receiver.wait_for(1)  # it claimed the delivery and is sending
            finally:
                worker.kill()
        assert worker.returncode == -signal.SIGKILL
        assert deliver_due_webhooks(world.settings) == 0  # its lease still holds
        assert deliver_webhook(world.settings, delivery["id"]) is False
        assert timeout < lease_left(world, delivery) <= longest_hold
        world.api.sql(  # as if that time had passed
            "update public.webhook_deliveries"
            " set next_attempt_at = next_attempt_at - make_interval(secs => %s) where id = %s",
            (longest_hold, delivery["id"]),
        )
        assert deliver_due_webhooks(world.settings) == 1
        first, second = receiver.wait_for(2)
    finally:
        receiver.holds[1].set()
        receiver.close()
    assert len(receiver.requests) == 2
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == str(delivery["id"])
    [after] = deliveries(world, {"id": delivery["generation_id"]})
    assert (after["status"], after["attempts"], after["response_status"]) == ("delivered", 1, 200)


def test_resolving_the_host_counts_within_the_attempts_time(monkeypatch):
    """A resolver that does not answer is abandoned at the attempt's deadline: the attempt
    ends while the lookup is still waiting, and the sweep goes on."""
    from backend.webhooks_out.deliver import _attempt

    finished, release = threading.Event(), threading.Event()

    def unanswered(*_args, **_kwargs):
        release.wait(30)
        finished.set()
        raise socket.gaierror("late")

    monkeypatch.setattr(socket, "getaddrinfo", unanswered)
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    delivery = {"secret": secret, "id": uuid.uuid4(), "url": "https://hooks.example.com/x"}
    policy = DeliveryPolicy(max_attempts=3, timeout=0.5, allow_private=False, require_https=True)
    try:
        assert _attempt(delivery, "{}", policy) == (None, "no answer within 0.5 s")
        assert not finished.is_set(), "the attempt ended while the lookup was still waiting"
    finally:
        release.set()


# redirects, the pinned address, backoff ------------------------------------------------------


def receiver_of_any_method():
    """A Receiver that also records GET and PUT: a followed 301/302 arrives as a GET."""
    receiver = receiver_answering(200)
    handler = receiver.httpd.RequestHandlerClass
    handler.do_GET = handler.do_PUT = handler.do_POST
    return receiver


def redirecting_to(status: int, location: str):
    def redirect(receiver, conn):
        receiver.send(
            conn,
            b"HTTP/1.1 %d Moved\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
            % (status, location.encode()),
        )
        # read until the client hangs up: closing with its body unread would reset the
        # connection, and the reset could reach the client before our answer
        conn.settimeout(5)
        while conn.recv(65536):
            pass

    return redirect


@pytest.mark.parametrize("status", [301, 302, 307])
def test_a_redirect_is_a_failed_attempt_and_is_not_followed(world, owner, status):
    elsewhere = receiver_of_any_method()
    redirector = RawReceiver(redirecting_to(status, elsewhere.url))
    try:
        delivery = a_delivery_to(world, owner, redirector.url)
        assert deliver_webhook(world.settings, delivery["id"]) is True
    finally:
        redirector.close()
        elsewhere.close()
    assert elsewhere.requests == []
    [after] = deliveries(world, {"id": delivery["generation_id"]})
    assert (after["status"], after["attempts"]) == ("pending", 1)
    assert (after["response_status"], after["last_error"]) == (status, f"answered {status}")
    assert after["next_attempt_at"] > after["created_at"]  # retried later, like any failure


def test_the_request_goes_to_the_address_that_was_checked(world, owner, monkeypatch):
    """The name resolves to 127.0.0.1 when checked (allowed here, for this test only) and
    to 127.0.0.2, where nothing listens, on any later lookup, whoever makes it: the
    request reaches 127.0.0.1, still naming the host."""
    # the package's deliver() shadows the module of that name
    module = importlib.import_module("backend.webhooks_out.deliver")
    answers = iter([["127.0.0.1"]])
    monkeypatch.setattr(module, "system_resolve", lambda host, port: next(answers, ["127.0.0.2"]))
    real_getaddrinfo, real_refuse = socket.getaddrinfo, module.refuse_private

    def later_answer(host, port, *args, **kwargs):  # what httpx would get if it resolved
        if host in ("hooks.velro.test", b"hooks.velro.test"):  # anyio passes it IDNA-encoded
            return real_getaddrinfo("127.0.0.2", port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    checked = []

    def refuse_private_but_the_test_address(host, addresses):
        checked.append(list(addresses))
        real_refuse(host, [address for address in addresses if address != "127.0.0.1"])

    monkeypatch.setattr(socket, "getaddrinfo", later_answer)
    monkeypatch.setattr(module, "refuse_private", refuse_private_but_the_test_address)
    receiver = receiver_answering(200)
    port = receiver.httpd.server_port
    try:
        delivery = a_delivery_to(world, owner, f"http://hooks.velro.test:{port}/hook")
        policy = DeliveryPolicy(max_attempts=3, timeout=5, allow_private=False, require_https=False)
        assert deliver(world.db_url, delivery["id"], policy) is True
    finally:
        receiver.close()
    assert checked == [["127.0.0.1"]]
    [sent] = receiver.requests
    assert sent["headers"]["Host"] == f"hooks.velro.test:{port}"
    assert deliveries(world, {"id": delivery["generation_id"]})[0]["status"] == "delivered"


TEST_HOST = "hooks.velro.test"


def resolving_to(monkeypatch, addresses: list[str]) -> list[list[str]]:
    """TEST_HOST resolves to ``addresses`` when a delivery checks it, and to 127.0.0.3,
    where nothing listens, for anyone who resolves it later. Its loopback addresses pass
    the private-address check (for this test only); any other still meets it. Returns the
    lists of addresses checked."""
    module = importlib.import_module("backend.webhooks_out.deliver")
    monkeypatch.setattr(module, "system_resolve", lambda host, port: list(addresses))
    real_getaddrinfo, real_refuse = socket.getaddrinfo, module.refuse_private

    def later_answer(host, port, *args, **kwargs):
        if host in (TEST_HOST, TEST_HOST.encode()):  # anyio passes it IDNA-encoded
            return real_getaddrinfo("127.0.0.3", port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    checked = []

    def refuse_private_but_loopback(host, found):
        checked.append(list(found))
        real_refuse(host, [address for address in found if not address.startswith("127.")])

    monkeypatch.setattr(socket, "getaddrinfo", later_answer)
    monkeypatch.setattr(module, "refuse_private", refuse_private_but_loopback)
    return checked


def test_an_address_that_refuses_gives_way_to_the_hosts_next_checked_one(world, owner, monkeypatch):
    """The name resolves to 127.0.0.2, which refuses (nothing listens there), then to
    127.0.0.1, where the receiver is: the attempt goes on to the second address, both
    checked before either was called, and no later lookup is made (it would answer
    127.0.0.3)."""
    checked = resolving_to(monkeypatch, ["127.0.0.2", "127.0.0.1"])
    receiver = receiver_answering(200)
    port = receiver.httpd.server_port
    policy = DeliveryPolicy(max_attempts=3, timeout=5, allow_private=False, require_https=False)
    try:
        delivery = a_delivery_to(world, owner, f"http://{TEST_HOST}:{port}/hook")
        assert deliver(world.db_url, delivery["id"], policy) is True
    finally:
        receiver.close()
    assert checked == [["127.0.0.2", "127.0.0.1"]]
    [sent] = receiver.requests
    assert sent["headers"]["Host"] == f"{TEST_HOST}:{port}"
    [after] = deliveries(world, {"id": delivery["generation_id"]})
    assert (after["status"], after["attempts"], after["response_status"]) == ("delivered", 1, 200)


def test_an_address_that_does_not_answer_leaves_the_next_one_its_share_of_the_time(
    world, owner, monkeypatch
):
    """127.0.0.2 drops the connection attempt unanswered: after its half of the attempt's
    time the next address, 127.0.0.1, takes the event, within the attempt's own limit."""
    resolving_to(monkeypatch, ["127.0.0.2", "127.0.0.1"])
    receiver = receiver_answering(200)
    port = receiver.httpd.server_port
    policy = DeliveryPolicy(max_attempts=3, timeout=4, allow_private=False, require_https=False)
    try:
        delivery = a_delivery_to(world, owner, f"http://{TEST_HOST}:{port}/hook")
        with unanswering("127.0.0.2", port):
            started = time.monotonic()
            assert deliver(world.db_url, delivery["id"], policy) is True
            took = time.monotonic() - started
    finally:
        receiver.close()
    assert len(receiver.requests) == 1
    assert 1.5 < took < policy.timeout
    [after] = deliveries(world, {"id": delivery["generation_id"]})
    assert (after["status"], after["attempts"]) == ("delivered", 1)


def test_a_host_with_one_private_address_among_others_is_not_called(world, owner, monkeypatch):
    """Every address is checked before any is called: one private among them refuses the
    host, even though the one before it would answer."""
    resolving_to(monkeypatch, ["127.0.0.1", "10.1.2.3"])
    receiver = receiver_answering(200)
    port = receiver.httpd.server_port
    policy = DeliveryPolicy(max_attempts=3, timeout=5, allow_private=False, require_https=False)
    try:
        delivery = a_delivery_to(world, owner, f"http://{TEST_HOST}:{port}/hook")
        assert deliver(world.db_url, delivery["id"], policy) is True
    finally:
        receiver.close()
    assert receiver.requests == []
    [after] = deliveries(world, {"id": delivery["generation_id"]})
    assert (after["status"], after["attempts"]) == ("pending", 1)
    assert "10.1.2.3, a private or loopback address" in after["last_error"]


@pytest.mark.parametrize("fraction", [0.0, 0.999])
def test_each_failure_backs_off_about_twice_as_long_from_5_s_up_to_an_hour(world, owner, fraction):
    """With the jitter's random fraction pinned, each wait is the point it picks in the
    upper half of a ceiling that doubles from 10 s to an hour: the lowest waits 5 s, 10 s,
    20 s... up to half an hour, the highest just under 10 s, 20 s... up to an hour."""
    receiver = receiver_answering(500)
    policy = DeliveryPolicy(
        max_attempts=13,
        timeout=5,
        allow_private=True,
        require_https=False,
        random_fraction=lambda: fraction,
    )
    waits = []
    try:
        delivery = a_delivery_to(world, owner, receiver.url)
        generation = {"id": delivery["generation_id"]}
        for _ in range(12):
            make_due(world, generation)
            assert deliver(world.db_url, delivery["id"], policy) is True
            [row] = world.api.sql(
                "select status, extract(epoch from next_attempt_at - now())::float as wait"
                " from public.webhook_deliveries where id = %s",
                (delivery["id"],),
            )
            assert row["status"] == "pending"
            waits.append(row["wait"])
    finally:
        receiver.close()
    # the wait is measured a moment after it was set: up to a second short
    ceilings = [min(3600, 10 * 2**failed) for failed in range(12)]
    assert waits == pytest.approx([ceiling / 2 * (1 + fraction) for ceiling in ceilings], abs=1)
    for earlier, later in itertools.pairwise(waits[:9]):
        assert later == pytest.approx(2 * earlier, abs=1)


def test_every_backoff_wait_is_from_5_s_to_an_hour():
    lowest, highest = (lambda: 0.0), (lambda: math.nextafter(1.0, 0.0))
    for attempts in [*range(64), 10**6]:
        assert backoff_seconds(attempts, lowest) >= FIRST_WAIT_SECONDS
        assert backoff_seconds(attempts, highest) <= LONGEST_WAIT_SECONDS
    assert backoff_seconds(0, lowest) == FIRST_WAIT_SECONDS == 5
    assert backoff_seconds(10**6, highest) == pytest.approx(LONGEST_WAIT_SECONDS) == 3600


def test_waits_after_the_same_number_of_failures_differ():
    """Deliveries that failed together do not come back together (a seeded source: the
    same draws every run)."""
    draws = random.Random(20261202)
    waits = [backoff_seconds(3, draws.random) for _ in range(20)]
    assert all(40 <= wait < 80 for wait in waits)  # the upper half of an 80 s ceiling
    assert len(set(waits)) > 1
