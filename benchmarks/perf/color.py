"""Lab histogram pass (p2p_eval.metrics.color.LabHistogram) against its floor, decoding alone.

The pass is decode + histogram over N photos of 256x256: the A halves (photos) of the 512x256 AB JPEGs in
../shared/data/cityscapes/val.  Its floor is the same decode with nothing done to the pixels, measured in
the same run with the same decoder and the same workers; the goal is a rate of at least 0.8x the floor.

- decoders: ``libjpeg`` is the ``p2p-eval color`` command's path for JPEGs where the JPEG colour loop builds
  (:mod:`p2p_eval.metrics.jpeg_colours`: the system's libjpeg decodes the left half band by band and each
  band is counted while in cache, :meth:`LabHistogram.update_jpeg`); its floor is the same decode (same
  crop, same bands) counting nothing.  ``torchvision`` is the command's path elsewhere (PNGs, no libjpeg
  headers): :func:`p2p_eval.metrics.color.load_photo` (file bytes -> ``torchvision.io.decode_image`` -> left
  half), then :meth:`LabHistogram.update`.  ``pil`` is ``PIL.Image.open`` -> crop -> ``numpy.asarray``.
- both passes take one image at a time, as ``p2p-eval color`` does: decode it, and in the histogram pass
  count it at once (torchvision, PIL: right after decoding, while its pixels are still in the CPU cache).
- workers: 0 decodes and counts in this process; N > 0 splits the files into N contiguous chunks over N
  forked processes, each decoding (and, in the histogram pass, counting into its own accumulator; the
  accumulators are merged).  Decode-only and histogram passes alternate, ``--rounds`` times; the table
  gives each one's best round.
- exactness: the per-image scikit-image loop (``skimage.color.rgb2lab`` then ``numpy.histogram`` with the
  same bins) over the same decoded images (for ``libjpeg``, torchvision's decode of the same files): its summed bin counts against LabHistogram's, and pixel by pixel
  the number of pixels whose bin differs (with the largest distance of such a pixel to a bin edge).
  The scikit-image loop's own rate is printed too (the old baseline).
- counter footprint: the 64-byte lines of per-colour counters that a photo touches on average (and all
  photos together), in the layout the C loop uses (``colour_index``, one byte per colour along the grey
  axis) and in two others for comparison: one byte per colour in 4 x 4 x 4 RGB blocks, and 4-byte counters
  in ``r | g << 8 | b << 16`` order.  Fewer lines: fewer fetched per image, fewer of the decoder's pushed out.

Prints markdown; ``--json OUT`` writes the numbers.  Data not found: exits 2 (no synthetic stand-in).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CITYSCAPES_VAL = REPO.parent / "shared" / "data" / "cityscapes" / "val"
TARGET = 0.8

_FILES: list[Path] = []  # set before forking; workers read their chunk from it
_SIZE = 256


def decode_torchvision(path: Path):
    """The CLI's decoder: uint8 (3, 256, 256) torch tensor of the photo half."""
    from p2p_eval.metrics.color import load_photo

    return load_photo(path, "A", _SIZE)


def decode_pil(path: Path) -> np.ndarray:
    """PIL decoder: uint8 (256, 256, 3) numpy array of the photo half."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB") if im.mode != "RGB" else im
        im = im.crop((0, 0, im.width // 2, im.height))
        if im.size != (_SIZE, _SIZE):
            im = im.resize((_SIZE, _SIZE), Image.BILINEAR)
        return np.asarray(im)


def decode_libjpeg(path: Path) -> tuple[int, int]:
    """The JPEG colour loop's decode of the photo half, counting nothing; its (width, height)."""
    from p2p_eval.metrics import jpeg_colours

    return jpeg_colours.decode_only(path.read_bytes(), "A")


DECODERS: dict[str, Callable[[Path], object]] = {"libjpeg": decode_libjpeg, "torchvision": decode_torchvision,
                                                 "pil": decode_pil}


def _chunk(files: list[Path], part: int, parts: int) -> list[Path]:
    per = -(-len(files) // parts)
    return files[part * per:(part + 1) * per]


def _work(args: tuple[str, bool, int, int]) -> tuple[np.ndarray | int, float]:
    """One worker's share: decode its chunk (and count it when ``hist``); returns (counts or pixels decoded,
    CPU seconds this process spent on it)."""
    start = time.process_time()
    out = _share(*args)
    return out, time.process_time() - start


def _share(decoder: str, hist: bool, part: int, parts: int) -> np.ndarray | int:
    import torch

    from p2p_eval.metrics.color import CHANNELS, LabHistogram

    torch.set_num_threads(1)
    decode = DECODERS[decoder]
    files = _chunk(_FILES, part, parts)
    # both passes take one image at a time, as `p2p-eval color` does: decode it, then (histogram pass) count it
    # while its pixels are still in the CPU cache
    if not hist:
        pixels = 0
        for path in files:
            image = decode(path)
            pixels += image[0] * image[1] if decoder == "libjpeg" else image.shape[0] * image.shape[1] * image.shape[2] // 3
        return pixels
    acc = LabHistogram()
    for path in files:
        if decoder != "libjpeg":
            acc.update(decode(path))
        elif not acc.update_jpeg(path.read_bytes(), "A", _SIZE):
            raise RuntimeError(f"the JPEG colour loop did not take {path}")
    return np.concatenate([acc.counts[c] for c in CHANNELS])


def run_pass(pool, decoder: str, hist: bool, workers: int) -> tuple[float, float, object]:
    """Wall seconds and CPU seconds (all processes) of one pass over all files, and its result (merged
    counts, or pixels decoded)."""
    start = time.perf_counter()
    if workers == 0:
        parts = [_work((decoder, hist, 0, 1))]
    else:
        parts = pool.map(_work, [(decoder, hist, k, workers) for k in range(workers)])
    wall = time.perf_counter() - start
    outs = [o for o, _ in parts]
    return wall, sum(c for _, c in parts), sum(outs[1:], outs[0])


def measure(decoder: str, workers: int, rounds: int, count: int) -> dict:
    """Alternating decode-only / histogram passes; best and median rates, and the merged counts."""
    pool = mp.get_context("fork").Pool(workers) if workers else None
    try:
        run_pass(pool, decoder, True, workers)  # warm-up: imports, page cache, table and C loop in every process
        times: dict[str, list[float]] = {"decode": [], "hist": []}
        cpu: dict[str, list[float]] = {"decode": [], "hist": []}
        counts = None
        for _ in range(rounds):
            t, c, _pixels = run_pass(pool, decoder, False, workers)
            times["decode"].append(t)
            cpu["decode"].append(c)
            t, c, counts = run_pass(pool, decoder, True, workers)
            times["hist"].append(t)
            cpu["hist"].append(c)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    rate = {k: count / min(v) for k, v in times.items()}
    ratios = [d / h for d, h in zip(times["decode"], times["hist"])]
    return {"decoder": decoder, "workers": workers, "decode_images_per_s": rate["decode"],
            "hist_images_per_s": rate["hist"], "ratio": rate["hist"] / rate["decode"],
            "ratio_per_round": ratios, "median_ratio": statistics.median(ratios),
            "decode_s": times["decode"], "hist_s": times["hist"],
            "decode_cpu_ms_per_image": 1e3 * min(cpu["decode"]) / count,
            "hist_cpu_ms_per_image": 1e3 * min(cpu["hist"]) / count,
            "cpu_ratio": min(cpu["decode"]) / min(cpu["hist"]), "counts": counts}


def exactness(decoder: str, files: list[Path], counts: np.ndarray) -> dict:
    """The per-image scikit-image loop over the same decoded images, against LabHistogram's ``counts``."""
    import torch
    from skimage.color import rgb2lab

    from p2p_eval.metrics.color import BINS, CHANNELS, LabHistogram, bin_edges
    from p2p_eval.metrics.lab_bins import bin_index, colour_index, load_table

    edges = [bin_edges(c) for c in CHANNELS]
    table = load_table()
    totals = [np.zeros(BINS[c][2], np.int64) for c in CHANNELS]
    differing, worst_edge_distance, seconds = 0, 0.0, 0.0
    decoded = []
    for path in files:
        image = DECODERS["torchvision" if decoder == "libjpeg" else decoder](path)
        if isinstance(image, torch.Tensor):
            image = image.permute(1, 2, 0).numpy()
        decoded.append(image)
        start = time.perf_counter()
        lab = rgb2lab(image)
        for k in range(3):
            totals[k] += np.histogram(lab[..., k], edges[k])[0]
        seconds += time.perf_counter() - start
        entry = table[colour_index(image[..., 0], image[..., 1], image[..., 2])]
        for k in range(3):
            ours = ((entry >> (8 * k)) & 255).astype(np.int64)
            wrong = ours != bin_index(lab[..., k], edges[k])
            if wrong.any():
                differing += int(wrong.sum())
                v = lab[..., k][wrong]
                worst_edge_distance = max(worst_edge_distance, float(np.abs(v - np.round(v)).max()))
    reference = np.concatenate(totals)
    ours = LabHistogram()
    start = time.perf_counter()
    for image in decoded:  # the histograms alone, on the decoded images, as the scikit-image loop was timed
        ours.update(image)
    ours_counts = np.concatenate([ours.counts[c] for c in CHANNELS])
    ours_seconds = time.perf_counter() - start
    if not np.array_equal(ours_counts, counts):
        raise AssertionError("LabHistogram gave different counts on the same images in two passes")
    return {"bin_counts_equal": bool(np.array_equal(reference, counts)),
            "bins_differing": int((reference != counts).sum()),
            "pixels_in_another_bin": differing, "max_edge_distance_of_those": worst_edge_distance,
            "skimage_loop_images_per_s": len(files) / seconds,
            "histograms_alone_images_per_s": len(files) / ours_seconds}


def counter_lines(decoder: str, files: list[Path]) -> dict:
    """Mean distinct 64-byte counter lines per photo, and over all photos, for three counter layouts."""
    import torch

    from p2p_eval.metrics.lab_bins import colour_index

    layouts: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
        "uint8 along the grey axis (in use)": lambda r, g, b: colour_index(r, g, b) >> 6,
        "uint8 in 4x4x4 RGB blocks": lambda r, g, b: (r >> 2) | (g >> 2) << 6 | (b >> 2) << 12,
        "uint32 in RGB order (r + 256 g + 65536 b)": lambda r, g, b: (r | g << 8 | b << 16) >> 4,
    }
    per_photo = {name: [] for name in layouts}
    seen = {name: set() for name in layouts}
    for path in files:
        image = DECODERS[decoder](path)
        if isinstance(image, torch.Tensor):
            image = image.permute(1, 2, 0).numpy()
        r, g, b = (image[..., k].astype(np.uint32) for k in range(3))
        for name, line in layouts.items():
            lines = np.unique(line(r, g, b))
            per_photo[name].append(len(lines))
            seen[name].update(lines.tolist())
    return {name: {"lines_per_photo": float(np.mean(per_photo[name])), "lines_all_photos": len(seen[name])}
            for name in layouts}


def main(argv: list[str] | None = None) -> int:
    global _FILES, _SIZE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="number of val photos (default 500)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256, as stored)")
    parser.add_argument("--decoders", default="libjpeg,torchvision,pil",
                        help="comma-separated: libjpeg, torchvision, pil (default all three)")
    parser.add_argument("--workers", default="0,2", help="comma-separated worker counts (default 0,2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating decode / histogram rounds (default 3)")
    parser.add_argument("--json", type=Path, help="write the numbers to this JSON file")
    args = parser.parse_args(argv)

    from p2p_eval.imageio import list_images
    from p2p_eval.metrics import jpeg_colours, lab_bins

    files = list_images(CITYSCAPES_VAL)[:args.count] if CITYSCAPES_VAL.is_dir() else []
    if len(files) < args.count:
        print(f"needs {args.count} photos in {CITYSCAPES_VAL} (found {len(files)})", file=sys.stderr)
        return 2
    _FILES, _SIZE = files, args.size
    if "libjpeg" in args.decoders.split(",") and not jpeg_colours.available():
        print("the JPEG colour loop is not available here (no jpeglib.h, or P2P_EVAL_JPEG=0); "
              "run with --decoders torchvision,pil", file=sys.stderr)
        return 2
    lab_bins.load_table()
    kernel = lab_bins.kernel()
    if kernel == "c":
        kernel += f", {lab_bins.slot_loop()}"
    rows = [measure(d, int(w), args.rounds, args.count)
            for d in args.decoders.split(",") for w in args.workers.split(",")]
    checks = {d: exactness(d, files, next(r["counts"] for r in rows if r["decoder"] == d))
              for d in args.decoders.split(",")}
    for r in rows:
        r["counts"] = None
    load = os.getloadavg()
    footprint = counter_lines("torchvision", files)
    result = {"images": args.count, "size": args.size, "source": f"Cityscapes val photos (A halves) 1..{args.count}",
              "kernel": kernel, "cpus": os.cpu_count(), "loadavg_1min": load[0], "target_ratio": TARGET,
              "rows": rows, "exactness": checks, "counter_lines": footprint}
    result["summary"] = [
        {"figure": f"Lab histogram pass, {r['decoder']} decoder, "
                   + (f"{r['workers']} worker processes" if r["workers"] else "in-process")
                   + f" ({checks[r['decoder']]['pixels_in_another_bin']} pixels binned differently from the "
                     "per-image scikit-image loop)",
         "value": r["hist_images_per_s"], "unit": "images/s",
         "baseline": "decode only, same decoder and workers", "baseline_value": r["decode_images_per_s"],
         "ratio": r["ratio"], "goal": f">= {TARGET}x"}
        for r in rows]
    result["summary"] += [
        {"figure": f"Lab histograms alone on decoded images ({d} decoder), in-process",
         "value": c["histograms_alone_images_per_s"], "unit": "images/s",
         "baseline": "per-image skimage.color.rgb2lab + numpy.histogram, same images",
         "baseline_value": c["skimage_loop_images_per_s"],
         "ratio": c["histograms_alone_images_per_s"] / c["skimage_loop_images_per_s"], "goal": None}
        for d, c in checks.items() if d != "libjpeg"]  # libjpeg counts while decoding: nothing to count alone

    print(f"Lab histogram pass over {args.count} Cityscapes val photos at {args.size}x{args.size}, "
          f"decode-only in the same run as the floor (best of {args.rounds} alternating rounds; counting loop: "
          f"{kernel}; {os.cpu_count()} CPUs, load average {load[0]:.2f} at the end)\n")
    print("| decoder | workers | decode only (images/s) | decode + Lab histograms (images/s) | ratio "
          f"(goal >= {TARGET}) | ratio per round | CPU ms / image: decode, decode + histograms (ratio) |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    for r in rows:
        per_round = ", ".join(f"{x:.2f}" for x in r["ratio_per_round"])
        print(f"| {r['decoder']} | {r['workers']} | {r['decode_images_per_s']:.0f} | {r['hist_images_per_s']:.0f} | "
              f"{r['ratio']:.2f} | {per_round} | {r['decode_cpu_ms_per_image']:.2f}, "
              f"{r['hist_cpu_ms_per_image']:.2f} ({r['cpu_ratio']:.2f}) |")
    print("\nRates are wall-clock; the CPU columns count the CPU time of every process of the pass (less "
          "sensitive to other work on the machine).")
    print("\nExactness against the per-image scikit-image loop (`skimage.color.rgb2lab` + `numpy.histogram`, "
          "same decoded pixels):\n")
    print("| decoder | summed bin counts equal | bins differing | pixels in another bin | histograms alone, "
          "decoded images (images/s) | scikit-image loop, same images (images/s) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for d, c in checks.items():
        print(f"| {d} | {'yes' if c['bin_counts_equal'] else 'NO'} | {c['bins_differing']} | "
              f"{c['pixels_in_another_bin']} | "
              + ("(counts while decoding)" if d == "libjpeg" else f"{c['histograms_alone_images_per_s']:.0f}") + " | "
              f"{c['skimage_loop_images_per_s']:.0f} |")
    print("\nCounter footprint (torchvision's decode): 64-byte lines of per-colour counters touched\n")
    print("| counter layout | lines per photo (mean) | lines, all photos together |")
    print("| --- | ---: | ---: |")
    for name, f in footprint.items():
        print(f"| {name} | {f['lines_per_photo']:.0f} | {f['lines_all_photos']} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
