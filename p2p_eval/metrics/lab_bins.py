"""Fast exact L / a / b bin counts of uint8 sRGB pixels: a table over all 2^24 colours plus a small C loop.

Reference: scikit-image's ``skimage.color.rgb2lab`` (CIE Lab, illuminant D65, 2 degree observer) followed by
``numpy.histogram`` with the fixed bins of :data:`p2p_eval.metrics.color.BINS`.  Every one of the 2^24 sRGB
colours is converted once, by ``skimage.color.rgb2lab`` itself, and its three bin indices are stored in a
table (uint32 per colour: L bin | a bin << 8 | b bin << 16; 64 MiB, in the colour order of
:func:`colour_index`: along the grey axis, the counters' order).  The counts
are therefore those of the per-image scikit-image loop by construction; the only possible differences are
pixels whose Lab value lies within floating-point noise of a bin edge, if ``rgb2lab`` rounded the same
colour differently in a different array shape (``benchmarks/perf/color.py`` counts them on the 500
Cityscapes val photos: none).

Binning is ``numpy.histogram``'s: bin ``i`` holds ``edge[i] <= v < edge[i + 1]``, the last bin is closed.

The table is computed on first use (2-5 s of scikit-image over 16.7 M colours) and cached as
``$XDG_CACHE_HOME/p2p-eval/color/lab-bins-<key>.npy`` (``~/.cache``), with a sidecar sha256 checked on
every load; the key covers the bins, scikit-image's version and this module's table format, so nothing
stale is reused.  Without a writable cache the table lives in the process.

Counting: :class:`ColourCounts` adds one to a per-colour counter (one byte per colour, in the order of the
grey axis, 256 carried to a uint32 counter when it wraps) per pixel, and turns the colours seen into bin
counts only when asked (:meth:`ColourCounts.flush`): one memory access per pixel, the table read once per
distinct colour.  The loop is C, compiled on first use with the system C compiler (``$CC`` or ``cc``) and
cached beside the table; on x86-64 CPUs with AVX2 / AVX-512 it makes the counter slots of 8 / 16 pixels
per instruction (chosen at run time, so a cached library also runs on older CPUs; a compiler without
these intrinsics builds the portable loop), and it asks for image rows a few rows ahead of the one it
counts and for counters a few hundred pixels ahead.  Without a compiler,
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

FORMAT = 4  # bump when the table's layout or the way it is built changes
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}


def colour_index(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Index (uint32) of colours (uint8 channel arrays) in the table and the C loop's counters, in the order
    of the grey axis: ``g | ((b - g) mod 256) << 8 | ((r - g) mod 256) << 16`` (``slot_of`` in :data:`C_SOURCE`)."""
    r, g, b = (np.asarray(c, dtype=np.uint32) for c in (r, g, b))
    return g | ((b - g) & 255) << 8 | ((r - g) & 255) << 16


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
    """The (2^24,) uint32 table (index :func:`colour_index`), from ``skimage.color.rgb2lab`` over every sRGB colour.

    Colours go through ``rgb2lab`` as (16, 256, 256, 3) blocks, i.e. rows of 256 pixels, the shape in
    which it sees a 256-pixel-wide image, and their entries are then put in table order.  Raises
    RuntimeError if a colour falls outside the bins (the sRGB gamut lies inside them; see
    :data:`p2p_eval.metrics.color.BINS`).
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
    entry = np.empty(block.shape[:3], np.uint32)
    for b0 in range(0, 256, step):
        block[..., 2] = v[b0:b0 + step, None, None]
        lab = rgb2lab(block)
        entry[:] = 0
        for k in range(3):
            idx = bin_index(lab[..., k], edges[k])
            if (idx < 0).any():
                raise RuntimeError(f"sRGB colours outside the {CHANNELS[k]} bins; widen BINS")
            entry |= idx.astype(np.uint32) << (8 * k)
        table[colour_index(block[..., 0], block[..., 1], block[..., 2])] = entry
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
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(P2P_PORTABLE)
#include <immintrin.h>
#define P2P_X86 1
#endif

/* Counters are uint8, one per colour, in the order of the grey axis: slot = g | (b - g) << 8 | (r - g) << 16
   (differences mod 256), so that a 64-byte line holds 64 colours of one chroma along the grey axis.  A
   photo's colours vary mostly in brightness at a given hue, so they touch few lines: about 1000 per
   Cityscapes val photo at 256x256, against 2.6x as many in 4 x 4 x 4 RGB blocks of 64 and 7x as many with
   4-byte counters in r | g << 8 | b << 16 order (benchmarks/perf/color.py prints the counts); fewer are
   fetched per image and fewer of the decoder's are pushed out.  A counter that wraps adds 256 to big[slot]
   (uint32) and marks its 4096-slot block in bigmark. */

/* slot of the colour key r | g << 8 | b << 16 */
static inline uint32_t slot_of(uint32_t v) {
    uint32_t r = v & 255u, g = (v >> 8) & 255u, b = (v >> 16) & 255u;
    return g | ((b - g) & 255u) << 8 | ((r - g) & 255u) << 16;
}

/* Colour key of the pixel at q (channel stride sc). */
static inline uint32_t key_at(const uint8_t *q, ptrdiff_t sc) {
    return (uint32_t)q[0] | ((uint32_t)q[sc] << 8) | ((uint32_t)q[2 * sc] << 16);
}

/* Slots of w interleaved RGB pixels at p, with one 4-byte load per pixel (the 4th byte, the next pixel's, is
   masked off); the last pixel is read byte by byte, so nothing past p[3w - 1] is touched. */
static void slots_portable(const uint8_t *p, long w, uint32_t *k) {
    long x = 0;
    for (; x + 1 < w; x++) {
        uint32_t v;
        memcpy(&v, p + 3 * x, 4);
        k[x] = slot_of(v & 0xFFFFFFu);
    }
    for (; x < w; x++) k[x] = slot_of(key_at(p + 3 * x, 1));
}

#ifdef P2P_X86
/* The vector loops make each 32-bit lane's slot as bytes [g, b, r, 0] - [0, g, g, 0] (byte-wise, mod 256): two
   byte shuffles of the loaded pixels and one subtraction. */

/* The same slots, 8 pixels (24 bytes) per AVX2 step: two 16-byte loads at p + 3x and p + 3x + 8 (the highest
   byte read p[3x + 23] <= p[3w - 1]), put in one register (pixels 0-3 at bytes 0-11 of the low half, 4-7 at
   bytes 4-15 of the high half); the last pixels go through the scalar loop. */
__attribute__((target("avx2"))) static void slots_avx2(const uint8_t *p, long w, uint32_t *k) {
    const __m256i gbr = _mm256_setr_epi8(1, 2, 0, -1, 4, 5, 3, -1, 7, 8, 6, -1, 10, 11, 9, -1,
                                         5, 6, 4, -1, 8, 9, 7, -1, 11, 12, 10, -1, 14, 15, 13, -1);
    const __m256i ogg = _mm256_setr_epi8(-1, 1, 1, -1, -1, 4, 4, -1, -1, 7, 7, -1, -1, 10, 10, -1,
                                         -1, 5, 5, -1, -1, 8, 8, -1, -1, 11, 11, -1, -1, 14, 14, -1);
    long x = 0;
    for (; x + 8 <= w; x += 8) {
        __m128i lo = _mm_loadu_si128((const __m128i *)(p + 3 * x));
        __m128i hi = _mm_loadu_si128((const __m128i *)(p + 3 * x + 8));
        __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
        v = _mm256_sub_epi8(_mm256_shuffle_epi8(v, gbr), _mm256_shuffle_epi8(v, ogg));
        _mm256_storeu_si256((__m256i *)(k + x), v);
    }
    for (; x < w; x++) k[x] = slot_of(key_at(p + 3 * x, 1));
}

/* 16 pixels per AVX-512 step: a masked load of exactly their 48 bytes (bytes 48-63 zero) and two byte
   permutes across the register (byte 63 stands for 0). */
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) static void slots_avx512(const uint8_t *p, long w, uint32_t *k) {
    const __m512i gbr = _mm512_set_epi8(
        63, 45, 47, 46, 63, 42, 44, 43, 63, 39, 41, 40, 63, 36, 38, 37, 63, 33, 35, 34, 63, 30, 32, 31,
        63, 27, 29, 28, 63, 24, 26, 25, 63, 21, 23, 22, 63, 18, 20, 19, 63, 15, 17, 16, 63, 12, 14, 13,
        63, 9, 11, 10, 63, 6, 8, 7, 63, 3, 5, 4, 63, 0, 2, 1);
    const __m512i ogg = _mm512_set_epi8(
        63, 46, 46, 63, 63, 43, 43, 63, 63, 40, 40, 63, 63, 37, 37, 63, 63, 34, 34, 63, 63, 31, 31, 63,
        63, 28, 28, 63, 63, 25, 25, 63, 63, 22, 22, 63, 63, 19, 19, 63, 63, 16, 16, 63, 63, 13, 13, 63,
        63, 10, 10, 63, 63, 7, 7, 63, 63, 4, 4, 63, 63, 1, 1, 63);
    long x = 0;
    for (; x + 16 <= w; x += 16) {
        __m512i v = _mm512_maskz_loadu_epi8(0xFFFFFFFFFFFFull, p + 3 * x);
        v = _mm512_sub_epi8(_mm512_permutexvar_epi8(gbr, v), _mm512_permutexvar_epi8(ogg, v));
        _mm512_storeu_si512(k + x, v);
    }
    for (; x < w; x++) k[x] = slot_of(key_at(p + 3 * x, 1));
}
#endif

typedef void (*slots_fn)(const uint8_t *, long, uint32_t *);
static slots_fn row_slots = NULL;

/* Which slot loop runs: want 0 = the portable one, 1 = AVX2, 2 = AVX-512 (each only where the CPU has it;
   else the best below), -1 = the best the CPU has, chosen once.  Returns the level in use (0, 1 or 2). */
int p2p_colour_simd(int want) {
    int level = 0;
    if (want < 0 && row_slots != NULL) {
#ifdef P2P_X86
        return row_slots == slots_avx512 ? 2 : row_slots == slots_avx2 ? 1 : 0;
#else
        return 0;
#endif
    }
    row_slots = slots_portable;
#ifdef P2P_X86
    __builtin_cpu_init();
    if (want != 0 && __builtin_cpu_supports("avx2")) { row_slots = slots_avx2; level = 1; }
    if ((want < 0 || want >= 2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vbmi")) { row_slots = slots_avx512; level = 2; }
#endif
    return level;
}

/* Image rows are asked for this many rows ahead: a freshly decoded image is often no longer in the nearest
   caches (timed right after torchvision's decode on the 2-core CPU of reports/bench.md, counting a photo
   took about 1.5x as long without this). */
#define ROWS_AHEAD 4
#define CHUNK 2048  /* pixels whose slots are made at once: whole rows (8 of 256 pixels), or part of a wide row */
/* Counters are asked for this many pixels before they are counted.  The counter lines a photo needs that
   are not in the near caches are otherwise fetched about one at a time: only a few of the pixels in the
   out-of-order window miss, so the misses hardly overlap.  With the counters flushed out of every cache
   before a photo, this took counting it from about 2.6x to 1.1x its time with them in cache (4 x 4 x 4
   layout, the CPU of reports/bench.md); 96 to 768 ahead did about as well. */
#define PF_AHEAD 384

static void fetch_row(const uint8_t *row, long bytes) {
    for (long o = 0; o < bytes; o += 64) __builtin_prefetch(row + o, 0, 3);
}

static inline void add_one(uint8_t *cc, uint32_t *big, uint8_t *bigmark, uint32_t s) {
    if (__builtin_expect(++cc[s] == 0, 0)) { big[s] += 256; bigmark[s >> 12] = 1; }
}

/* Count the slots k[0..m); the counters of the slots PF_AHEAD pixels later are asked for first, from k and
   then from next[0..nn), the slots of the block counted after this one (nn = 0: none).  mark: see below. */
static inline __attribute__((always_inline)) void count_block(uint8_t *cc, uint8_t *dirty, uint32_t *big,
        uint8_t *bigmark, const uint32_t *k, long m, const uint32_t *next, long nn, int mark) {
    long x = 0;
    for (; x + PF_AHEAD < m; x++) {
        __builtin_prefetch(cc + k[x + PF_AHEAD], 1, 3);
        add_one(cc, big, bigmark, k[x]);
        if (mark) dirty[k[x] >> 8] = 1;
    }
    for (; x < m; x++) {
        long j = x + PF_AHEAD - m;
        if (j < nn) __builtin_prefetch(cc + next[j], 1, 3);
        add_one(cc, big, bigmark, k[x]);
        if (mark) dirty[k[x] >> 8] = 1;
    }
}

/* count_block with the mark flag folded in at compile time (two copies of the loop, no test per pixel). */
static void count_slots(uint8_t *cc, uint8_t *dirty, uint32_t *big, uint8_t *bigmark, const uint32_t *k, long m,
                        const uint32_t *next, long nn, int mark) {
    if (mark) count_block(cc, dirty, big, bigmark, k, m, next, nn, 1);
    else count_block(cc, dirty, big, bigmark, k, m, next, nn, 0);
}

/* Slots of block b of an interleaved image (whole rows when w <= CHUNK, else CHUNK-pixel parts of a row) into k;
   the rows ROWS_AHEAD below those made are asked for.  Returns the block's pixel count. */
static long block_slots(const uint8_t *img, long h, long w, ptrdiff_t sh, long b, uint32_t *k) {
    if (w <= CHUNK) {
        long rows = CHUNK / w, y0 = b * rows, r = h - y0 < rows ? h - y0 : rows;
        for (long y = y0; y < y0 + r; y++) {
            if (y + ROWS_AHEAD < h) fetch_row(img + (y + ROWS_AHEAD) * sh, 3 * w);
            row_slots(img + y * sh, w, k + (y - y0) * w);
        }
        return r * w;
    }
    long parts = (w + CHUNK - 1) / CHUNK, y = b / parts, x0 = (b % parts) * CHUNK;
    const uint8_t *p = img + y * sh;
    if (x0 == 0 && y + ROWS_AHEAD < h) fetch_row(p + ROWS_AHEAD * sh, 3 * w);
    long m = w - x0 < CHUNK ? w - x0 : CHUNK;
    row_slots(p + 3 * x0, m, k);
    return m;
}

/* Add one per pixel to the counter of its colour, for n images of h x w uint8 pixels, byte strides sn (image),
   sh (row), sw (pixel), sc (channel); mask (may be NULL, strides mn, mh, mw): only pixels where it is nonzero.
   When mark is nonzero, dirty[slot >> 8] = 1 marks the 256-slot blocks touched, so that a flush can visit
   only those (a store per pixel: without marks the flush scans all counters instead).
   Interleaved RGB without a mask (the decoders' layout) takes the fast path: blocks of up to CHUNK pixels,
   the slots of the next block made (AVX2 / AVX-512 where available) before the counts of this one, so that
   counters can be asked for PF_AHEAD pixels ahead across blocks; other layouts go pixel by pixel. */
void p2p_colour_count(const uint8_t *px, long n, long h, long w,
                      ptrdiff_t sn, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t sc,
                      const uint8_t *mask, ptrdiff_t mn, ptrdiff_t mh, ptrdiff_t mw,
                      uint8_t *cc, uint8_t *dirty, uint32_t *big, uint8_t *bigmark, int mark) {
    if (row_slots == NULL) p2p_colour_simd(-1);
    uint32_t k[2][CHUNK];
    for (long i = 0; i < n; i++) {
        const uint8_t *img = px + i * sn;
        if (mask == NULL && sw == 3 && sc == 1) {
            long blocks = w <= CHUNK ? (h + CHUNK / w - 1) / (CHUNK / w) : h * ((w + CHUNK - 1) / CHUNK);
            for (long y = 1; y < ROWS_AHEAD && y < h; y++) fetch_row(img + y * sh, 3 * w);
            long m = block_slots(img, h, w, sh, 0, k[0]);
            for (long b = 0; b < blocks; b++) {
                const uint32_t *cur = k[b & 1];
                uint32_t *next = k[(b + 1) & 1];
                long nn = b + 1 < blocks ? block_slots(img, h, w, sh, b + 1, next) : 0;
                count_slots(cc, dirty, big, bigmark, cur, m, next, nn, mark);
                m = nn;
            }
            continue;
        }
        for (long y = 0; y < h; y++) {
            const uint8_t *p = img + y * sh;
            const uint8_t *mrow = mask ? mask + i * mn + y * mh : NULL;
            for (long x = 0; x < w; x++) {
                if (mrow != NULL && !mrow[x * mw]) continue;
                uint32_t s = slot_of(key_at(p + x * sw, sc));
                add_one(cc, big, bigmark, s);
                if (mark) dirty[s >> 8] = 1;
            }
        }
    }
}

/* Add v pixels of the colour in slot s to the bin counts (3 x 256 int64: L, a, b) through the table
   (L | a << 8 | b << 16 per slot). */
static inline void add_bins(int64_t *counts, const uint32_t *tab, uint32_t s, uint32_t v) {
    uint32_t e = tab[s];
    counts[e & 255] += v;
    counts[256 + ((e >> 8) & 255)] += v;
    counts[512 + (e >> 16)] += v;
}

/* Move the colour counts into bin counts, zeroing what was moved and the marks.  With full zero only the
   marked blocks of counters are visited; with full nonzero (counts added without marks), every counter
   (16 MiB, about a millisecond).  The wrapped counts (big) are visited by their own marks.  The slots found
   in a span of 8 Ki slots are listed first and their table entries fetched ahead of use. */
#define SPAN 8192  /* slots listed at once: 32 KiB on the stack (flushes of several threads may run at once) */
#define TABLE_AHEAD 64
void p2p_colour_flush(uint8_t *cc, uint8_t *dirty, uint32_t *big, uint8_t *bigmark, const uint32_t *tab,
                      int64_t *counts, int full) {
    uint32_t found[SPAN];
    for (long span = 0; span < (1L << 24); span += SPAN) {
        long nfound = 0;
        for (long blk = span >> 8; blk < (span + SPAN) >> 8; blk++) {
            if (!full && !dirty[blk]) continue;
            dirty[blk] = 0;
            for (long base = blk << 8; base < (blk + 1) << 8; base += 16) {
                uint64_t w0, w1;
                memcpy(&w0, cc + base, 8);
                memcpy(&w1, cc + base + 8, 8);
                if (!(w0 | w1)) continue;
                for (int j = 0; j < 16; j++) {  /* without a branch: a colour's count being zero is not predictable */
                    found[nfound] = (uint32_t)(base + j);
                    nfound += cc[base + j] != 0;
                }
            }
        }
        for (long j = 0; j < nfound; j++) {
            if (j + TABLE_AHEAD < nfound) __builtin_prefetch(tab + found[j + TABLE_AHEAD], 0, 0);
            uint32_t s = found[j];
            add_bins(counts, tab, s, cc[s]);
            cc[s] = 0;
        }
    }
    for (long blk = 0; blk < 4096; blk++) {
        if (!bigmark[blk]) continue;
        bigmark[blk] = 0;
        for (long s = blk << 12; s < (blk + 1) << 12; s++) {
            if (big[s]) { add_bins(counts, tab, (uint32_t)s, big[s]); big[s] = 0; }
        }
    }
}
"""
_CFLAGS = ["-O3", "-shared", "-fPIC", "-fno-strict-aliasing"]


def _compiler() -> list[str] | None:
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc")
    cmd = cc.split()
    return cmd if cmd and shutil.which(cmd[0]) else (["cc"] if shutil.which("cc") else None)


def build_library(source: str, name: str, link: list[str] | None = None) -> ctypes.CDLL | None:
    """Compile ``source`` (once; cached in :func:`cache_dir` under ``name`` and a hash of everything that goes
    into it) and load it; None when no C compiler builds it.  A compiler that rejects the AVX intrinsics gets
    a second try with ``-DP2P_PORTABLE``.  ``link``: linker flags after the source, e.g. ``["-ljpeg"]``."""
    cc = _compiler()
    if cc is None:
        return None
    link = link or []
    key = hashlib.sha256("\0".join([source, *cc, *_CFLAGS, *link, platform.machine(), sys.platform]).encode()).hexdigest()[:16]
    file_name = f"{name}-{key}{sysconfig.get_config_var('SHLIB_SUFFIX') or '.so'}"
    lib_path = cache_dir() / file_name
    if not lib_path.exists():
        try:
            build = Path(tempfile.mkdtemp(prefix="p2p-eval-color-"))  # also the home of the library if the cache is read-only
            src = build / f"{name}.c"
            src.write_text(source)
            out = build / file_name
            for extra in ([], ["-DP2P_PORTABLE"]):  # a compiler without the AVX intrinsics builds the portable loop
                done = subprocess.run([*cc, *_CFLAGS, *extra, "-o", str(out), str(src), *link], capture_output=True,
                                      timeout=120)
                if done.returncode == 0:
                    break
            else:
                shutil.rmtree(build, ignore_errors=True)
                return None
        except (OSError, subprocess.SubprocessError):
            return None
        try:
            _atomic_save(lib_path, lambda p: shutil.copyfile(out, p))
            shutil.rmtree(build, ignore_errors=True)
        except OSError:
            lib_path = out
    try:
        return ctypes.CDLL(str(lib_path))
    except OSError:
        return None


def set_prototypes(lib: ctypes.CDLL) -> None:
    """The argument and result types of :data:`C_SOURCE`'s functions in ``lib`` (this loop's library, or one
    built from C_SOURCE and more)."""
    ptr, ssize, long_ = ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_long
    lib.p2p_colour_count.argtypes = [ptr, long_, long_, long_, ssize, ssize, ssize, ssize, ptr, ssize, ssize, ssize,
                                     ptr, ptr, ptr, ptr, ctypes.c_int]
    lib.p2p_colour_count.restype = None
    lib.p2p_colour_flush.argtypes = [ptr, ptr, ptr, ptr, ptr, ptr, ctypes.c_int]
    lib.p2p_colour_flush.restype = None
    lib.p2p_colour_simd.argtypes = [ctypes.c_int]
    lib.p2p_colour_simd.restype = ctypes.c_int


def _build_kernel() -> ctypes.CDLL | None:
    """The colour loop (:data:`C_SOURCE`), built and loaded, with its prototypes; None without a C compiler."""
    lib = build_library(C_SOURCE, "lab-bins")
    if lib is not None:
        set_prototypes(lib)
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


SLOT_LOOPS = ("portable", "avx2", "avx512")  # the C slot loops, by the level p2p_colour_simd takes and returns


def slot_loop() -> str | None:
    """Which C slot loop counts pixels on this CPU (one of :data:`SLOT_LOOPS`), or None with the numpy loop."""
    if kernel() != "c":
        return None
    return SLOT_LOOPS[_STATE["lib"].p2p_colour_simd(-1)]  # type: ignore[attr-defined]


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


class _Counters:
    """The C loop's buffers: uint8 per colour slot (16 MiB), the 256-slot blocks marked (64 KiB), the
    wrapped counts (uint32 per slot, 64 MiB, pages backed only where a counter wrapped) and their 4096-slot
    blocks marked; with their addresses, read once."""

    def __init__(self) -> None:
        self.arrays = (np.zeros(1 << 24, np.uint8), np.zeros(1 << 16, np.uint8),
                       np.zeros(1 << 24, np.uint32), np.zeros(1 << 12, np.uint8))
        self.cc, self.dirty, self.big, self.bigmark = (a.ctypes.data for a in self.arrays)


_POOL: list[_Counters] = []  # zeroed counters, kept warm for the next accumulator
_POOL_SIZE = 2


def _acquire() -> _Counters:
    with _LOCK:
        if _POOL:
            return _POOL.pop()
    return _Counters()


def _release(counters: _Counters) -> None:
    with _LOCK:
        if len(_POOL) < _POOL_SIZE:
            _POOL.append(counters)


class ColourCounts:
    """Pixels counted per sRGB colour (C loop), turned into (3, 256) L / a / b bin counts by :meth:`flush`.

    Between a first :meth:`add` and the next :meth:`flush` it holds a uint8 counter per colour (16 MiB,
    along the grey axis, see ``C_SOURCE``), a uint32 one taking 256 each time a counter wraps
    (64 MiB of address space, backed only where used) and a 64 KiB map of the 256-colour blocks touched.
    The map costs a store per pixel, so it is kept only for the first ``_MARKED`` pixels after a flush: a
    flush after fewer visits only the marked blocks; after more it scans every counter (about a
    millisecond, less than marking the pixels of a few dozen images costs).  Either way the flush leaves
    the counters zeroed and hands them back to a small pool, so that the next accumulator of the process
    counts into memory already paged in.  Flushes by itself before a wrapped count could overflow.
    """

    _LIMIT = (1 << 32) - 1
    _MARKED = 1 << 21  # pixels (32 images of 256 x 256)

    def __init__(self) -> None:
        self._counters: _Counters | None = None
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
        data = images.__array_interface__["data"][0]
        start = 0
        while start < n:
            take = max(1, min(n - start, (self._LIMIT - self._pending) // per_image))
            if self._pending + take * per_image > self._LIMIT:
                self.flush()
                continue
            if self._counters is None:
                self._counters = _acquire()
            c = self._counters
            mbase = None if mptr is None else mptr + start * mn
            mark = self._pending + take * per_image <= self._MARKED  # else the next flush scans every counter
            lib.p2p_colour_count(data + start * sn, take, h, w, sn, sh, sw, sc,  # type: ignore[attr-defined]
                                 mbase, mn, mh, mw, c.cc, c.dirty, c.big, c.bigmark, mark)
            self._pending += take * per_image
            start += take

    def add_jpeg(self, data: bytes, half: str | None = None, size: int | None = None,
                 lib: ctypes.CDLL | None = None) -> bool:
        """Decode the JPEG file ``data`` and count its colours band by band while decoding
        (:mod:`p2p_eval.metrics.jpeg_colours`; ``lib``: its library, default the checked one): the whole image,
        or the left / right half (``half`` "A" / "B") of an AB pair, which must be ``size`` x ``size`` when
        ``size`` is given.  False when that path does not take it (no library, CMYK, another size, an odd width
        with a half, more pixels than a counter may take): nothing was counted, decode it and :meth:`add` it.
        A broken file raises ValueError with libjpeg's message (rows before the damage may have been counted)."""
        from p2p_eval.metrics import jpeg_colours as jc

        lib = lib if lib is not None else jc.library()
        if lib is None:
            return False
        dims = (ctypes.c_long * 2)()
        msg = ctypes.create_string_buffer(256)
        while True:
            if self._counters is None:
                self._counters = _acquire()
            c = self._counters
            rc = lib.p2p_jpeg_count(data, len(data), jc.HALVES[half], size or 0, size or 0, self._LIMIT - self._pending,
                                    self._MARKED - self._pending, c.cc, c.dirty, c.big, c.bigmark, 1, dims, msg, len(msg))
            if rc != jc.TOO_LARGE or not self._pending:
                break
            self.flush()
        if rc == jc.DECODE_ERROR:
            raise ValueError(msg.value.decode(errors="replace") or "JPEG decode error")
        if rc != jc.COUNTED:
            return False
        self._pending += dims[0] * dims[1]
        return True

    def flush(self) -> np.ndarray:
        """Bin counts (3, 256) of everything counted so far (the colour counters are emptied into them)."""
        if self._counters is not None:
            c = self._counters
            _STATE["lib"].p2p_colour_flush(c.cc, c.dirty, c.big, c.bigmark,  # type: ignore[attr-defined]
                                           load_table().ctypes.data, self._bins.ctypes.data,
                                           self._pending > self._MARKED)
            self._counters, self._pending = None, 0
            _release(c)
        return self._bins

    def take_bins(self) -> np.ndarray:
        """:meth:`flush`, then hand the bin counts over and start again from zero."""
        bins = self.flush()
        self._bins = np.zeros((3, 256), np.int64)
        return bins
