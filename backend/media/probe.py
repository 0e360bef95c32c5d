"""What a stored output is: its pixel size, read from the bytes themselves.

The provider's word on type and size is not trusted: an image is opened with Pillow (which
also refuses a body that is not the image type it claims), a video's first frame size is
read by the ffmpeg that the imageio-ffmpeg wheel ships.
"""

from __future__ import annotations

import io
import mimetypes
import tempfile
import warnings

import imageio_ffmpeg
from PIL import Image

from backend.media.fetch import UnsafeMedia

EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "image/gif": "gif",
}


def extension_for(content_type: str) -> str:
    known = EXTENSIONS.get(content_type)
    if known:
        return known
    guessed = mimetypes.guess_extension(content_type) or ".bin"
    return guessed.lstrip(".")[:5]


def dimensions(body: bytes, content_type: str) -> tuple[int | None, int | None]:
    if content_type.startswith("image/"):
        return _image_size(body)
    if content_type.startswith("video/"):
        return _video_size(body)
    return None, None


def _image_size(body: bytes) -> tuple[int, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(body)) as image:
                image.verify()
                return image.size
    except Exception as error:  # Pillow raises many types for a bad file: all mean "not an image"
        raise UnsafeMedia(f"the body is not a readable image: {error}") from None


def _video_size(body: bytes) -> tuple[int | None, int | None]:
    with tempfile.NamedTemporaryFile(suffix=".video") as file:
        file.write(body)
        file.flush()
        frames = imageio_ffmpeg.read_frames(file.name)
        try:
            meta = next(frames)
        except (RuntimeError, StopIteration, OSError) as error:
            raise UnsafeMedia(f"the body is not a readable video: {error}") from None
        finally:
            frames.close()
    width, height = meta.get("size") or (None, None)
    return width, height
