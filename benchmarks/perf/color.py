"""Throughput of the Lab histogram pass (p2p_eval.metrics.color.LabHistogram) against scikit-image.

Both sides turn N uint8 RGB images of 256x256 into L / a / b bin counts with the same fixed bins:
ours in batches (vectorised float64 numpy), the reference one image at a time with
``skimage.color.rgb2lab`` + ``numpy.histogram`` per channel.  Images: the A halves (photos) of
../shared/data/cityscapes/val resized to 256x256 when that folder exists, else seeded uniform noise.
Prints a markdown table (images/s of each and the ratio); ``--json OUT`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CITYSCAPES_VAL = REPO.parent / "shared" / "data" / "cityscapes" / "val"


def load_images(count: int, size: int) -> tuple[np.ndarray, str]:
    """``count`` uint8 (size, size, 3) images and a description of where they came from."""
    import torch
    import torchvision.transforms.v2.functional as F

    from p2p_eval.imageio import list_images, read_image

    files = list_images(CITYSCAPES_VAL)[:count] if CITYSCAPES_VAL.is_dir() else []
    if len(files) < count:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8), "seeded uniform noise"
    out = np.empty((count, size, size, 3), np.uint8)
    for i, path in enumerate(files):
        ab = read_image(path)
        photo = ab[:, :, : ab.shape[2] // 2]
        out[i] = F.resize(photo, [size, size], antialias=True).permute(1, 2, 0).numpy()
    del torch
    return out, f"Cityscapes val photos (A halves) 1..{count}"


def ours(images: np.ndarray, batch: int) -> float:
    """Seconds for LabHistogram over all images."""
    from p2p_eval.metrics.color import LabHistogram

    start = time.perf_counter()
    hist = LabHistogram()
    for i in range(0, len(images), batch):
        hist.update(images[i:i + batch])
    return time.perf_counter() - start


def reference(images: np.ndarray) -> float:
    """Seconds for the per-image scikit-image loop (rgb2lab + numpy.histogram per channel)."""
    from skimage.color import rgb2lab

    from p2p_eval.metrics.color import CHANNELS, bin_edges

    edges = [bin_edges(c) for c in CHANNELS]
    totals = [np.zeros(len(e) - 1, np.int64) for e in edges]
    start = time.perf_counter()
    for image in images:
        lab = rgb2lab(image)
        for k in range(3):
            totals[k] += np.histogram(lab[..., k], edges[k])[0]
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="number of images (default 500)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--batch", type=int, default=16, help="images per LabHistogram.update (default 16)")
    parser.add_argument("--json", type=Path, help="write the numbers to this JSON file")
    args = parser.parse_args(argv)

    images, source = load_images(args.count, args.size)
    reference(images[:2]), ours(images[:2], args.batch)  # warm-up: imports and first-call costs
    t_ours = ours(images, args.batch)
    t_ref = reference(images)
    result = {"images": args.count, "size": args.size, "source": source, "batch": args.batch,
              "ours_images_per_s": args.count / t_ours, "skimage_images_per_s": args.count / t_ref,
              "ratio": t_ref / t_ours}
    print(f"Lab histogram pass over {args.count} images at {args.size}x{args.size} ({source})\n")
    print("| implementation | images/s |\n| --- | ---: |")
    print(f"| LabHistogram (batched numpy, batch {args.batch}) | {result['ours_images_per_s']:.1f} |")
    print(f"| per-image skimage.color.rgb2lab + numpy.histogram | {result['skimage_images_per_s']:.1f} |")
    print(f"\nspeed-up: {result['ratio']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
