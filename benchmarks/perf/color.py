"""The colour pass of ``p2p-eval color`` (decode + Lab histograms) in images/s, beside decoding alone.

The pass is :func:`p2p_eval.metrics.color.set_histogram` over the A halves (photos, 256x256) of the first
``--count`` 512x256 AB JPEGs in ../shared/data/cityscapes/val, in this process, as the command runs it;
decoding alone is :func:`p2p_eval.metrics.color.load_photo` over the same files.  The two alternate
``--rounds`` times; each rate is its best round.  The goal is a pass of at least 300 images/s.  Exactness:
the pass's bin counts against the per-image scikit-image loop (``skimage.color.rgb2lab`` then
``numpy.histogram`` with the same bins) over the same decoded photos, whose rate is printed too, and pixel by
pixel the number of pixels whose table bin differs from the bin of their ``rgb2lab`` value (goal 0).

Prints markdown; ``--json OUT`` writes the numbers (with the ``summary`` list ``benchmarks/collect.py``
reads).  Data not found: exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

CITYSCAPES_VAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cityscapes" / "val"
GOAL = 300.0  # images/s


def seconds(work) -> float:
    """Wall seconds of one call of ``work()``."""
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def skimage_loop(photos: list[np.ndarray]) -> tuple[np.ndarray, float, int]:
    """Summed L, a, b bin counts of the per-image scikit-image loop, its seconds, and the pixels whose bin in
    the colour table differs from the one ``numpy.histogram`` gives their ``rgb2lab`` value (checked untimed)."""
    from skimage.color import rgb2lab

    from p2p_eval.metrics.color import CHANNELS, bin_edges, color_table

    seconds, differing = 0.0, 0
    totals = [np.zeros(len(bin_edges(c)) - 1, np.int64) for c in CHANNELS]
    for photo in photos:
        start = time.perf_counter()
        lab = rgb2lab(photo)
        for k, c in enumerate(CHANNELS):
            totals[k] += np.histogram(lab[..., k], bin_edges(c))[0]
        seconds += time.perf_counter() - start
        rgb = photo.astype(np.int64)
        entry = color_table()[rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]]
        for k, c in enumerate(CHANNELS):
            edges = bin_edges(c)
            expected = np.minimum(np.searchsorted(edges, lab[..., k], side="right") - 1, len(edges) - 2)
            differing += int(((entry >> (8 * k)) & 255 != expected).sum())
    return np.concatenate(totals), seconds, differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="number of val photos (default 500)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating decode / pass rounds (default 3)")
    parser.add_argument("--json", type=Path, help="write the numbers to this JSON file")
    args = parser.parse_args(argv)

    from p2p_eval.imageio import list_images
    from p2p_eval.metrics.color import CHANNELS, LabHistogram, color_table, load_photo, set_histogram

    files = list_images(CITYSCAPES_VAL)[:args.count] if CITYSCAPES_VAL.is_dir() else []
    if len(files) < args.count:
        print(f"needs {args.count} photos in {CITYSCAPES_VAL} (found {len(files)})", file=sys.stderr)
        return 2
    color_table()  # built or read from the cache once per process, before any timing
    decode: list[float] = []
    passes: list[float] = []
    hist = set_histogram(files, "A", 256, progress=False)  # warm-up: imports and the page cache
    for _ in range(args.rounds):
        decode.append(seconds(lambda: [load_photo(p, "A", 256) for p in files]))
        passes.append(seconds(lambda: set_histogram(files, "A", 256, progress=False)))
    photos = [load_photo(p, "A", 256).permute(1, 2, 0).numpy() for p in files]
    reference, skimage_s, differing = skimage_loop(photos)
    start = time.perf_counter()
    alone = LabHistogram()
    for photo in photos:
        alone.update(photo)
    alone_s = time.perf_counter() - start
    ours = np.concatenate([hist.counts[c] for c in CHANNELS])
    equal = bool(np.array_equal(ours, reference)) and alone == hist and differing == 0
    rate = {"decode": args.count / min(decode), "pass": args.count / min(passes),
            "alone": args.count / alone_s, "skimage": args.count / skimage_s}
    load = os.getloadavg()[0]
    result = {"images": args.count, "size": 256, "source": f"Cityscapes val photos (A halves) 1..{args.count}",
              "cpus": os.cpu_count(), "loadavg_1min": load, "decode_s": decode, "pass_s": passes,
              "images_per_s": rate, "bin_counts_equal_skimage_loop": equal, "pixels_in_another_bin": differing,
              "goal_images_per_s": GOAL,
              "summary": [
                  {"figure": f"colour pass (decode + Lab histograms), in-process ({differing} pixels binned "
                             "differently from the per-image scikit-image loop)",
                   "value": rate["pass"], "unit": "images/s", "baseline": "decode only, same run",
                   "baseline_value": rate["decode"], "ratio": rate["pass"] / rate["decode"], "goal": f">= {GOAL:.0f} images/s"},
                  {"figure": "Lab histograms alone on decoded photos, in-process", "value": rate["alone"],
                   "unit": "images/s", "baseline": "per-image skimage.color.rgb2lab + numpy.histogram, same photos",
                   "baseline_value": rate["skimage"], "ratio": rate["alone"] / rate["skimage"], "goal": None}]}
    print(f"Colour pass over {args.count} Cityscapes val photos at 256x256, in-process, best of {args.rounds} "
          f"alternating rounds ({os.cpu_count()} CPUs, load average {load:.2f} at the end)\n")
    print("| decode only (images/s) | decode + Lab histograms (images/s) | ratio | goal | histograms alone (images/s) "
          "| scikit-image loop (images/s) | bin counts equal the scikit-image loop's | pixels in another bin |")
    print("| ---: | ---: | ---: | --- | ---: | ---: | --- | ---: |")
    print(f"| {rate['decode']:.0f} | {rate['pass']:.0f} | {rate['pass'] / rate['decode']:.2f} | "
          f">= {GOAL:.0f} images/s: {'met' if rate['pass'] >= GOAL else 'NOT met'} | {rate['alone']:.0f} | "
          f"{rate['skimage']:.0f} | {'yes' if equal else 'NO'} | {differing} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
