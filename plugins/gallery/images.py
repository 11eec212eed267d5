"""What the gallery makes of an uploaded or fetched file: it must decode as a JPEG, PNG, WebP or GIF
image (Pillow told to try those decoders only: the name and the Content-Type are never trusted) of at
most ``MAX_BYTES`` bytes and ``MAX_PIXELS`` pixels (checked from the header, before the pixels are
decoded: a decompression bomb is refused). The image is then re-encoded from its pixels alone, so
EXIF (GPS), ICC profiles, comments and whatever else rode in the file (a PHP or HTML tail) are gone; a
GIF keeps its first frame only. A thumbnail of at most ``THUMBNAIL_SIDE`` pixels a side is made too."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

from translations import N_

MAX_BYTES: Final = 8 * 1024 * 1024
MAX_PIXELS: Final = 40_000_000
THUMBNAIL_SIDE: Final = 320
#: Pillow's own guard at our limit: it raises above twice this and warns above it; the warning is made
#: an error for the whole process (a filter set once here: a per-call `catch_warnings` is not
#: thread-safe, and images are decoded in worker threads), so both refuse the image.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

#: Pillow format -> (Content-Type, extension).
FORMATS: Final = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
}
CONTENT_TYPES: Final = frozenset(content_type for content_type, _ in FORMATS.values())


class ImageRefused(Exception):
    """The file is not an image the gallery takes; ``message`` (English, in the catalogue) says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class CleanImage:
    content_type: str
    data: bytes
    thumbnail: bytes
    width: int
    height: int


TOO_LARGE = N_("The image is too large: at most 8 MiB.")
NOT_AN_IMAGE = N_("The file is not a JPEG, PNG, WebP or GIF image.")
TOO_MANY_PIXELS = N_("The image has too many pixels: at most 40 million.")
BROKEN = N_("The image could not be read: the file is damaged or truncated.")


def _encode(image: Image.Image, format_: str) -> bytes:
    out = io.BytesIO()
    if format_ == "JPEG":
        image.save(out, "JPEG", quality=88, optimize=True)
    elif format_ == "WEBP":
        image.save(out, "WEBP", quality=85)
    else:
        image.save(out, format_, optimize=True)
    return out.getvalue()


def _pixels_only(image: Image.Image, format_: str) -> Image.Image:
    """A copy holding the pixels (upright) and nothing of the file's metadata but GIF/PNG transparency."""
    upright = ImageOps.exif_transpose(image)
    if format_ == "JPEG" and upright.mode not in ("RGB", "L"):
        upright = upright.convert("RGB")
    elif format_ == "WEBP" and upright.mode not in ("RGB", "RGBA"):
        upright = upright.convert("RGBA")
    elif format_ == "GIF" and upright.mode not in ("P", "L"):
        upright = upright.convert("P")
    clean = upright.copy()
    transparency = image.info.get("transparency")
    kept = transparency is not None and format_ in ("GIF", "PNG")
    clean.info = {"transparency": transparency} if kept else {}
    return clean


def clean_image(data: bytes) -> CleanImage:
    """The re-encoded image and its thumbnail, or ImageRefused."""
    if len(data) > MAX_BYTES:
        raise ImageRefused(TOO_LARGE)
    try:
        with Image.open(io.BytesIO(data), formats=list(FORMATS)) as image:
            format_ = image.format
            if format_ not in FORMATS:
                raise ImageRefused(NOT_AN_IMAGE)
            width, height = image.size
            if width < 1 or height < 1 or width * height > MAX_PIXELS:
                raise ImageRefused(TOO_MANY_PIXELS)
            image.seek(0)  # an animated GIF or WebP: its first frame
            image.load()
            clean = _pixels_only(image, format_)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRefused(TOO_MANY_PIXELS) from error
    except UnidentifiedImageError as error:
        raise ImageRefused(NOT_AN_IMAGE) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageRefused(BROKEN) from error
    thumbnail = clean.copy()
    thumbnail.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    content_type = FORMATS[format_][0]
    return CleanImage(content_type, _encode(clean, format_), _encode(thumbnail, format_), *clean.size)
