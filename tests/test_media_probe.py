"""What a stored output is comes from its bytes: only the image and video formats we serve,
typed by what they are, whatever the provider declared."""

from __future__ import annotations

import io
import subprocess

import pytest
from PIL import Image

from backend.fal.simulated import render_clip
from backend.media.fetch import UnsafeMedia
from backend.media.probe import FFMPEG, Probed, probe


def image(kind: str, size=(3, 2)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "red").save(out, kind)
    return out.getvalue()


def svg_that_pillow_reads_as_photo_cd() -> bytes:
    """An SVG with a script, which Pillow's PhotoCD reader also opens: it looks for its marker
    at byte 2048, here inside an XML comment."""
    head = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script><!--'
    body = head.ljust(2048, b"a") + b"PCD_".ljust(4096, b"a") + b"-->\n</svg>\n"
    assert Image.open(io.BytesIO(body)).format == "PCD"  # what Pillow makes of it, unasked
    return body


@pytest.mark.parametrize(
    ("kind", "content_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")],
)
def test_an_image_is_typed_by_its_bytes(kind, content_type):
    probed = probe(image(kind))
    assert probed == Probed(content_type, 3, 2)
    assert probed.extension in {"png", "jpg", "webp", "gif"}


def test_a_webm_is_typed_and_sized_by_its_bytes():
    assert probe(render_clip("a boat", 320, 180, seconds=1)) == Probed("video/webm", 320, 180)


def test_an_mp4_is_typed_and_sized_by_its_bytes(tmp_path):
    """H.264 in MP4, whose codec tag (0x31637661) must not be read as a size."""
    clip = tmp_path / "clip.mp4"
    command = [FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=5"]
    command += ["-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)]
    subprocess.run(command, check=True, timeout=60)
    assert probe(clip.read_bytes()) == Probed("video/mp4", 320, 180)


@pytest.mark.parametrize(
    "body",
    [
        svg_that_pillow_reads_as_photo_cd(),
        image("BMP"),
        image("TIFF"),
        b"<html><script>alert(1)</script></html>",
        b"\0\0\0\0ftyp" + b"\0" * 64,  # an MP4 box that ffmpeg cannot play
    ],
    ids=["svg-photo-cd", "bmp", "tiff", "html", "broken-mp4"],
)
def test_anything_else_is_refused(body):
    with pytest.raises(UnsafeMedia, match=r"not a (PNG, JPEG, WEBP, GIF image|readable video)"):
        probe(body)
