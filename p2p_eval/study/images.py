"""Image bytes as served to participants, and the decode check of ``study create``.

Every image is decoded and re-encoded (no file name, format or metadata reaches the page).  With *same
processing* (the default) every image is resized to ``size x size`` (Lanczos, only when its size differs) and
JPEG-encoded alike (quality, tables, 4:2:0), so served files differ only in content; without it each is
re-encoded as PNG at its own size.  A vigilance image is a pixelated, colour-inverted copy, processed the same.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageOps

from p2p_eval.errors import UserError, file_list

BROKEN_BLOCKS = 6  # the broken image keeps a 6x6 grid of blocks
DEFAULT_SIZE = 256  # the page shows every image in a 256 x 256 box
DEFAULT_QUALITY = 75  # PIL's default; re-encoding a quality-75 JPEG at 75 changes it little
CACHE_BYTES = 256 * 2**20  # served bytes kept in memory (a 256x256 JPEG at quality 75 is ~15-25 kB)


@dataclasses.dataclass(frozen=True)
class Processing:
    """How served images are encoded: ``quality`` None = lossless PNG at the file's own size."""
    size: int | None = None
    quality: int | None = None

    @property
    def media_type(self) -> str:
        return "image/png" if self.quality is None else "image/jpeg"

    def describe(self) -> str:
        if self.quality is None:
            return "off: each image re-encoded as lossless PNG at its own size"
        return f"on: every image resized to {self.size}x{self.size} and JPEG-encoded at quality {self.quality} (4:2:0)"


class _ByteCache:
    """Least-recently-used served bytes, at most ``limit`` bytes in all; thread-safe.  Each key is encoded
    once: a second thread asking for a key being encoded waits for that encoding instead of repeating it."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self.data: OrderedDict[tuple, bytes] = OrderedDict()
        self.lock = threading.Lock()
        self.pending: dict[tuple, threading.Lock] = {}

    def peek(self, key: tuple) -> bytes | None:
        with self.lock:
            if (data := self.data.get(key)) is not None:
                self.data.move_to_end(key)
            return data

    def get(self, key: tuple, make) -> bytes:  # noqa: ANN001 - key -> bytes
        if (data := self.peek(key)) is not None:
            return data
        with self.lock:
            busy = self.pending.setdefault(key, threading.Lock())
        with busy:  # one encoding per key at a time
            if (data := self.peek(key)) is None:
                try:
                    data = make(*key)
                finally:
                    with self.lock:
                        self.pending.pop(key, None)
                self.put(key, data)
            return data

    def put(self, key: tuple, data: bytes) -> None:
        with self.lock:
            if key in self.data:
                return
            self.data[key], self.size = data, self.size + len(data)
            while self.size > self.limit and len(self.data) > 1:
                _, old = self.data.popitem(last=False)
                self.size -= len(old)


_CACHE = _ByteCache(CACHE_BYTES)


def _key(path: str | Path, broken: bool, processing: Processing) -> tuple:
    p = Path(path)
    try:
        return (str(p), p.stat().st_mtime_ns, broken, processing)
    except OSError:
        raise UserError(f"image file missing: {p} (was the study's folder moved?)") from None


def render(path: str | Path, broken: bool = False, processing: Processing = Processing()) -> bytes:
    """Served bytes of ``path`` (RGB), or of its broken version; encoded once per file version and processing."""
    return _CACHE.get(_key(path, broken, processing), encode)


def cached(path: str | Path, broken: bool = False, processing: Processing = Processing()) -> bytes | None:
    """The served bytes of ``path`` if already encoded (file unchanged since), else None; never decodes."""
    return _CACHE.peek(_key(path, broken, processing))


def _decode(path: str | Path) -> PILImage.Image:
    """The fully decoded RGB image; UserError when the file cannot be decoded."""
    try:
        with PILImage.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as exc:
        raise UserError(f"cannot decode image {path}: {exc}") from None


def encode(path: str | Path, _mtime_ns: int | None = None, broken: bool = False,
           processing: Processing = Processing()) -> bytes:
    """The served bytes of ``path``, freshly decoded and encoded (no cache)."""
    rgb = _decode(path)
    if broken:
        small = rgb.resize((BROKEN_BLOCKS, BROKEN_BLOCKS), PILImage.Resampling.BILINEAR)
        rgb = ImageOps.invert(small.resize(rgb.size, PILImage.Resampling.NEAREST))
    buf = io.BytesIO()
    if processing.quality is None:
        rgb.save(buf, format="PNG")
    else:
        side = processing.size or DEFAULT_SIZE
        if rgb.size != (side, side):
            rgb = rgb.resize((side, side), PILImage.Resampling.LANCZOS)
        rgb.save(buf, format="JPEG", quality=processing.quality, subsampling="4:2:0", optimize=False)
    return buf.getvalue()


def require_decodable(paths: Iterable[Path], what: str, folder: str | Path) -> None:
    """UserError naming every file of ``paths`` that cannot be decoded completely (``what``: the folder's role)."""
    bad = []
    for path in paths:
        try:
            _decode(path)
        except UserError as exc:
            reason = str(exc).split(": ", 1)[-1].strip() or "unreadable"
            bad.append(f"{path.name} ({reason[:80]})")
    if bad:
        raise UserError(f"{what} {folder}: {len(bad)} image(s) cannot be decoded: {file_list(bad, limit=5)}; "
                        "replace or remove them (every image is decoded when the study is created)")
