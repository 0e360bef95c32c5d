"""A simulated FAL.ai for development: the same protocol, real pictures, no account.

``make run`` without ``FAL_KEY`` uses it; production refuses to start without a key, so it
never runs there. It answers the calls the worker makes of fal-client's ``SyncClient``
(``submit``, ``status``, ``result``, ``cancel``) and then behaves as FAL does: it renders
the output in the background, serves it from URLs of its own
(``<PUBLIC_URL>/simulated-fal/files/...``), and calls the webhook URL with a body and
headers in FAL's format, signed with an ED25519 key whose public half it publishes at
``<PUBLIC_URL>/simulated-fal/.well-known/jwks.json``. Everything downstream (webhook
verification, the media copy with its host and address checks) runs unchanged.

Outputs are real: an image of the requested aspect ratio that shows the prompt (Pillow),
and for video models a two-second WebM (VP8) clip, which browsers play without
proprietary codecs, made by the ffmpeg that the imageio-ffmpeg wheel ships.

State lives in files under ``<MEDIA_DIR>/simulated-fal`` so the web process (which serves
files and keys) and the worker (which submits) share it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import imageio_ffmpeg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image, ImageDraw, ImageFont

from backend.fal.queue import FalRejected

log = logging.getLogger(__name__)

LONG_SIDE = 1024
CLIP_LONG_SIDE = 640
CLIP_SECONDS = 2
CLIP_FPS = 12
WEBHOOK_ATTEMPTS = 5
RETRY_SECONDS = 1.0  # the first wait between webhook attempts; each next one doubles
USER_ID = "simulated-fal"
KEY_FILE = "signing-key.pem"


# rendering -------------------------------------------------------------------------------


def size_for(arguments: dict, long_side: int = LONG_SIDE) -> tuple[int, int]:
    """Width and height from FAL's ``image_size`` ({width, height}) or ``aspect_ratio``."""
    image_size = arguments.get("image_size")
    if isinstance(image_size, dict) and {"width", "height"} <= image_size.keys():
        return int(image_size["width"]), int(image_size["height"])
    ratio = str(arguments.get("aspect_ratio") or "1:1")
    try:
        across, down = (float(part) for part in ratio.split(":", 1))
    except ValueError:
        across, down = 1.0, 1.0
    if across >= down:
        return long_side, _even(long_side * down / across)
    return _even(long_side * across / down), long_side


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)  # video encoders want even sizes


def _colours(prompt: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    digest = hashlib.sha256(prompt.encode()).digest()
    return (digest[0] // 2, digest[1] // 2, digest[2] // 2), (digest[3], digest[4], digest[5])


def draw_frame(prompt: str, width: int, height: int, progress: float = 0.0) -> Image.Image:
    """A gradient from the prompt's hash with the prompt written across it."""
    start, end = _colours(prompt)
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = (y / max(1, height - 1) + progress) % 1.0
        colour = tuple(int(a + (b - a) * t) for a, b in zip(start, end, strict=True))
        draw.line([(0, y), (width, y)], fill=colour)
    font = ImageFont.load_default(size=max(12, min(width, height) // 16))
    lines = textwrap.wrap(prompt, width=28)[:8] or [" "]
    text = "\n".join(lines)
    box = draw.multiline_textbbox((0, 0), text, font=font, align="center")
    x = (width - (box[2] - box[0])) / 2
    y = (height - (box[3] - box[1])) / 2
    draw.multiline_text((x + 2, y + 2), text, font=font, fill=(0, 0, 0), align="center")
    draw.multiline_text((x, y), text, font=font, fill=(255, 255, 255), align="center")
    return image


def render_image(prompt: str, width: int, height: int) -> bytes:
    with tempfile.SpooledTemporaryFile() as buffer:
        draw_frame(prompt, width, height).save(buffer, format="PNG")
        buffer.seek(0)
        return buffer.read()


def render_clip(prompt: str, width: int, height: int, seconds: int = CLIP_SECONDS) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "clip.webm")
        writer = imageio_ffmpeg.write_frames(
            path,
            (width, height),
            fps=CLIP_FPS,
            codec="libvpx",
            quality=None,
            bitrate="400k",
            macro_block_size=2,
            output_params=["-an", "-f", "webm"],
        )
        writer.send(None)  # the generator starts ffmpeg on its first send
        frames = seconds * CLIP_FPS
        for index in range(frames):
            writer.send(draw_frame(prompt, width, height, index / frames).tobytes())
        writer.close()
        return Path(path).read_bytes()


# the provider ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestState:
    """A request's queue status (IN_QUEUE, IN_PROGRESS, COMPLETED) and its error, if any."""

    status: str
    error: str | None = None


@dataclass(frozen=True)
class Handle:
    """What fal-client's ``submit`` returns, as far as the worker uses it."""

    request_id: str


class SimulatedFal:
    def __init__(self, directory: str | Path, public_url: str, kind_of=None):
        self.directory = Path(directory)
        self.public_url = public_url.rstrip("/")
        self._kind_of = kind_of or (
            lambda model_id: (
                "video" if "video" in model_id or model_id.endswith("veo3") else "image"
            )
        )

    # fal-client's SyncClient calls ------------------------------------------------------

    def submit(
        self, application: str, arguments: dict, *, webhook_url: str | None = None, **_ignored
    ) -> Handle:
        request_id = str(uuid.uuid4())
        folder = self._folder(request_id)
        folder.mkdir(parents=True)
        self._write(request_id, {"status": "IN_QUEUE", "application": application})
        worker = threading.Thread(
            target=self._run,
            args=(request_id, application, dict(arguments), webhook_url),
            name=f"simulated-fal-{request_id[:8]}",
            daemon=True,
        )
        worker.start()
        return Handle(request_id)

    def status(self, application: str, request_id: str, **_ignored) -> dict:
        state = self.request_state(request_id)
        return {"status": state["status"], "request_id": request_id}

    def result(self, application: str, request_id: str, **_ignored) -> dict:
        state = self.request_state(request_id)
        if state["status"] != "COMPLETED":
            raise RuntimeError(f"request {request_id} is {state['status']}")
        return state["payload"]

    def cancel(self, application: str, request_id: str, **_ignored) -> None:
        state = self.request_state(request_id)
        if state["status"] != "IN_QUEUE":
            raise RuntimeError("only a queued request can be cancelled")
        self._write(request_id, {**state, "status": "CANCELLED"})

    # keys and files the web app serves ---------------------------------------------------

    def jwks(self) -> dict:
        public = (
            self.signing_key()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        x = base64.urlsafe_b64encode(public).rstrip(b"=").decode()
        kid = hashlib.sha256(public).hexdigest()[:16]
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig"}]}

    def file_path(self, request_id: str, name: str) -> Path | None:
        try:
            uuid.UUID(request_id)
        except ValueError:
            return None
        if name not in ("output.png", "output.webm"):
            return None
        path = self._folder(request_id) / name
        return path if path.is_file() else None

    def signing_key(self) -> Ed25519PrivateKey:
        """The simulator's key, made once per data directory and shared by its processes."""
        path = self.directory / KEY_FILE
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it first: use theirs
            else:
                with os.fdopen(fd, "wb") as file:
                    file.write(pem)
        for _ in range(50):  # the other process may still be writing it
            pem = path.read_bytes()
            if pem:
                return serialization.load_pem_private_key(pem, password=None)
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty")

    # the work ---------------------------------------------------------------------------

    def _run(self, request_id: str, application: str, arguments: dict, webhook_url: str | None):
        try:
            if self.request_state(request_id)["status"] == "CANCELLED":
                return
            self._write(request_id, {"status": "IN_PROGRESS", "application": application})
            payload = self._render(request_id, application, arguments)
            self._write(
                request_id, {"status": "COMPLETED", "application": application, "payload": payload}
            )
            body = {
                "request_id": request_id,
                "gateway_request_id": request_id,
                "status": "OK",
                "payload": payload,
            }
        except Exception as error:  # a failed render is a failed request, as FAL reports it
            log.exception("simulated FAL request %s failed", request_id)
            self._write(
                request_id, {"status": "COMPLETED", "application": application, "error": str(error)}
            )
            body = {
                "request_id": request_id,
                "gateway_request_id": request_id,
                "status": "ERROR",
                "payload": None,
                "error": str(error),
            }
        if webhook_url:
            self._call_webhook(webhook_url, request_id, body)

    def _render(self, request_id: str, application: str, arguments: dict) -> dict:
        prompt = str(arguments.get("prompt", ""))
        base = f"{self.public_url}/simulated-fal/files/{request_id}"
        if self._kind_of(application) == "video":
            width, height = size_for(arguments, CLIP_LONG_SIDE)
            clip = render_clip(prompt, width, height)
            (self._folder(request_id) / "output.webm").write_bytes(clip)
            return {
                "video": {
                    "url": f"{base}/output.webm",
                    "content_type": "video/webm",
                    "file_size": len(clip),
                    "width": width,
                    "height": height,
                }
            }
        width, height = size_for(arguments)
        images = []
        picture = render_image(prompt, width, height)
        (self._folder(request_id) / "output.png").write_bytes(picture)
        for _ in range(int(arguments.get("num_images") or 1)):
            images.append(
                {
                    "url": f"{base}/output.png",
                    "content_type": "image/png",
                    "width": width,
                    "height": height,
                }
            )
        return {"images": images, "prompt": prompt, "has_nsfw_concepts": [False] * len(images)}

    def _call_webhook(self, url: str, request_id: str, body: dict) -> None:
        raw = json.dumps(body).encode()
        for attempt in range(WEBHOOK_ATTEMPTS):
            try:
                response = httpx.post(
                    url,
                    content=raw,
                    headers=self.webhook_headers(request_id, raw),
                    timeout=10,
                    trust_env=False,
                )
                # FAL retries a delivery that was not taken (a 404 included: the app answers
                # that for a request id its worker has not recorded yet)
                if response.is_success:
                    return
                log.info("simulated FAL webhook attempt %d: %d", attempt + 1, response.status_code)
            except httpx.HTTPError as error:
                log.info("simulated FAL webhook attempt %d failed: %s", attempt + 1, error)
            time.sleep(RETRY_SECONDS * 2**attempt)

    def webhook_headers(self, request_id: str, raw_body: bytes) -> dict:
        """FAL's webhook headers: ED25519 over request id, user id, timestamp, body hash."""
        timestamp = str(int(time.time()))
        message = "\n".join(
            [request_id, USER_ID, timestamp, hashlib.sha256(raw_body).hexdigest()]
        ).encode()
        signature = self.signing_key().sign(message).hex()
        return {
            "content-type": "application/json",
            "x-fal-webhook-request-id": request_id,
            "x-fal-webhook-user-id": USER_ID,
            "x-fal-webhook-timestamp": timestamp,
            "x-fal-webhook-signature": signature,
        }

    def _folder(self, request_id: str) -> Path:
        return self.directory / "requests" / request_id

    def request_state(self, request_id: str) -> dict:
        return json.loads((self._folder(request_id) / "state.json").read_text())

    def _write(self, request_id: str, state: dict) -> None:
        path = self._folder(request_id) / "state.json"
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(state))
        partial.replace(path)


class SimulatedQueue:
    """The simulator behind the worker's queue interface: ``submit`` -> request id,
    ``state`` -> RequestState, ``result``, ``cancel`` (as the official client's wrapper)."""

    def __init__(self, simulator: SimulatedFal):
        self.simulator = simulator

    def submit(self, model_id: str, arguments: dict, webhook_url: str) -> str:
        return self.simulator.submit(model_id, arguments, webhook_url=webhook_url).request_id

    def state(self, model_id: str, request_id: str) -> RequestState:
        state = self.simulator.request_state(request_id)
        status = "COMPLETED" if state["status"] == "CANCELLED" else state["status"]
        error = state.get("error") or ("cancelled" if state["status"] == "CANCELLED" else None)
        return RequestState(status, error)

    def result(self, model_id: str, request_id: str) -> dict:
        return self.simulator.result(model_id, request_id)

    def cancel(self, model_id: str, request_id: str) -> None:
        try:
            self.simulator.cancel(model_id, request_id)
        except RuntimeError as error:  # it has started: FAL would not take it off its queue
            raise FalRejected(str(error)) from None
