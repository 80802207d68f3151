"""``viewBox`` thumbnails: the image scaled so its longest side is at most the requested pixels.

Pillow decodes JPEG/PNG/GIF/BMP/TIFF/WebP; anything else gets 404 (no thumbnail), as a drive
without a renderer for that type would answer. Decoding is bounded (``MAX_PIXELS``) so a crafted
image cannot eat the server's memory.
"""

from __future__ import annotations

import io
from pathlib import Path

from acdfuse.server.errors import ApiError

MAX_VIEWBOX = 4096
MAX_PIXELS = 100_000_000


def render(path: Path, view_box: str) -> tuple[bytes, str]:
    try:
        px = int(view_box)
    except ValueError:
        raise ApiError(400, f"Invalid viewBox {view_box!r}") from None
    if not 1 <= px <= MAX_VIEWBOX:
        raise ApiError(400, f"viewBox must be between 1 and {MAX_VIEWBOX}")
    # imported here: Pillow is slow to import and only thumbnails need it
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as img:
            img.thumbnail((px, px))
            has_alpha = img.mode in ("RGBA", "LA", "P")
            out = io.BytesIO()
            if has_alpha:
                img.save(out, "PNG")
                return out.getvalue(), "image/png"
            img.convert("RGB").save(out, "JPEG", quality=85)
            return out.getvalue(), "image/jpeg"
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as e:
        raise ApiError(404, f"No thumbnail available: {e}", "NOT_FOUND") from None
