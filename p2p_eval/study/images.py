"""Image bytes as served to participants: every image is re-encoded to PNG (no file name, format or
metadata can tell real from fake); a vigilance image is a pixelated, colour-inverted copy that any
attentive participant recognises as broken."""

from __future__ import annotations

import functools
import io
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageOps

from p2p_eval.errors import UserError

BROKEN_BLOCKS = 6  # the broken image keeps a 6x6 grid of blocks


def render(path: str | Path, broken: bool = False) -> bytes:
    """PNG bytes of ``path`` (RGB), or of its broken version; cached per file version."""
    p = Path(path)
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        raise UserError(f"image file missing: {p} (was the study's folder moved?)") from None
    return _render_cached(str(p), mtime, broken)


@functools.lru_cache(maxsize=1024)
def _render_cached(path: str, _mtime_ns: int, broken: bool) -> bytes:
    try:
        with PILImage.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot decode image {path}: {exc}") from None
    if broken:
        small = rgb.resize((BROKEN_BLOCKS, BROKEN_BLOCKS), PILImage.Resampling.BILINEAR)
        rgb = ImageOps.invert(small.resize(rgb.size, PILImage.Resampling.NEAREST))
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    return buf.getvalue()
