"""A fake FAL.ai queue: the documented protocol over real HTTPS on loopback.

The official ``fal-client`` reaches it unchanged: ``FAL_QUEUE_RUN_HOST`` (read when
fal_client is imported, so set by ``reserve_queue_host`` before any import of it) names
``127.0.0.1:<port>``, and ``SSL_CERT_FILE`` (which httpx honours) trusts the throwaway CA the
fake's certificate comes from.

Routes, as FAL's queue has them:
- ``POST /{model_id}?fal_webhook=<url>`` -> ``request_id``, ``status_url``, ``response_url``,
  ``cancel_url``
- ``GET /{owner}/{alias}/requests/{id}/status`` -> ``IN_QUEUE`` / ``IN_PROGRESS`` / ``COMPLETED``
- ``GET /{owner}/{alias}/requests/{id}`` -> the result
- ``PUT /{owner}/{alias}/requests/{id}/cancel`` -> ``OK`` while queued (taken off the queue),
  ``CANCELLATION_REQUESTED`` while in progress (the run goes on), 400 ``ALREADY_COMPLETED``
- ``GET /.well-known/jwks.json`` -> the Ed25519 key its webhooks are signed with

Webhooks are signed as FAL signs them and posted to the request's ``fal_webhook`` URL when
the test says so (``complete``/``fail``), or at once after submit with ``auto_complete``.
Behaviours to set: ``submit_failures`` (answer the next N submits with 500),
``submit_status`` (answer every submit with this status), ``submit_fault`` (answer every
submit with a fault: ``"500"`` an outage, ``"timeout"`` FAL's 504 for a request that timed
out, ``"malformed"`` a 200 whose body is not FAL's answer), ``submit_delay`` (hold the submit
answer this long), ``duplicate`` (send each webhook twice), ``hold_webhooks`` (keep them
until ``release(reverse=True)`` sends them, reordered).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import trustme
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PORT_VARIABLE = "VELRO_TEST_FAL_PORT"
USER_ID = "fake-fal-user"


def reserve_queue_host() -> int:
    """Pick this process's port for the fake and point fal_client at it (before its import).

    Test processes (pytest-xdist's workers) inherit the variables: each picks its own port.
    """
    owner, _, chosen = os.environ.get(PORT_VARIABLE, "").partition(":")
    if owner == str(os.getpid()):
        return int(chosen)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ[PORT_VARIABLE] = f"{os.getpid()}:{port}"
    os.environ["FAL_QUEUE_RUN_HOST"] = f"127.0.0.1:{port}"
    os.environ["FAL_RUN_HOST"] = f"127.0.0.1:{port}"
    return port


def jwk_of(key: Ed25519PrivateKey, kid: str) -> dict:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}


def sign(key: Ed25519PrivateKey, request_id: str, timestamp: int, body: bytes) -> dict:
    """The headers FAL sends with a webhook body."""
    digest = hashlib.sha256(body).hexdigest()
    message = f"{request_id}\n{USER_ID}\n{timestamp}\n{digest}".encode()
    return {
        "Content-Type": "application/json",
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": USER_ID,
        "X-Fal-Webhook-Timestamp": str(timestamp),
        "X-Fal-Webhook-Signature": key.sign(message).hex(),
    }


@dataclass
class FakeRequest:
    request_id: str
    model_id: str
    arguments: dict
    webhook_url: str | None
    status: str = "IN_QUEUE"
    result: dict | None = None
    error: str | None = None


@dataclass
class Webhook:
    url: str
    headers: dict
    body: bytes
    answers: list[int] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)  # the bodies of those answers


class FakeFal:
    KEY = "fake-id:fake-secret"  # the FAL_KEY its clients send; any key is accepted

    def __init__(self, ca: trustme.CA, port: int) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.kid = "fake-fal-1"
        self.requests: dict[str, FakeRequest] = {}
        self.submits = 0
        self.submit_failures = 0
        self.submit_status: int | None = None
        self.submit_fault: str | None = None
        self.submit_delay = 0.0
        self.auto_complete = False
        self.duplicate = False
        self.hold_webhooks = False
        self.held: list[Webhook] = []
        self.sent: list[Webhook] = []
        self.jwks_fetches = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        # the CA's certificate as a file, for SSL_CERT_FILE; removed by stop()
        with tempfile.NamedTemporaryFile(suffix=".pem", delete=False) as bundle:
            bundle.write(ca.cert_pem.bytes())
        self.ca_bundle = bundle.name

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    def start(self) -> FakeFal:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        os.unlink(self.ca_bundle)

    def client_environment(self) -> dict[str, str]:
        """What a process needs to use this fake as FAL: trust its CA, a key, its JWKS."""
        return {
            "SSL_CERT_FILE": self.ca_bundle,
            "FAL_KEY": self.KEY,
            "FAL_JWKS_URL": self.jwks_url,
        }

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.held.clear()
            self.sent.clear()
        self.submits = self.submit_failures = 0
        self.submit_status = None
        self.submit_fault = None
        self.submit_delay = 0.0
        self.auto_complete = self.duplicate = self.hold_webhooks = False

    # what the test drives ------------------------------------------------------------

    def start_processing(self, request_id: str) -> None:
        self.requests[request_id].status = "IN_PROGRESS"

    def complete(self, request_id: str, result: dict | None = None, *, send: bool = True):
        request = self.requests[request_id]
        request.status = "COMPLETED"
        request.result = result or image_result(request.request_id)
        if send:
            self.send_webhook(request, {"status": "OK", "payload": request.result})

    def fail(self, request_id: str, error: str = "the model crashed", *, send: bool = True):
        request = self.requests[request_id]
        request.status, request.error = "COMPLETED", error
        if send:
            self.send_webhook(
                request, {"status": "ERROR", "error": error, "payload": {"detail": error}}
            )

    def send_webhook(self, request: FakeRequest, fields: dict, *, key=None, timestamp=None):
        body = json.dumps(
            {"request_id": request.request_id, "gateway_request_id": request.request_id, **fields}
        ).encode()
        headers = sign(key or self.key, request.request_id, timestamp or int(time.time()), body)
        copies = [Webhook(request.webhook_url, headers, body) for _ in range(1 + self.duplicate)]
        for webhook in copies:
            if self.hold_webhooks:
                self.held.append(webhook)
            else:
                self._post(webhook)
        return copies[-1]

    def release(self, *, reverse: bool = False) -> None:
        held, self.held = self.held, []
        for webhook in reversed(held) if reverse else held:
            self._post(webhook)

    def _post(self, webhook: Webhook) -> None:
        request = urllib.request.Request(  # noqa: S310 - the test's own loopback server
            webhook.url, data=webhook.body, headers=webhook.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                webhook.answers.append(response.status)
                webhook.replies.append(response.read())
        except urllib.error.HTTPError as error:
            webhook.answers.append(error.code)
            webhook.replies.append(error.read())
        self.sent.append(webhook)

    def only_request(self) -> FakeRequest:
        assert len(self.requests) == 1, f"expected one FAL request, got {len(self.requests)}"
        return next(iter(self.requests.values()))

    # the HTTP side -------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-fal-request-id", "fake")
                self.end_headers()
                self.wfile.write(data)

            def _fault(self, fault: str) -> None:
                if fault == "malformed":
                    data = b"<html>upstream sent garbage</html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return None
                if fault == "timeout":
                    # FAL's own answer for a request that ran out of time (not retried by
                    # fal-client, unlike a gateway's 504)
                    data = json.dumps({"detail": "Request timed out"}).encode()
                    self.send_response(504)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("X-Fal-Request-Timeout-Type", "user")
                    self.end_headers()
                    self.wfile.write(data)
                    return None
                return self._answer(500, {"detail": "fake outage"})

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/.well-known/jwks.json":
                    fake.jwks_fetches += 1
                    return self._answer(200, {"keys": [jwk_of(fake.key, fake.kid)]})
                request, action = fake._find(path)
                if request is None:
                    return self._answer(404, {"detail": "Request not found"})
                if action == "status":
                    body = {"status": request.status, "request_id": request.request_id}
                    if request.status == "IN_QUEUE":
                        body["queue_position"] = 0
                    body["logs"] = None
                    if request.error:
                        body["error"] = request.error
                    return self._answer(200, body)
                if request.status != "COMPLETED":
                    return self._answer(400, {"detail": "Request is still in progress"})
                if request.error:
                    return self._answer(422, {"detail": request.error})
                return self._answer(200, request.result)

            def do_PUT(self) -> None:
                request, action = fake._find(urlsplit(self.path).path)
                if request is None or action != "cancel":
                    return self._answer(404, {"detail": "Request not found"})
                if request.status == "IN_PROGRESS":  # signalled: the model may still finish
                    return self._answer(202, {"status": "CANCELLATION_REQUESTED"})
                if request.status != "IN_QUEUE":
                    return self._answer(400, {"status": "ALREADY_COMPLETED"})
                request.status, request.error = "COMPLETED", "cancelled"
                return self._answer(202, {"status": "OK"})

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                arguments = json.loads(self.rfile.read(length) or b"{}")
                if not self.headers.get("Authorization", "").startswith("Key "):
                    return self._answer(401, {"detail": "No key"})
                fake.submits += 1
                if fake.submit_delay:
                    time.sleep(fake.submit_delay)
                if fake.submit_status:
                    return self._answer(fake.submit_status, {"detail": "refused by the fake"})
                if fake.submit_fault:
                    return self._fault(fake.submit_fault)
                if fake.submit_failures > 0:
                    fake.submit_failures -= 1
                    return self._answer(500, {"detail": "fake outage"})
                webhook = parse_qs(url.query).get("fal_webhook", [None])[0]
                request = FakeRequest(str(uuid.uuid4()), url.path.lstrip("/"), arguments, webhook)
                with fake._lock:
                    fake.requests[request.request_id] = request
                base = f"{fake.base_url}/{request.model_id}/requests/{request.request_id}"
                self._answer(
                    200,
                    {
                        "request_id": request.request_id,
                        "status_url": f"{base}/status",
                        "response_url": base,
                        "cancel_url": f"{base}/cancel",
                    },
                )
                if fake.auto_complete and webhook:
                    threading.Thread(
                        target=fake.complete, args=(request.request_id,), daemon=True
                    ).start()

        return Handler

    def _find(self, path: str) -> tuple[FakeRequest | None, str]:
        parts = path.strip("/").split("/")
        if "requests" not in parts:
            return None, ""
        index = parts.index("requests")
        request_id = parts[index + 1] if len(parts) > index + 1 else ""
        action = parts[index + 2] if len(parts) > index + 2 else "result"
        return self.requests.get(request_id), action


def image_result(seed: str) -> dict:
    return {
        "images": [
            {
                "url": f"https://fal.media/files/{seed}.png",
                "content_type": "image/png",
                "width": 1024,
                "height": 1024,
            }
        ],
        "seed": 42,
    }
