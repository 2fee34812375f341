"""Fast exact L / a / b bin counts of uint8 sRGB pixels: a table over all 2^24 colours plus a small C loop.

Reference: scikit-image's ``skimage.color.rgb2lab`` (CIE Lab, illuminant D65, 2 degree observer) followed by
``numpy.histogram`` with the fixed bins of :data:`p2p_eval.metrics.color.BINS`.  Every one of the 2^24 sRGB
colours is converted once, by ``skimage.color.rgb2lab`` itself, and its three bin indices are stored in a
table (uint32 per colour: L bin | a bin << 8 | b bin << 16; 64 MiB).  Counting an image is then one table
read and three increments per pixel, so the counts are those of the per-image scikit-image loop by
construction: the only possible differences are pixels whose Lab value lies within floating-point noise of
a bin edge, if ``rgb2lab`` rounded the same colour differently in a different array shape (the benchmark
``benchmarks/perf/color.py`` counts them on real photos; none so far).

Binning is ``numpy.histogram``'s: bin ``i`` holds ``edge[i] <= v < edge[i + 1]``, the last bin is closed.

The table is computed on first use (about 2 s of scikit-image over 16.7 M colours) and cached as
``$XDG_CACHE_HOME/p2p-eval/color/lab-bins-<key>.npy`` (``~/.cache``), with a sidecar sha256 checked on
every load; the key covers the bins, scikit-image's version and this module's table format, so nothing
stale is reused.  The table is laid out in Morton (bit-interleaved R, G, B) order, so that similar colours,
which neighbouring pixels of a photo have, share cache lines.

The per-pixel loop is C, compiled on first use with the system C compiler (``$CC`` or ``cc``) and cached
beside the table; without a compiler the same counts come from numpy (``take`` + ``bincount``, about 3x
slower).  ``P2P_EVAL_COLOR_KERNEL=numpy`` forces the numpy loop, ``=c`` makes a missing compiler an error.
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

FORMAT = 1  # bump when the table's layout or the way it is built changes
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}


def _spread_table() -> np.ndarray:
    """``S[v]``: the 8 bits of ``v`` moved to bits 0, 3, 6, ..., 21 (Morton interleave of one channel)."""
    v = np.arange(256, dtype=np.uint32)
    out = np.zeros(256, np.uint32)
    for bit in range(8):
        out |= ((v >> bit) & 1) << (3 * bit)
    return out


SPREAD = _spread_table()


def colour_index(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Index of colours (uint8 channel arrays) in the table: ``S[r] | S[g] << 1 | S[b] << 2``."""
    idx = SPREAD.take(r)
    idx |= SPREAD.take(g) << 1
    idx |= SPREAD.take(b) << 2
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
    """The (2^24,) uint32 table in Morton order, from ``skimage.color.rgb2lab`` over every sRGB colour.

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
    block = np.empty((step, 256, 256, 3), np.uint8)  # [b, g, r]
    block[..., 0] = v[None, None, :]
    block[..., 1] = v[None, :, None]
    index_rg = colour_index(block[0, ..., 0], block[0, ..., 1], np.zeros((256, 256), np.uint8))
    for b0 in range(0, 256, step):
        block[..., 2] = v[b0:b0 + step, None, None]
        lab = rgb2lab(block)
        entry = np.zeros(block.shape[:3], np.uint32)
        for k in range(3):
            idx = bin_index(lab[..., k], edges[k])
            if (idx < 0).any():
                raise RuntimeError(f"sRGB colours outside the {CHANNELS[k]} bins; widen BINS")
            entry |= idx.astype(np.uint32) << (8 * k)
        index = index_rg[None] | (SPREAD[b0:b0 + step, None, None] << 2)
        table[index.ravel()] = entry.ravel()
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

/* Count L / a / b bins of n images of h x w uint8 pixels.  Byte strides: sn (image), sh (row), sw (pixel),
   sc (channel); mask (may be NULL) with strides mn, mh, mw, nonzero = counted.  tab: 2^24 uint32 entries
   (L | a << 8 | b << 16) at Morton index S[r] | S[g] << 1 | S[b] << 2.  counts: 3 x 256 int64, added to. */
int p2p_lab_bin_count(const uint8_t *px, long n, long h, long w,
                      ptrdiff_t sn, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t sc,
                      const uint8_t *mask, ptrdiff_t mn, ptrdiff_t mh, ptrdiff_t mw,
                      const uint32_t *tab, const uint32_t *S, int64_t *counts) {
    uint32_t c[2][3][256];
    for (long i = 0; i < n; i++) {
        for (int k = 0; k < 256; k++) { c[0][0][k] = c[0][1][k] = c[0][2][k] = 0; c[1][0][k] = c[1][1][k] = c[1][2][k] = 0; }
        for (long y = 0; y < h; y++) {
            const uint8_t *p = px + i * sn + y * sh;
            if (mask == NULL) {
                long x = 0;
                for (; x + 2 <= w; x += 2) {
                    const uint8_t *q0 = p + x * sw, *q1 = q0 + sw;
                    uint32_t e0 = tab[S[q0[0]] | (S[q0[sc]] << 1) | (S[q0[2 * sc]] << 2)];
                    uint32_t e1 = tab[S[q1[0]] | (S[q1[sc]] << 1) | (S[q1[2 * sc]] << 2)];
                    c[0][0][e0 & 255]++; c[0][1][(e0 >> 8) & 255]++; c[0][2][e0 >> 16]++;
                    c[1][0][e1 & 255]++; c[1][1][(e1 >> 8) & 255]++; c[1][2][e1 >> 16]++;
                }
                for (; x < w; x++) {
                    const uint8_t *q = p + x * sw;
                    uint32_t e = tab[S[q[0]] | (S[q[sc]] << 1) | (S[q[2 * sc]] << 2)];
                    c[0][0][e & 255]++; c[0][1][(e >> 8) & 255]++; c[0][2][e >> 16]++;
                }
            } else {
                const uint8_t *m = mask + i * mn + y * mh;
                for (long x = 0; x < w; x++) {
                    if (!m[x * mw]) continue;
                    const uint8_t *q = p + x * sw;
                    uint32_t e = tab[S[q[0]] | (S[q[sc]] << 1) | (S[q[2 * sc]] << 2)];
                    c[0][0][e & 255]++; c[0][1][(e >> 8) & 255]++; c[0][2][e >> 16]++;
                }
            }
        }
        for (int k = 0; k < 256; k++) {
            counts[k] += (int64_t)c[0][0][k] + c[1][0][k];
            counts[256 + k] += (int64_t)c[0][1][k] + c[1][1][k];
            counts[512 + k] += (int64_t)c[0][2][k] + c[1][2][k];
        }
    }
    return 0;
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
    lib_path = cache_dir() / f"lab-bins-{key}{sysconfig.get_config_var('SHLIB_SUFFIX') or '.so'}"
    if not lib_path.exists():
        try:
            lib_path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as tmp:
                src = Path(tmp) / "lab_bins.c"
                src.write_text(C_SOURCE)
                out = Path(tmp) / "lab_bins.so"
                subprocess.run([*cc, *_CFLAGS, "-o", str(out), str(src)], check=True, capture_output=True, timeout=120)
                _atomic_save(lib_path, lambda p: shutil.copyfile(out, p))
        except (OSError, subprocess.SubprocessError):
            return None
    try:
        lib = ctypes.CDLL(str(lib_path))
    except OSError:
        return None
    fn = lib.p2p_lab_bin_count
    ptr, ssize, long_ = ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_long
    fn.argtypes = [ptr, long_, long_, long_, ssize, ssize, ssize, ssize, ptr, ssize, ssize, ssize, ptr, ptr, ptr]
    fn.restype = ctypes.c_int
    return lib


def kernel() -> str:
    """Which loop counts pixels: ``"c"`` or ``"numpy"`` (see ``P2P_EVAL_COLOR_KERNEL``)."""
    want = os.environ.get("P2P_EVAL_COLOR_KERNEL", "auto").lower()
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
    only where ``mask`` (bool (N, H, W)) is true when given.  Same counts as rgb2lab + numpy.histogram."""
    table = load_table()
    counts = np.zeros((3, 256), np.int64)
    n, h, w, _ = images.shape
    if images.size == 0:
        return counts
    if kernel() == "c" and h * w < (1 << 32):
        lib = _STATE["lib"]
        sn, sh, sw, sc = images.strides
        if mask is not None:
            mask = mask.view(np.uint8) if mask.dtype == np.bool_ else (mask != 0).view(np.uint8)
            mptr, (mn, mh, mw) = mask.ctypes.data, mask.strides
        else:
            mptr, mn, mh, mw = None, 0, 0, 0
        lib.p2p_lab_bin_count(images.ctypes.data, n, h, w, sn, sh, sw, sc, mptr, mn, mh, mw,  # type: ignore[attr-defined]
                              table.ctypes.data, SPREAD.ctypes.data, counts.ctypes.data)
        return counts
    for i in range(n):
        image = images[i]
        idx = colour_index(image[..., 0], image[..., 1], image[..., 2])
        if mask is not None:
            idx = idx[mask[i].astype(bool, copy=False)]
        entry = table.take(idx.ravel())
        counts[0] += np.bincount(entry & 255, minlength=256)
        counts[1] += np.bincount((entry >> 8) & 255, minlength=256)
        counts[2] += np.bincount(entry >> 16, minlength=256)
    return counts
