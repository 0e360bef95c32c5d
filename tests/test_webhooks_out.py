"""Webhooks to our users: the signing secret (shown once, rotatable), events logged once by
the status trigger, delivery signed per Standard Webhooks (verified here with the
`standardwebhooks` package a receiver would use), retries with backoff on failure, no
calls to private addresses unless a test allows it, and the owner's delivery log."""

from __future__ import annotations

import json
import threading

import pytest
from media_support import Receiver, running_world
from standardwebhooks import Webhook

from backend.webhooks_out import deliver_due_webhooks, deliver_webhook
from backend.webhooks_out.deliver import DeliveryPolicy, deliver


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
