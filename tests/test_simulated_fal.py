"""The simulated provider: FAL's queue protocol, real outputs, never in production."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from backend.config import Settings
from backend.fal import simulated
from backend.fal.queue import FalRejected
from backend.fal.simulated import SimulatedFal, SimulatedQueue, render_clip, size_for
from backend.fal.simulated_routes import uses_simulator
from backend.media.probe import Probed, probe


@pytest.mark.parametrize(
    ("arguments", "size"),
    [
        ({"aspect_ratio": "16:9"}, (1024, 576)),
        ({"aspect_ratio": "9:16"}, (576, 1024)),
        ({"aspect_ratio": "1:1"}, (1024, 1024)),
        ({"aspect_ratio": "21:9"}, (1024, 438)),
        ({}, (1024, 1024)),
        ({"image_size": {"width": 800, "height": 600}}, (800, 600)),
    ],
)
def test_outputs_have_the_requested_size(arguments, size):
    assert size_for(arguments) == size


def test_a_clip_is_a_webm_of_the_requested_size():
    clip = render_clip("a boat", 320, 180, seconds=1)
    assert clip[:4] == b"\x1a\x45\xdf\xa3"
    assert probe(clip) == Probed("video/webm", 320, 180)


def test_the_queue_protocol_from_submit_to_result(tmp_path):
    done = threading.Event()
    simulator = SimulatedFal(tmp_path, "http://localhost:8000", kind_of=lambda model: "image")
    simulator._call_webhook = lambda *args: done.set()  # no webhook URL to call here
    queue = SimulatedQueue(simulator)
    request_id = queue.submit("fal-ai/flux-pro/v1.1-ultra", {"prompt": "a fox"}, "http://x/hook")
    assert done.wait(30)
    assert queue.state("m", request_id).status == "COMPLETED"
    result = queue.result("m", request_id)
    [image] = result["images"]
    assert image["url"] == f"http://localhost:8000/simulated-fal/files/{request_id}/output.png"
    picture = Image.open(io.BytesIO(simulator.file_path(request_id, "output.png").read_bytes()))
    assert picture.size == (1024, 1024)
    assert simulator.file_path(request_id, "../signing-key.pem") is None


def test_a_started_request_cannot_be_cancelled(tmp_path):
    """As FAL's queue: FalRejected, which the cancel route answers with 409."""
    simulator = SimulatedFal(tmp_path, "http://localhost:8000", kind_of=lambda model: "image")
    done = threading.Event()
    simulator._call_webhook = lambda *args: done.set()
    queue = SimulatedQueue(simulator)
    request_id = queue.submit("m", {"prompt": "late"}, "http://x/hook")
    assert done.wait(30)
    with pytest.raises(FalRejected, match="only a queued request"):
        queue.cancel("m", request_id)


def test_every_process_of_one_data_directory_signs_with_one_key(tmp_path):
    first = SimulatedFal(tmp_path, "http://localhost:8000")
    second = SimulatedFal(tmp_path, "http://localhost:8000")
    assert first.jwks() == second.jwks()


@pytest.mark.parametrize(
    ("settings", "simulated"),
    [
        (Settings(APP_ENV="development", DATABASE_URL="x"), True),
        (Settings(APP_ENV="test", DATABASE_URL="x"), True),
        (Settings(APP_ENV="development", DATABASE_URL="x", FAL_KEY="k"), False),
        (Settings(APP_ENV="production", DATABASE_URL="x"), False),
    ],
)
def test_only_local_work_without_a_key_uses_the_simulator(settings, simulated):
    assert uses_simulator(settings) is simulated


def test_a_webhook_that_is_not_taken_is_sent_again(tmp_path, monkeypatch):
    """As FAL does: a delivery answered 404 (the app's answer for a request id its worker has
    not recorded yet) or 5xx is retried, until one is taken."""
    answers = [404, 503, 200]
    received = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(answers[len(received) - 1])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(simulated, "RETRY_SECONDS", 0.01)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/webhooks/fal"
        SimulatedFal(tmp_path, "http://fal.test")._call_webhook(url, "r-1", {"status": "OK"})
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 3
    assert len(set(received)) == 1  # the same delivery each time
