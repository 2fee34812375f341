"""Colour counts of a JPEG while it is decoded: the system's libjpeg(-turbo) hands over a band of a few rows
at a time and the colour loop of :mod:`p2p_eval.metrics.lab_bins` counts it while it is still in the CPU's
nearest cache, so the decoded image is never written out and read back.

The decode is torchvision's (``torchvision.io.decode_image(..., ImageReadMode.RGB)`` on a JPEG): libjpeg with
its default settings (``JDCT_ISLOW``, fancy upsampling), output colour space RGB (grey JPEGs come out as
r = g = b), a truncated file an error, warnings ignored.  CMYK / YCCK JPEGs, which torchvision converts by
hand, are not handled here (the caller decodes them with torchvision).  ``half`` counts only the left or
right half of an AB pair (libjpeg's ``jpeg_crop_scanline`` skips most of the other half's work).

Before first use the library checks itself against torchvision on a few small JPEGs encoded on the spot
(4:2:0, 4:2:2 and 4:4:4 chroma, grey ones, odd sizes, halves that end on an iMCU edge and halves that do not): counts must equal those of torchvision's
decode, else it is not used (so another libjpeg version can never change a histogram).  Built with the
system C compiler against ``jpeglib.h`` (Debian: ``libjpeg62-turbo-dev``, or ``libjpeg-dev``) and cached
beside the colour table; without them, or with ``P2P_EVAL_JPEG=0``, :func:`available` is False and colour
passes decode with torchvision as before.
"""

from __future__ import annotations

import ctypes
import io
import os

import numpy as np

from p2p_eval.metrics import lab_bins

HALVES = {None: 0, "A": 1, "B": 2}
# return codes of p2p_jpeg_count
COUNTED, NOT_HANDLED, DECODE_ERROR, TOO_LARGE = 0, 1, 2, 3

JPEG_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

struct p2p_jerr { struct jpeg_error_mgr pub; jmp_buf jump; };

static void p2p_jerr_exit(j_common_ptr c) { longjmp(((struct p2p_jerr *)c->err)->jump, 1); }
static void p2p_jerr_silent(j_common_ptr c) { (void)c; }

/* A source over the whole file in memory whose end is an error (as torchvision's: a truncated file fails,
   where libjpeg's own jpeg_mem_src would pad it with an end marker). */
static void p2p_src_init(j_decompress_ptr c) { (void)c; }
static boolean p2p_src_fill(j_decompress_ptr c) {
    c->err->msg_code = JERR_INPUT_EOF;
    c->err->error_exit((j_common_ptr)c);
    return FALSE;
}
static void p2p_src_skip(j_decompress_ptr c, long n) {
    if (n <= 0) return;
    if ((size_t)n > c->src->bytes_in_buffer) p2p_src_fill(c);
    c->src->next_input_byte += n;
    c->src->bytes_in_buffer -= (size_t)n;
}
static void p2p_src_term(j_decompress_ptr c) { (void)c; }

#define BAND 8  /* rows decoded, then counted, at a time */

/* Count the colours of rows[0..nrows) from column x0, w pixels each (interleaved RGB), through CHUNK-pixel
   blocks of slots. */
static void count_rows(JSAMPROW *rows, long nrows, long x0, long w, uint8_t *cc, uint8_t *dirty, uint32_t *big,
                       uint8_t *bigmark, int mark, uint32_t *k) {
    long m = 0;
    for (long y = 0; y < nrows; y++) {
        for (long x = 0; x < w; ) {
            long take = w - x < CHUNK - m ? w - x : CHUNK - m;
            row_slots(rows[y] + 3 * (x0 + x), take, k + m);
            m += take;
            x += take;
            if (m == CHUNK) {
                count_slots(cc, dirty, big, bigmark, k, m, NULL, 0, mark);
                m = 0;
            }
        }
    }
    if (m) count_slots(cc, dirty, big, bigmark, k, m, NULL, 0, mark);
}

/* Decode the JPEG data[0..size) and count the colours of the whole image (half 0), its left half (1) or
   right half (2).  want_w / want_h: the counted region must be this size (0: any).  limit: most pixels
   that may be counted; mark_limit: at most this many pixels are counted with block marks (see
   p2p_colour_count).  count 0: decode only.  dims[0], dims[1]: width and height of the region counted.
   Returns 0 counted, 1 not handled here (CMYK / YCCK, an odd width with a half, another size than wanted:
   nothing was counted), 2 a decode error (libjpeg's message in msg; the rows before the damage have been
   counted), 3 more pixels than limit (nothing counted). */
int p2p_jpeg_count(const uint8_t *data, unsigned long size, int half, long want_w, long want_h, long limit,
                   long mark_limit, uint8_t *cc, uint8_t *dirty, uint32_t *big, uint8_t *bigmark, int count,
                   long *dims, char *msg, long msglen) {
    struct jpeg_decompress_struct cinfo;
    struct p2p_jerr jerr;
    struct jpeg_source_mgr src;
    JSAMPROW rows[BAND];
    uint8_t *volatile band = NULL;
    uint32_t k[CHUNK];
    volatile int rc = 0;
    if (row_slots == NULL) p2p_colour_simd(-1);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = p2p_jerr_exit;
    jerr.pub.output_message = p2p_jerr_silent;
    if (setjmp(jerr.jump)) {
        if (msg != NULL && msglen >= JMSG_LENGTH_MAX) (*cinfo.err->format_message)((j_common_ptr)&cinfo, msg);
        jpeg_destroy_decompress(&cinfo);
        free(band);
        return 2;
    }
    jpeg_create_decompress(&cinfo);
    src.next_input_byte = data;
    src.bytes_in_buffer = size;
    src.init_source = p2p_src_init;
    src.fill_input_buffer = p2p_src_fill;
    src.skip_input_data = p2p_src_skip;
    src.resync_to_restart = jpeg_resync_to_restart;
    src.term_source = p2p_src_term;
    cinfo.src = &src;
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) rc = 1;
    cinfo.out_color_space = JCS_RGB;
    jpeg_calc_output_dimensions(&cinfo);
    long full = (long)cinfo.output_width, h = (long)cinfo.output_height;
    long w = half ? full / 2 : full, x0 = half == 2 ? full / 2 : 0;
    if (rc == 0 && ((half && full % 2) || (want_w && want_w != w) || (want_h && want_h != h))) rc = 1;
    if (rc == 0 && w * h > limit) rc = 3;
    if (rc) {
        jpeg_destroy_decompress(&cinfo);
        return rc;
    }
    jpeg_start_decompress(&cinfo);
    if (half) {
        /* Decode only the iMCU columns of the half counted and one column more on each side where there is one:
           at the edge of a cropped region libjpeg upsamples chroma as at the image's edge, so a half that ends
           on an iMCU boundary would differ in its outer pixels from the full decode.  xoff / cw come back
           widened to whole iMCU columns. */
        JDIMENSION lo = x0 > 0 ? (JDIMENSION)(x0 - 1) : 0, hi = (JDIMENSION)(x0 + w < full ? x0 + w + 1 : full);
        JDIMENSION xoff = lo, cw = hi - lo;
        jpeg_crop_scanline(&cinfo, &xoff, &cw);
        x0 -= (long)xoff;
    }
    long stride = (long)cinfo.output_width * 3;
    band = malloc((size_t)(stride * BAND));
    if (band == NULL) {
        jpeg_destroy_decompress(&cinfo);
        if (msg != NULL && msglen > 32) snprintf(msg, (size_t)msglen, "out of memory");
        return 2;
    }
    for (int r = 0; r < BAND; r++) rows[r] = band + r * stride;
    int mark = w * h <= mark_limit;
    while (cinfo.output_scanline < cinfo.output_height) {
        long got = 0;
        while (got < BAND && cinfo.output_scanline < cinfo.output_height)
            got += (long)jpeg_read_scanlines(&cinfo, rows + got, (JDIMENSION)(BAND - got));
        if (count) count_rows(rows, got, x0, w, cc, dirty, big, bigmark, mark, k);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(band);
    dims[0] = w;
    dims[1] = h;
    return 0;
}
"""

_STATE: dict[str, object] = {}


def _self_check(lib: ctypes.CDLL) -> bool:
    """Counts of small JPEGs encoded here (4:2:0, 4:2:2 and 4:4:4 chroma, grey, odd sizes, halves that end on an
    iMCU boundary and halves that do not; whole and halves) equal those of torchvision's decode of the same bytes."""
    import torch
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_image, encode_jpeg

    rng = np.random.default_rng(0)
    cases = []
    for h, w in ((37, 50), (16, 64), (9, 22)):
        smooth = np.cumsum(rng.integers(-9, 10, (h, w, 3)), axis=1)
        image = torch.from_numpy(np.clip(smooth + 128, 0, 255).astype(np.uint8)).permute(2, 0, 1).contiguous()
        cases.append(encode_jpeg(image, quality=80).numpy().tobytes())
        cases.append(encode_jpeg(image[:1], quality=95).numpy().tobytes())  # grey
    for subsampling, (h, w) in ((0, (21, 30)), (1, (24, 96))):  # 4:4:4, 4:2:2
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(out, "JPEG", subsampling=subsampling,
                                                                           quality=90)
        cases.append(out.getvalue())
    for data in cases:
        decoded = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        whole = decoded.permute(1, 2, 0).numpy()
        for half in (None, "A", "B"):
            image = whole
            if half is not None:
                if image.shape[1] % 2:
                    continue
                image = image[:, :image.shape[1] // 2] if half == "A" else image[:, image.shape[1] // 2:]
            counts = lab_bins.ColourCounts()
            if not counts.add_jpeg(data, half, lib=lib):
                return False
            if not np.array_equal(counts.flush(), lab_bins.count_bins(np.ascontiguousarray(image)[None])):
                return False
    return True


def set_prototypes(lib: ctypes.CDLL) -> None:
    """The argument and result types of the library's functions (the colour loop's and p2p_jpeg_count)."""
    lab_bins.set_prototypes(lib)
    ptr, long_, int_ = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    lib.p2p_jpeg_count.argtypes = [ptr, ctypes.c_ulong, int_, long_, long_, long_, long_, ptr, ptr, ptr, ptr, int_, ptr,
                                   ptr, long_]
    lib.p2p_jpeg_count.restype = int_


def build() -> ctypes.CDLL | None:
    """The library, compiled (once, cached) and loaded with its prototypes, not checked; None when it does not
    build (no C compiler, no ``jpeglib.h``)."""
    lib = lab_bins.build_library(lab_bins.C_SOURCE + JPEG_SOURCE, "jpeg-colours", link=["-ljpeg"])
    if lib is not None:
        set_prototypes(lib)
    return lib


def library() -> ctypes.CDLL | None:
    """The colour loop with the JPEG decoder (built, loaded and checked once per process), or None."""
    with lab_bins._LOCK:
        if "lib" in _STATE:
            return _STATE["lib"]  # type: ignore[return-value]
    lib = None
    if os.environ.get("P2P_EVAL_JPEG", "1") != "0" and lab_bins.kernel() == "c":
        lib = build()
        if lib is not None and not _self_check(lib):
            lib = None
    with lab_bins._LOCK:
        _STATE["lib"] = lib
    return lib


def available() -> bool:
    """Whether colour passes count JPEGs while decoding them (see the module docstring)."""
    return library() is not None


def decode_only(data: bytes, half: str | None = None) -> tuple[int, int]:
    """Decode ``data`` exactly as :meth:`ColourCounts.add_jpeg` does, counting nothing (the floor of that pass
    in ``benchmarks/perf/color.py``); returns the (width, height) it would count."""
    lib = library()
    if lib is None:
        raise RuntimeError("the JPEG colour loop is not available")
    dims = (ctypes.c_long * 2)()
    rc = lib.p2p_jpeg_count(data, len(data), HALVES[half], 0, 0, 1 << 62, 0, None, None, None, None, 0, dims, None, 0)
    if rc != COUNTED:
        raise ValueError(f"p2p_jpeg_count returned {rc}")
    return dims[0], dims[1]
