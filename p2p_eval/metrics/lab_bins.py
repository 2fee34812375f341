"""Fast exact L / a / b bin counts of uint8 sRGB pixels: a table over all 2^24 colours plus a small C loop.

Reference: scikit-image's ``skimage.color.rgb2lab`` (CIE Lab, illuminant D65, 2 degree observer) followed by
``numpy.histogram`` with the fixed bins of :data:`p2p_eval.metrics.color.BINS`.  Every one of the 2^24 sRGB
colours is converted once, by ``skimage.color.rgb2lab`` itself, and its three bin indices are stored in a
table (uint32 per colour ``r | g << 8 | b << 16``: L bin | a bin << 8 | b bin << 16; 64 MiB).  The counts
are therefore those of the per-image scikit-image loop by construction; the only possible differences are
pixels whose Lab value lies within floating-point noise of a bin edge, if ``rgb2lab`` rounded the same
colour differently in a different array shape (``benchmarks/perf/color.py`` counts them on the 500
Cityscapes val photos: none).

Binning is ``numpy.histogram``'s: bin ``i`` holds ``edge[i] <= v < edge[i + 1]``, the last bin is closed.

The table is computed on first use (2-5 s of scikit-image over 16.7 M colours) and cached as
``$XDG_CACHE_HOME/p2p-eval/color/lab-bins-<key>.npy`` (``~/.cache``), with a sidecar sha256 checked on
every load; the key covers the bins, scikit-image's version and this module's table format, so nothing
stale is reused.  Without a writable cache the table lives in the process.

Counting: :class:`ColourCounts` adds one to a per-colour counter (2^24 uint32, pages allocated as touched)
per pixel, and turns the colours seen into bin counts only when asked (:meth:`ColourCounts.flush`): one
memory access per pixel, the table read once per distinct colour.  The loop is C, compiled on first use
with the system C compiler (``$CC`` or ``cc``) and cached beside the table.  Without a compiler,
:func:`count_bins` gives the same counts from numpy (``take`` + ``bincount`` per image, about 3x slower).
``P2P_EVAL_COLOR_KERNEL=numpy`` forces numpy, ``=c`` makes a missing compiler an error.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path

import numpy as np

FORMAT = 2  # bump when the table's layout or the way it is built changes
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}


def colour_index(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Index of colours (uint8 channel arrays) in the table: ``r | g << 8 | b << 16`` (uint32)."""
    idx = np.asarray(b, dtype=np.uint32) << 16
    idx |= np.asarray(g, dtype=np.uint32) << 8
    idx |= r
    return idx


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/p2p-eval/color`` (default ``~/.cache/p2p-eval/color``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "p2p-eval" / "color"


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value as ``numpy.histogram(values, edges)`` counts it: ``edges[i] <= v < edges[i + 1]``,
    the last bin closed; values outside ``[edges[0], edges[-1]]`` get -1."""
    idx = np.searchsorted(edges, values, side="right") - 1
    n = len(edges) - 1
    idx[values == edges[-1]] = n - 1
    idx[(idx < 0) | (idx >= n) | ~(values >= edges[0])] = -1
    return idx


def _table_key() -> str:
    from importlib.metadata import version

    from p2p_eval.metrics.color import BINS

    spec = json.dumps({"format": FORMAT, "bins": BINS, "skimage": version("scikit-image")}, sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def build_table() -> np.ndarray:
    """The (2^24,) uint32 table (index ``r | g << 8 | b << 16``), from ``skimage.color.rgb2lab`` over every sRGB colour.

    Colours go through ``rgb2lab`` as (16, 256, 256, 3) blocks, i.e. rows of 256 pixels, the shape in
    which it sees a 256-pixel-wide image.  Raises RuntimeError if a colour falls outside the bins (the
    sRGB gamut lies inside them; see :data:`p2p_eval.metrics.color.BINS`).
    """
    from skimage.color import rgb2lab

    from p2p_eval.metrics.color import CHANNELS, bin_edges

    edges = [bin_edges(c) for c in CHANNELS]
    table = np.empty(1 << 24, np.uint32)
    v = np.arange(256, dtype=np.uint8)
    step = 16
    block = np.empty((step, 256, 256, 3), np.uint8)  # [b, g, r]: table order
    block[..., 0] = v[None, None, :]
    block[..., 1] = v[None, :, None]
    for b0 in range(0, 256, step):
        block[..., 2] = v[b0:b0 + step, None, None]
        lab = rgb2lab(block)
        entry = table[b0 << 16:(b0 + step) << 16].reshape(block.shape[:3])
        entry[:] = 0
        for k in range(3):
            idx = bin_index(lab[..., k], edges[k])
            if (idx < 0).any():
                raise RuntimeError(f"sRGB colours outside the {CHANNELS[k]} bins; widen BINS")
            entry |= idx.astype(np.uint32) << (8 * k)
    return table


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _atomic_save(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


def load_table(use_cache: bool = True) -> np.ndarray:
    """The colour -> bins table: from the disk cache when its sha256 checks out, else built (and cached)."""
    with _LOCK:
        if "table" in _STATE:
            return _STATE["table"]  # type: ignore[return-value]
        path = cache_dir() / f"lab-bins-{_table_key()}.npy"
        digest = path.with_suffix(".sha256")
        table = None
        if use_cache and path.exists() and digest.exists():
            try:
                if _sha256(path) == digest.read_text().strip():
                    table = np.load(path)
            except (OSError, ValueError):
                table = None
            if table is not None and (table.dtype != np.uint32 or table.shape != (1 << 24,)):
                table = None
        if table is None:
            table = build_table()
            if use_cache:
                try:
                    _atomic_save(path, lambda p: _save_npy(p, table))
                    _atomic_save(digest, lambda p: p.write_text(_sha256(path) + "\n"))
                except OSError:
                    pass  # a read-only home: the table lives for this process only
        _STATE["table"] = table
        return table


# --------------------------------------------------------------------------------------------------
# The C loop.

C_SOURCE = r"""
#include <stdint.h>
#include <stddef.h>
#include <string.h>

/* Colour key r | g << 8 | b << 16 of the pixel at q (channel stride sc). */
static inline uint32_t key_at(const uint8_t *q, ptrdiff_t sc) {
    return (uint32_t)q[0] | ((uint32_t)q[sc] << 8) | ((uint32_t)q[2 * sc] << 16);
}

/* How many pixels ahead the loop asks the CPU to fetch a counter: the counters are 64 MiB, touched in
   no order the hardware prefetcher can guess, so without this every new colour waits for memory.  The
   pixel ahead is read only inside the image (tests/metrics/test_color.py puts images before a guard page). */
#define AHEAD 128

/* Add one per pixel to cc[r | g << 8 | b << 16] for n images of h x w uint8 pixels, byte strides sn (image),
   sh (row), sw (pixel), sc (channel); mask (may be NULL, strides mn, mh, mw): only pixels where it is nonzero.
   dirty[key >> 8] = 1 marks the 256-colour blocks touched, so that a flush visits only those. */
void p2p_colour_count(const uint8_t *px, long n, long h, long w,
                      ptrdiff_t sn, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t sc,
                      const uint8_t *mask, ptrdiff_t mn, ptrdiff_t mh, ptrdiff_t mw,
                      uint32_t *cc, uint8_t *dirty) {
    for (long i = 0; i < n; i++) {
        const uint8_t *img = px + i * sn;
        long ay = AHEAD / w, ax = AHEAD % w;  /* the pixel whose counter is fetched now */
        for (long y = 0; y < h; y++) {
            const uint8_t *p = img + y * sh;
            const uint8_t *m = mask ? mask + i * mn + y * mh : NULL;
            long x = 0;
            if (m == NULL && sw == 3 && sc == 1 && ay + 1 < h) {
                /* interleaved RGB, the fetched pixel a row or less ahead: one 4-byte load per pixel (the 4th
                   byte is the next pixel's, masked off); the row's last pixel is read byte by byte below so
                   that nothing past the image is touched */
                const uint8_t *a = img + ay * sh + 3 * ax;   /* walks the fetched row, then the next one */
                const uint8_t *next = img + (ay + 1) * sh;
                long left = w - ax;                           /* pixels left in the fetched row */
                for (; x + 1 < w; x++) {
                    uint32_t u, v;
                    memcpy(&u, a, 2);
                    u |= (uint32_t)a[2] << 16;
                    __builtin_prefetch(cc + u, 1, 3);
                    if (--left) a += 3; else { a = next; left = w; ay++; }
                    memcpy(&v, p + 3 * x, 4);
                    v &= 0xFFFFFFu;
                    cc[v]++;
                    dirty[v >> 8] = 1;
                }
                ax = w - left;
            }
            for (; x < w; x++) {
                if (ay < h) {
                    __builtin_prefetch(cc + key_at(img + ay * sh + ax * sw, sc), 1, 3);
                    if (++ax == w) { ax = 0; ay++; }
                }
                if (m != NULL && !m[x * mw]) continue;
                uint32_t v = key_at(p + x * sw, sc);
                cc[v]++;
                dirty[v >> 8] = 1;
            }
        }
    }
}

/* Move the colour counts of the dirty blocks into bin counts (3 x 256 int64: L, a, b) through the table
   (L | a << 8 | b << 16 per colour), zeroing what was moved. */
void p2p_colour_flush(uint32_t *cc, uint8_t *dirty, const uint32_t *tab, int64_t *counts) {
    for (long blk = 0; blk < 65536; blk++) {
        if (!dirty[blk]) continue;
        dirty[blk] = 0;
        uint32_t *c = cc + (blk << 8);
        const uint32_t *t = tab + (blk << 8);
        for (int k = 0; k < 256; k++) {
            uint32_t v = c[k];
            if (!v) continue;
            uint32_t e = t[k];
            counts[e & 255] += v;
            counts[256 + ((e >> 8) & 255)] += v;
            counts[512 + (e >> 16)] += v;
            c[k] = 0;
        }
    }
}
"""
_CFLAGS = ["-O3", "-shared", "-fPIC", "-fno-strict-aliasing"]


def _compiler() -> list[str] | None:
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc")
    cmd = cc.split()
    return cmd if cmd and shutil.which(cmd[0]) else (["cc"] if shutil.which("cc") else None)


def _build_kernel() -> ctypes.CDLL | None:
    """Compile (once, cached) and load the C loop; None when no C compiler works."""
    cc = _compiler()
    if cc is None:
        return None
    key = hashlib.sha256("\0".join([C_SOURCE, *cc, *_CFLAGS, platform.machine(), sys.platform]).encode()).hexdigest()[:16]
    name = f"lab-bins-{key}{sysconfig.get_config_var('SHLIB_SUFFIX') or '.so'}"
    lib_path = cache_dir() / name
    if not lib_path.exists():
        try:
            build = Path(tempfile.mkdtemp(prefix="p2p-eval-color-"))  # also the home of the library if the cache is read-only
            src = build / "lab_bins.c"
            src.write_text(C_SOURCE)
            out = build / name
            subprocess.run([*cc, *_CFLAGS, "-o", str(out), str(src)], check=True, capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
        try:
            _atomic_save(lib_path, lambda p: shutil.copyfile(out, p))
            shutil.rmtree(build, ignore_errors=True)
        except OSError:
            lib_path = out
    try:
        lib = ctypes.CDLL(str(lib_path))
    except OSError:
        return None
    ptr, ssize, long_ = ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_long
    lib.p2p_colour_count.argtypes = [ptr, long_, long_, long_, ssize, ssize, ssize, ssize, ptr, ssize, ssize, ssize, ptr, ptr]
    lib.p2p_colour_count.restype = None
    lib.p2p_colour_flush.argtypes = [ptr, ptr, ptr, ptr]
    lib.p2p_colour_flush.restype = None
    return lib


def kernel() -> str:
    """Which loop counts pixels: ``"c"`` or ``"numpy"`` (see ``P2P_EVAL_COLOR_KERNEL``)."""
    want = os.environ.get("P2P_EVAL_COLOR_KERNEL", "auto").lower()
    if want == "auto" and _STATE.get("lib") is not None:
        return "c"  # the fast path of every update()
    if want not in ("auto", "c", "numpy"):
        raise ValueError(f"P2P_EVAL_COLOR_KERNEL={want!r}; use auto, c or numpy")
    if want == "numpy":
        return "numpy"
    with _LOCK:
        if "lib" not in _STATE:
            _STATE["lib"] = _build_kernel()
    if _STATE["lib"] is None:
        if want == "c":
            raise RuntimeError("P2P_EVAL_COLOR_KERNEL=c but no C compiler could build the colour loop; set CC or install cc")
        return "numpy"
    return "c"


def count_bins(images: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(3, 256) int64 counts of the L, a, b bin indices of uint8 (N, H, W, 3) ``images`` (any strides),
    only where ``mask`` (bool (N, H, W)) is true when given; numpy, image by image (the fallback loop)."""
    table = load_table()
    counts = np.zeros((3, 256), np.int64)
    for i in range(images.shape[0]):
        image = images[i]
        idx = colour_index(image[..., 0], image[..., 1], image[..., 2])
        if mask is not None:
            idx = idx[mask[i].astype(bool, copy=False)]
        entry = table.take(idx.ravel())
        counts[0] += np.bincount(entry & 255, minlength=256)
        counts[1] += np.bincount((entry >> 8) & 255, minlength=256)
        counts[2] += np.bincount(entry >> 16, minlength=256)
    return counts


_POOL: list[tuple[np.ndarray, np.ndarray]] = []  # zeroed counter buffers, kept warm for the next accumulator
_POOL_SIZE = 2


def _acquire() -> tuple[np.ndarray, np.ndarray]:
    with _LOCK:
        if _POOL:
            return _POOL.pop()
    return np.zeros(1 << 24, np.uint32), np.zeros(1 << 16, np.uint8)


def _release(buffers: tuple[np.ndarray, np.ndarray]) -> None:
    with _LOCK:
        if len(_POOL) < _POOL_SIZE:
            _POOL.append(buffers)


class ColourCounts:
    """Pixels counted per sRGB colour (C loop), turned into (3, 256) L / a / b bin counts by :meth:`flush`.

    Between a first :meth:`add` and the next :meth:`flush` it holds a 2^24 uint32 counter (64 MiB; only
    the pages of colours seen are backed) and a 64 KiB map of the 256-colour blocks touched; the flush
    visits only those blocks, leaves the counter zeroed and hands it back to a small pool, so that the
    next accumulator of the process counts into memory already paged in.  Flushes by itself before a
    counter could overflow.
    """

    _LIMIT = (1 << 32) - 1

    def __init__(self) -> None:
        self._buffers: tuple[np.ndarray, np.ndarray] | None = None
        self._pending = 0
        self._bins = np.zeros((3, 256), np.int64)

    def add(self, images: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Count uint8 (N, H, W, 3) ``images`` (any strides), only where ``mask`` (bool (N, H, W)) is true."""
        n, h, w, _ = images.shape
        if images.size == 0:
            return
        per_image = h * w
        if per_image > self._LIMIT:
            raise ValueError(f"an image of {per_image} pixels is too large to count")
        lib = _STATE["lib"]
        mptr, mn, mh, mw = None, 0, 0, 0
        if mask is not None:
            mask = mask.view(np.uint8) if mask.dtype == np.bool_ else (mask != 0).view(np.uint8)
            mptr, (mn, mh, mw) = mask.ctypes.data, mask.strides
        sn, sh, sw, sc = images.strides
        start = 0
        while start < n:
            take = max(1, min(n - start, (self._LIMIT - self._pending) // per_image))
            if self._pending + take * per_image > self._LIMIT:
                self.flush()
                continue
            if self._buffers is None:
                self._buffers = _acquire()
            cc, dirty = self._buffers
            base = images.ctypes.data + start * sn
            mbase = None if mptr is None else mptr + start * mn
            lib.p2p_colour_count(base, take, h, w, sn, sh, sw, sc, mbase, mn, mh, mw,  # type: ignore[attr-defined]
                                 cc.ctypes.data, dirty.ctypes.data)
            self._pending += take * per_image
            start += take

    def flush(self) -> np.ndarray:
        """Bin counts (3, 256) of everything counted so far (the colour counters are emptied into them)."""
        if self._buffers is not None:
            cc, dirty = self._buffers
            _STATE["lib"].p2p_colour_flush(cc.ctypes.data, dirty.ctypes.data,  # type: ignore[attr-defined]
                                           load_table().ctypes.data, self._bins.ctypes.data)
            self._buffers, self._pending = None, 0
            _release((cc, dirty))
        return self._bins

    def take_bins(self) -> np.ndarray:
        """:meth:`flush`, then hand the bin counts over and start again from zero."""
        bins = self.flush()
        self._bins = np.zeros((3, 256), np.int64)
        return bins
