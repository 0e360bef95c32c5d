"""What a stored output is: its type and pixel size, read from the bytes themselves.

The provider's word on type and size is not trusted. The bytes must be one of the formats we
serve, and their type is what is stored and served, whatever the provider declared: an
image is opened with Pillow, allowed only the formats below (so a file that another of its
plugins would read, such as a PhotoCD marker hidden in an SVG, is refused), and a video
must start as an MP4 or WebM file does and decode, its size read by the ffmpeg that the
imageio-ffmpeg wheel ships.
"""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
import warnings
from dataclasses import dataclass

import imageio_ffmpeg
from PIL import Image

from backend.media.fetch import UnsafeMedia

IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/webm": "webm",
}
WEBM_START = b"\x1a\x45\xdf\xa3"  # an EBML header (WebM, Matroska)
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
VIDEO_PROBE_SECONDS = 30
# "Stream #0:0: Video: vp9 (Profile 0), yuv420p(tv), 320x180, SAR 1:1": the first WxH of the
# first video stream's line (five digits at most, so "0x31637661", a codec tag, is not one)
VIDEO_SIZE = re.compile(r"Stream #[^\n]*?Video:[^\n]*?[ ,](\d{1,5})x(\d{1,5})[ ,\n]")


@dataclass(frozen=True)
class Probed:
    content_type: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.content_type]


def probe(body: bytes) -> Probed:
    """The body's type and size; UnsafeMedia when it is none of the formats we serve."""
    video_type = _video_type(body)
    if video_type is not None:
        return Probed(video_type, *_video_size(body))
    return _image(body)


def _video_type(body: bytes) -> str | None:
    if body[4:8] == b"ftyp":  # an ISO media file's first box
        return "video/mp4"
    if body.startswith(WEBM_START):
        return "video/webm"
    return None


def _image(body: bytes) -> Probed:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(body), formats=list(IMAGE_TYPES)) as image:
                image.verify()
                return Probed(IMAGE_TYPES[image.format], *image.size)
    except Exception as error:  # Pillow raises many types for a bad file: all mean "not an image"
        raise UnsafeMedia(
            f"the body is not a {', '.join(IMAGE_TYPES)} image, an MP4 or a WebM video: {error}"
        ) from None


def _video_size(body: bytes) -> tuple[int, int]:
    """The first video stream's size, as ffmpeg reads it while decoding one frame."""
    with tempfile.NamedTemporaryFile(suffix=".video") as file:
        file.write(body)
        file.flush()
        command = [FFMPEG, "-hide_banner", "-nostdin", "-i", file.name]
        command += ["-map", "0:v:0", "-frames:v", "1", "-f", "null", "-"]
        try:
            run = subprocess.run(command, capture_output=True, timeout=VIDEO_PROBE_SECONDS)  # noqa: S603 (our own ffmpeg and file)
        except subprocess.TimeoutExpired:
            raise UnsafeMedia("the body is not a readable video: ffmpeg took too long") from None
    size = VIDEO_SIZE.search(run.stderr.decode("utf-8", "replace"))
    if run.returncode != 0 or size is None:
        raise UnsafeMedia("the body is not a readable video")
    return int(size.group(1)), int(size.group(2))
