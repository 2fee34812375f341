"""A tiny synthetic facade-like AB set (labels -> photo, photo on the left as in pix2pix's CMP Facades files) for
the smoke preset of the Modified Pix2Pix table in tests and ``make demo``.

Each image is a facade: a wall with a grid of windows, a door, a cornice band and sky above, painted in the CMP
Facades label colours on the right (wall (0, 60, 255), window (0, 120, 255), door (255, 85, 0), cornice
(170, 0, 0), background (0, 0, 170)) and as a plain rendered photo with noise on the left. Scene N of a split
comes from ``numpy.random.default_rng([seed, split, N])``; PNGs, written atomically. Not a substitute for the
real data: a pipeline check.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from p2p_eval.fsutil import atomic_write_bytes

#: (label colour, photo colour) per part.
PARTS = {"background": ((0, 0, 170), (150, 185, 220)), "wall": ((0, 60, 255), (190, 170, 140)),
         "window": ((0, 120, 255), (45, 55, 70)), "door": ((255, 85, 0), (100, 60, 35)),
         "cornice": ((170, 0, 0), (150, 150, 150))}


def render_facade(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(photo, label colours), both HxWx3 uint8."""
    part = np.zeros((size, size), dtype=np.uint8)  # index into PARTS
    names = list(PARTS)
    top = int(rng.integers(size // 8, size // 4))
    part[top:] = names.index("wall")
    part[top:top + max(2, size // 16)] = names.index("cornice")
    rows, cols = int(rng.integers(2, 4)), int(rng.integers(2, 5))
    cell_h, cell_w = (size - top) // (rows + 1), size // cols
    for r in range(rows):
        for c in range(cols):
            y, x = top + size // 12 + r * cell_h, c * cell_w + cell_w // 4
            part[y:y + cell_h // 2, x:x + cell_w // 2] = names.index("window")
    door_x = int(rng.integers(0, cols)) * cell_w + cell_w // 4
    part[size - cell_h:, door_x:door_x + cell_w // 2] = names.index("door")
    labels = np.array([PARTS[n][0] for n in names], dtype=np.uint8)[part]
    photo = np.array([PARTS[n][1] for n in names], dtype=np.float64)[part]
    photo += rng.normal(0, 8, size=photo.shape) + rng.normal(0, 12, size=3)
    return np.clip(photo, 0, 255).astype(np.uint8), labels


def generate_facades(out: str | Path, train: int = 16, val: int = 6, size: int = 64, seed: int = 0) -> Path:
    """Write OUT/{train,val}/N.png (photo | label colours), N = 1..; returns OUT."""
    out = Path(out)
    for split, count, stream in (("train", train, 0), ("val", val, 1)):
        for k in range(1, count + 1):
            photo, labels = render_facade(np.random.default_rng([seed, stream, k]), size)
            buf = io.BytesIO()
            Image.fromarray(np.concatenate([photo, labels], axis=1)).save(buf, format="PNG", compress_level=6)
            atomic_write_bytes(out / split / f"{k}.png", buf.getvalue())
    return out
