"""Media end to end on the simulated provider: create -> queued -> completed -> copied ->
signed URL serves the bytes, for an image and a video model. The submit and webhook steps
are driven here as the worker drives them; the simulator's webhook is checked against its
own published JWKS (ED25519 over request id, user id, timestamp and the body's SHA-256)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from media_support import Receiver, running_world
from PIL import Image

from backend.fal.simulated_routes import simulator_for
from backend.media import (
    clean_deleted_generations_media,
    copy_generation_outputs,
    fetch_policy,
    storage_for,
)
from backend.media.cleanup import delete_media_of_deleted_generations
from backend.media.copy import copy_outputs
from backend.media.fetch import UnsafeMedia
from backend.media.probe import Probed, probe

IMAGE_MODEL = "fal-ai/flux-pro/v1.1-ultra"
VIDEO_MODEL = "fal-ai/veo3"


@pytest.fixture(scope="module")
def world(database_factory, migrated_template, tmp_path_factory):
    media_dir = str(tmp_path_factory.mktemp("media"))
    with running_world(database_factory(migrated_template), media_dir) as running:
        yield running


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


def verify_fal_signature(world, request: dict) -> dict:
    headers = {name.lower(): value for name, value in request["headers"].items()}
    jwks = requests.get(f"{world.url}/simulated-fal/.well-known/jwks.json", timeout=10).json()
    raw = base64.urlsafe_b64decode(jwks["keys"][0]["x"] + "==")
    message = "\n".join(
        [
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            headers["x-fal-webhook-timestamp"],
            hashlib.sha256(request["body"]).hexdigest(),
        ]
    ).encode()
    Ed25519PublicKey.from_public_bytes(raw).verify(
        bytes.fromhex(headers["x-fal-webhook-signature"]), message
    )  # raises InvalidSignature on a forgery
    assert abs(int(headers["x-fal-webhook-timestamp"]) - time.time()) < 300
    return json.loads(request["body"])


def run_generation(world, receiver, model: str, parameters: dict):
    owner = world.api.user("media")
    world.api.grant_credits(owner, 5000)
    generation = world.api.ok(
        "POST",
        "/api/v1/generations",
        owner,
        201,
        json={
            "model_id": model,
            "prompt": "a paper boat on a rainy street",
            "parameters": parameters,
        },
    )
    simulator = simulator_for(world.settings)
    handle = simulator.submit(
        model, {"prompt": generation["prompt"], **parameters}, webhook_url=receiver.url
    )
    assert world.advance(generation["id"], "queued", handle.request_id)["status"] == "queued"
    webhook = verify_fal_signature(world, receiver.wait_for(1)[0])
    assert (webhook["request_id"], webhook["status"]) == (handle.request_id, "OK")
    assert simulator.result(model, handle.request_id) == webhook["payload"]
    world.advance(generation["id"], "completed", outputs=webhook["payload"])
    stored = copy_generation_outputs(world.settings, generation["id"])
    return owner, generation, stored


def test_an_image_goes_from_prompt_to_a_signed_url(world, receiver):
    owner, generation, stored = run_generation(
        world, receiver, IMAGE_MODEL, {"aspect_ratio": "16:9"}
    )
    assert [(row["content_type"], row["width"], row["height"]) for row in stored] == [
        ("image/png", 1024, 576)
    ]
    media = world.api.ok("GET", f"/api/v1/generations/{generation['id']}/media", owner)["items"]
    assert len(media) == 1 and media[0]["size_bytes"] == stored[0]["size_bytes"]
    response = requests.get(media[0]["url"], timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert len(response.content) == media[0]["size_bytes"]
    assert Image.open(io.BytesIO(response.content)).size == (1024, 576)


def test_a_video_goes_from_prompt_to_a_playable_clip(world, receiver):
    owner, generation, stored = run_generation(
        world, receiver, VIDEO_MODEL, {"aspect_ratio": "9:16"}
    )
    assert [(row["content_type"], row["width"], row["height"]) for row in stored] == [
        ("video/webm", 360, 640)
    ]
    media = world.api.ok("GET", f"/api/v1/generations/{generation['id']}/media", owner)["items"]
    body = requests.get(media[0]["url"], timeout=10).content
    assert body[:4] == b"\x1a\x45\xdf\xa3"  # EBML: a WebM container
    assert probe(body) == Probed("video/webm", 360, 640)


def test_copying_again_replaces_instead_of_adding(world, receiver):
    """A second copy stores under names of its own, records them in place of the first
    copy's rows and deletes the first copy's objects: no object is left that no row names."""
    _owner, generation, stored = run_generation(world, receiver, IMAGE_MODEL, {"num_images": 2})
    again = copy_generation_outputs(world.settings, generation["id"])
    assert [row["position"] for row in again] == [row["position"] for row in stored] == [0, 1]
    assert {row["storage_path"] for row in again}.isdisjoint(r["storage_path"] for r in stored)
    assert recorded_names(world, generation["id"]) == stored_names(world, generation["id"])
    assert len(recorded_names(world, generation["id"])) == 2


def recorded_names(world, generation_id: str) -> set[str]:
    rows = world.api.sql(
        "select storage_path from public.generation_media where generation_id = %s",
        (generation_id,),
    )
    return {row["storage_path"] for row in rows}


def stored_names(world, generation_id: str) -> set[str]:
    folder = Path(world.settings.MEDIA_DIR) / generation_id
    return {f"{generation_id}/{path.name}" for path in folder.iterdir()}


def test_a_copy_that_stops_beside_another_deletes_only_its_own_objects(world, receiver):
    """Two copies of one generation at once (a job retried while the worker that seemed
    stalled still runs it). One stores its first output; the other stores both; the first
    then stops on its second output and cleans up before the second records its rows. The
    rows recorded name objects that exist, and nothing else is left."""
    owner, generation, _stored = run_generation(world, receiver, IMAGE_MODEL, {"num_images": 2})
    storage = storage_for(world.settings)
    others_stored, stopped_cleaned = threading.Event(), threading.Event()

    class Stopping:
        def put(self, name, body, content_type):
            if "/1-" in name:
                assert others_stored.wait(10)
                raise UnsafeMedia("the second output is refused")
            storage.put(name, body, content_type)

        def delete(self, names):
            storage.delete(names)
            stopped_cleaned.set()

    class Finishing:
        def put(self, name, body, content_type):
            storage.put(name, body, content_type)
            if "/1-" in name:
                others_stored.set()
                assert stopped_cleaned.wait(10)

        def delete(self, names):
            storage.delete(names)

    def copy(into):
        return copy_outputs(
            world.db_url,
            generation["id"],
            into,
            fetch_policy(world.settings),
            world.settings.MEDIA_MAX_OUTPUTS,
        )

    outcome = {}

    def run_stopping():
        try:
            copy(Stopping())
        except UnsafeMedia as refused:
            outcome["stopped"] = refused

    stopping = threading.Thread(target=run_stopping)
    stopping.start()
    recorded = copy(Finishing())
    stopping.join(10)
    assert isinstance(outcome.get("stopped"), UnsafeMedia)
    names = {row["storage_path"] for row in recorded}
    assert recorded_names(world, generation["id"]) == names
    assert stored_names(world, generation["id"]) == names
    media = world.api.ok("GET", f"/api/v1/generations/{generation['id']}/media", owner)["items"]
    assert [requests.get(item["url"], timeout=10).status_code for item in media] == [200, 200]


def test_only_readers_get_urls_and_urls_only_work_as_signed(world, receiver):
    _owner, generation, stored = run_generation(world, receiver, IMAGE_MODEL, {})
    stranger = world.api.user("stranger")
    response = world.api.call("GET", f"/api/v1/generations/{generation['id']}/media", stranger)
    assert response.status_code == 404
    assert world.api.call("GET", f"/api/v1/generations/{generation['id']}/media").status_code == 401

    storage = storage_for(world.settings)
    name = stored[0]["storage_path"]
    good = storage.signed_url(name, 60)
    assert requests.get(good, timeout=10).status_code == 200
    tampered = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    assert requests.get(tampered, timeout=10).status_code == 403
    expired = storage.signed_url(name, -1)
    assert requests.get(expired, timeout=10).json()["error"] == "forbidden"
    other = good.replace("/0-", "/1-")  # a signature is for one object only
    assert other != good
    assert requests.get(other, timeout=10).status_code == 403
    superscript = re.sub(r"expires=\d+", "expires=%C2%B2", good)  # "²" passes str.isdigit
    assert superscript != good
    assert requests.get(superscript, timeout=10).json()["error"] == "forbidden"
    endless = re.sub(r"expires=\d+", "expires=" + "9" * 5000, good)  # int() refuses 4300+
    assert requests.get(endless, timeout=10).json()["error"] == "forbidden"


def test_a_deleted_generations_urls_stop_working_and_its_files_go(world, receiver):
    owner, generation, stored = run_generation(world, receiver, IMAGE_MODEL, {})
    url = storage_for(world.settings).signed_url(stored[0]["storage_path"], 60)
    assert requests.get(url, timeout=10).status_code == 200
    world.api.ok("DELETE", f"/api/v1/generations/{generation['id']}", owner, 204)
    assert requests.get(url, timeout=10).json()["error"] == "not_found"
    folder = Path(world.settings.MEDIA_DIR) / generation["id"]
    assert folder.is_dir(), "the files stay until the cleanup job runs"
    assert clean_deleted_generations_media(world.settings) >= 1
    assert not folder.exists()
    assert world.api.sql(QUEUED, (generation["id"],)) == []


def test_a_generation_deleted_while_its_outputs_are_copied_leaves_no_files(world, receiver):
    """The delete (and the cleanup job after it) lands between the copy's upload and its
    record of the rows: the copy finds the generation gone and deletes what it stored."""
    owner, generation, _stored = run_generation(world, receiver, IMAGE_MODEL, {})
    storage = storage_for(world.settings)
    folder = Path(world.settings.MEDIA_DIR) / generation["id"]

    class DeletedMeanwhile:
        def put(self, name, body, content_type):
            world.api.ok("DELETE", f"/api/v1/generations/{generation['id']}", owner, 204)
            clean_deleted_generations_media(world.settings)
            assert not folder.exists()
            storage.put(name, body, content_type)  # the upload that was already on its way

        def delete(self, names):
            storage.delete(names)

        def delete_generation(self, generation_id):
            storage.delete_generation(generation_id)

    stored = copy_outputs(
        world.db_url,
        generation["id"],
        DeletedMeanwhile(),
        fetch_policy(world.settings),
        world.settings.MEDIA_MAX_OUTPUTS,
    )
    assert stored == []
    assert not folder.exists()


def test_deletes_queued_together_are_cleaned_once_by_cleaners_racing(world):
    """Two cleanup jobs at once (two workers) share the queue: each deleted generation's
    objects are deleted by one of them, and the queue ends empty."""
    owner = world.api.user("many")
    world.api.grant_credits(owner, 5000)
    generations = [world.api.generation(owner)["id"] for _ in range(20)]
    for generation_id in generations:
        world.advance(generation_id, "failed")
    world.api.sql(
        "delete from public.generations where id = any(%s::uuid[]) returning id", (generations,)
    )
    deleted: list[str] = []
    lock = threading.Lock()

    class Counting:
        def delete_generation(self, generation_id):
            time.sleep(0.01)  # long enough for the two cleaners to overlap
            with lock:
                deleted.append(str(generation_id))

    barrier = threading.Barrier(2)

    def cleaner():
        barrier.wait()
        delete_media_of_deleted_generations(world.db_url, Counting(), limit=7)

    for _ in range(3):
        threads = [threading.Thread(target=cleaner) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(set(deleted) & set(generations)) == sorted(generations)
    assert len(deleted) == len(set(deleted)), "no generation is cleaned twice"
    assert world.api.sql(QUEUED, (generations[0],)) == []


QUEUED = "select 1 from private.media_of_deleted_generations where generation_id = %s"


def test_a_generation_that_is_not_completed_copies_nothing(world):
    owner = world.api.user("pending")
    world.api.grant_credits(owner, 100)
    generation = world.api.generation(owner)
    assert copy_generation_outputs(world.settings, generation["id"]) == []


def completed_with(world, outputs: list[str]) -> str:
    """A completed generation whose provider result lists these output URLs."""
    owner = world.api.user("outputs")
    world.api.grant_credits(owner, 100)
    generation_id = world.api.generation(owner)["id"]
    world.advance(generation_id, "queued", f"request-{generation_id}")
    world.advance(generation_id, "completed", outputs={"images": [{"url": u} for u in outputs]})
    return generation_id


def test_a_result_with_more_outputs_than_allowed_is_not_copied(world, receiver):
    """A FAL result is recorded with at most this many outputs (test_pipeline); one written
    with more by another way (record_generation_progress called directly) is refused."""
    _owner, generation, _stored = run_generation(world, receiver, IMAGE_MODEL, {})
    image_url = world.api.sql(OUTPUT_URL, (generation["id"],))[0]["url"]
    many = completed_with(world, [image_url] * (world.settings.MEDIA_MAX_OUTPUTS + 1))
    with pytest.raises(UnsafeMedia, match=r"17 outputs are more than the 16 copied at most"):
        copy_generation_outputs(world.settings, many)
    assert not (Path(world.settings.MEDIA_DIR) / many).exists()


def test_a_copy_stopped_by_a_refused_output_deletes_what_it_stored(world, receiver):
    """The first output is stored, the second is refused (not an image): no object stays
    behind that no row names and no cleanup would ever find."""
    _owner, generation, _stored = run_generation(world, receiver, IMAGE_MODEL, {})
    image_url = world.api.sql(OUTPUT_URL, (generation["id"],))[0]["url"]
    stopped = completed_with(world, [image_url, f"{world.url}/api/v1/health/live"])
    with pytest.raises(UnsafeMedia, match=r"content type 'application/json' is not stored"):
        copy_generation_outputs(world.settings, stopped)
    assert not (Path(world.settings.MEDIA_DIR) / stopped).exists()


def test_a_stopped_copy_again_keeps_what_an_earlier_one_recorded(world, receiver):
    """A copy run again (a retried job) that stops keeps the objects the first copy's rows
    name: it deletes only what it stored itself."""
    owner, generation, stored = run_generation(world, receiver, IMAGE_MODEL, {})
    image_url = world.api.sql(OUTPUT_URL, (generation["id"],))[0]["url"]
    refused = f"{world.url}/api/v1/health/live"
    outputs = json.dumps({"images": [{"url": image_url}, {"url": refused}]})
    world.api.sql(
        "update public.generations set outputs = %s where id = %s", (outputs, generation["id"])
    )
    with pytest.raises(UnsafeMedia):
        copy_generation_outputs(world.settings, generation["id"])
    media = world.api.ok("GET", f"/api/v1/generations/{generation['id']}/media", owner)["items"]
    assert requests.get(media[0]["url"], timeout=10).status_code == 200
    assert media[0]["size_bytes"] == stored[0]["size_bytes"]


OUTPUT_URL = (
    "select outputs -> 'images' -> 0 ->> 'url' as url from public.generations where id = %s"
)


def test_generations_going_with_their_project_or_account_are_queued_for_cleanup(world):
    owner = world.api.user("leaving")
    world.api.grant_credits(owner, 1000)
    project = world.api.project(owner)
    in_project = world.api.generation(owner, project_id=project["id"])["id"]
    alone = world.api.generation(owner)["id"]
    for generation_id in (in_project, alone):
        world.advance(generation_id, "failed")
    world.api.ok("DELETE", f"/api/v1/projects/{project['id']}", owner, 204)
    assert world.api.sql(QUEUED, (in_project,)) != []
    assert world.api.sql(QUEUED, (alone,)) == []
    world.api.sql("delete from auth.users where id = %s returning id", (owner.id,))
    assert world.api.sql(QUEUED, (alone,)) != []
