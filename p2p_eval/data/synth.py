"""Synthetic street scenes: the embedded default data set, in the pix2pix AB layout with Cityscapes labels.

``render_scene`` draws one street seen from a car (pinhole camera over a flat ground plane, see
:mod:`p2p_eval.data.synth_canvas`) with all 19 Cityscapes train classes in a street layout: sky, facades with
windows, walls and fences, a road in perspective with lane markings and zebra crossings, sidewalks and
terrain, trees and hedges, parked and driving cars / trucks / buses / trams, poles with lamps, traffic
lights and signs, pedestrians, riders on bicycles and motorcycles, and (in half the scenes) the ego vehicle's
bonnet at the bottom as void (255), as in Cityscapes.  Every class has its own texture and colour variation,
lit by a sun side with cast shadows or an overcast sky, with distance haze; the label map is the exact
per-pixel class of the photo.

``generate_dataset`` writes ``DIR/{train,val}/N.png`` (photo | colour label map, the colours of
``cityscapesscripts.helpers.labels`` via :data:`p2p_eval.data.cityscapes.PALETTE`, void black) and
``DIR/{train,val}_labels/N.png`` (uint8 train ids), N = 1..n per split.  Scene N of a split is rendered from
``numpy.random.default_rng([seed, split, N])``, so it does not depend on ``count``; PNGs are encoded by
Pillow at a fixed zlib level and written atomically: the same seed writes the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from p2p_eval.data.cityscapes import trainids_to_colors
from p2p_eval.data.synth_canvas import (BUS, CAR, ROAD, SIDEWALK, SKY, TERRAIN, TRAIN, TRUCK, VOID,
                                        Canvas)
from p2p_eval.data.synth_objects import bicycle, person, pole, rider_on, tree, vehicle
from p2p_eval.data.synth_street import Light, Street, ground_shadows, paint_ground, paint_sides, paint_sky
from p2p_eval.errors import UserError
from p2p_eval.fsutil import atomic_write_bytes
from p2p_eval.imageio import IMAGE_SUFFIXES

SPLIT_STREAM = {"train": 0, "val": 1}
Drawer = Callable[[Canvas, Light], None]


def check_size(size: int) -> None:
    """Scene sizes are multiples of 16 and at least 32 (what the generators' down-sampling needs)."""
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 32 or size % 16:
        raise UserError(f"synthetic scene size must be a multiple of 16 and at least 32, got {size!r}; "
                        "pass e.g. --size 64 or --size 256")


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: (photo HxWx3 uint8, train ids HxW uint8 with 255 = void), aligned pixel for pixel."""
    check_size(size)
    cv = Canvas(rng, size)
    light = Light.sample(rng)
    street = Street.sample(rng)
    paint_sky(cv, light)
    paint_ground(cv, street, light)
    paint_sides(cv, street, light)
    ground_shadows(cv, street, light)
    items = _populate(rng, street)
    ego = rng.random() < 0.5
    for key, (_, draw_fn) in enumerate(sorted(items, key=lambda item: -item[0])):
        with cv.forked(10_000 + key):
            draw_fn(cv, light)
    if ego:
        _ego_vehicle(cv)
    return _finish(cv, light), cv.label.copy()


def _populate(rng: np.random.Generator, st: Street) -> list[tuple[float, Drawer]]:
    """Vehicles in lanes or parked, people on sidewalks and crossings, riders, poles, signs, lights, trees."""
    items: list[tuple[float, Drawer]] = []
    taken: list[tuple[float, float, float, float]] = []

    def free(x0: float, x1: float, z0: float, z1: float) -> bool:
        return all(x1 < a or x0 > b or z1 < c or z0 > d for a, b, c, d in taken)

    edges = [st.xl, *st.lanes, st.xr]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    kinds = [TRAIN] * int(rng.random() < 0.12) + [BUS] * int(rng.random() < 0.25) + [TRUCK] * int(rng.random() < 0.3)
    kinds += [CAR] * int(rng.integers(2, 13))
    dims = {CAR: ((1.65, 1.9), (3.8, 4.8)), TRUCK: ((2.3, 2.5), (6, 9)), BUS: ((2.45, 2.55), (10, 13)),
            TRAIN: ((2.5, 2.65), (18, 30))}
    for cls in kinds:
        (wa, wb), (la, lb) = dims[cls]
        w, length = rng.uniform(wa, wb), rng.uniform(la, lb)
        for _ in range(10):
            if cls != TRAIN and rng.random() < 0.45:
                xc = st.xl + w / 2 + 0.3 if rng.random() < 0.5 else st.xr - w / 2 - 0.3
            else:
                xc = centres[rng.integers(len(centres))] + rng.uniform(-0.3, 0.3)
            z0 = (6.0 if abs(xc) < w else 3.0) + rng.exponential(18.0)
            if free(xc - w / 2, xc + w / 2, z0, z0 + length):
                taken.append((xc - w / 2, xc + w / 2, z0, z0 + length))
                items.append((z0, _vehicle_drawer(cls, xc, z0, w, length)))
                break
    for _ in range(int(rng.integers(0, 9))):
        side = int(rng.choice([-1, 1]))
        x, z = st.on_sidewalk(rng, side), rng.uniform(2.5, 45)
        items.append((z, lambda cv, li, x=x, z=z: person(cv, li, x, z)))
    if st.zebra is not None:
        for _ in range(int(rng.integers(0, 4))):
            x, z = rng.uniform(st.xl, st.xr), st.zebra + rng.uniform(0.5, 2.5)
            if free(x - 0.3, x + 0.3, z - 0.3, z + 0.3):
                items.append((z, lambda cv, li, x=x, z=z: person(cv, li, x, z)))
    for motor in (False, True):
        for _ in range(int(rng.binomial(2, 0.35))):
            x, z = rng.uniform(st.xl + 1, st.xr - 1), rng.uniform(5, 40)
            if free(x - 1, x + 1, z - 0.5, z + 0.5):
                taken.append((x - 1, x + 1, z - 0.5, z + 0.5))
                items.append((z, lambda cv, li, x=x, z=z, m=motor: rider_on(cv, li, x, z, m)))
    if rng.random() < 0.35:
        side = int(rng.choice([-1, 1]))
        x, z = st.on_sidewalk(rng, side), rng.uniform(4, 30)
        items.append((z, lambda cv, li, x=x, z=z: bicycle(cv, li, x, z, int(cv.rng.choice([-1, 1])), False)))
    for side in (-1, 1):
        edge = abs(st.xl if side < 0 else st.xr)
        z = rng.uniform(3, 12)
        while z < 90:
            kind = str(rng.choice(["lamp", "sign", "light", "plain"], p=[0.45, 0.3, 0.15, 0.1]))
            x = side * (edge + rng.uniform(0.3, 0.6))
            items.append((z, lambda cv, li, x=x, z=z, k=kind, s=side: pole(cv, li, x, z, k, -s)))
            z += rng.uniform(10, 25)
        if st.crossing:
            x, z = side * (edge + 0.5), st.crossing[0] - 1.0
            items.append((z, lambda cv, li, x=x, z=z: pole(cv, li, x, z, "light", -side)))
        if rng.random() < 0.55:
            width = sum(w for _, w in st.bands[side])
            z = rng.uniform(3, 10)
            while z < 70:
                x = side * (edge + width - rng.uniform(0.5, 1.2))
                items.append((z, lambda cv, li, x=x, z=z: tree(cv, li, x, z)))
                z += rng.uniform(7, 15)
    if rng.random() < 0.4:
        side = int(rng.choice([-1, 1]))
        x, z = st.on_sidewalk(rng, side), rng.uniform(4, 30)
        items.append((z, lambda cv, li, x=x, z=z: pole(cv, li, x, z, "sign", -1)))
    return items


def _vehicle_drawer(cls: int, xc: float, z0: float, w: float, length: float) -> Drawer:
    """Draw the vehicle after darkening the ground under it (contact shadow)."""

    def draw_fn(cv: Canvas, light: Light) -> None:
        off = 0.0 if light.overcast else -light.sun * 0.4
        rr, cc = cv.polygon(np.array([-1, 1, 1, -1]) * (w / 2 + 0.15) + xc + off, np.zeros(4),
                            [z0 - 0.2, z0 - 0.2, z0 + length, z0 + length])
        ground = np.isin(cv.label[rr, cc], (ROAD, SIDEWALK, TERRAIN))
        cv.photo[rr[ground], cc[ground]] *= 0.45
        vehicle(cv, light, cls, xc, z0, w, length)

    return draw_fn


def _ego_vehicle(cv: Canvas) -> None:
    """The camera car's bonnet along the bottom edge: void (255) as Cityscapes' 'ego vehicle'."""
    s, rng = cv.size, cv.rng
    height = rng.uniform(0.05, 0.1) * s
    cols = np.arange(s)
    top = s - height + 0.5 * height * ((cols - s / 2) / (s / 2)) ** 2
    rows = np.arange(s)[:, None]
    mask = rows >= top[None, :]
    rr, cc = np.nonzero(mask)
    paint = np.array([0.08, 0.08, 0.09]) * rng.uniform(0.5, 4.0)
    shine = np.exp(-((rr - top[cc]) / max(height * 0.3, 1.0)) ** 2)[:, None]
    rgb = cv.shade(rr, cc, paint, grain=0.02, mid=0.05) * (1 + 1.5 * shine)
    cv.put(rr, cc, VOID, rgb, 1.0)


def _finish(cv: Canvas, light: Light) -> np.ndarray:
    """Distance haze, white balance, exposure, vignette and sensor noise -> uint8 photo."""
    rng = cv.rng
    fog = rng.uniform(150, 700) * (0.6 if light.overcast else 1.0)
    haze = np.array([0.8, 0.82, 0.86], np.float32)
    a = np.where(cv.label == SKY, np.float32(0), 1 - np.exp(-cv.depth / np.float32(fog)))[..., None]
    r = np.linspace(-1, 1, cv.size, dtype=np.float32)
    gain = (1 - 0.1 * (r[:, None] ** 2 + r[None, :] ** 2))[..., None] * (light.tint * rng.uniform(0.85, 1.15))
    photo = (cv.photo + (haze - cv.photo) * a) * gain
    photo += cv.noise_rng.standard_normal(photo.shape, dtype=np.float32) * np.float32(0.012)
    return np.clip(photo * 255 + 0.5, 0, 255).astype(np.uint8)


def _png(arr: np.ndarray) -> bytes:
    """Lossless PNG bytes of an HxWx3 (RGB) or HxW (grey) uint8 array; zlib level 6 is deterministic, and
    Pillow's encoder is about twice as fast as torchvision's encode_png on these noisy photos."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _check_args(out: Path, count: int, seed: int, val_fraction: float) -> None:
    if count < 1:
        raise UserError(f"--count must be at least 1, got {count}")
    if seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed}")
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder to write the data set into")


def generate_dataset(out: str | Path, count: int = 500, size: int = 256, seed: int = 0,
                     val_fraction: float = 0.2, progress: bool = True) -> dict[str, int]:
    """Write ``count`` scenes (``round(count * val_fraction)`` of them to val/, at least one of each split when
    count >= 2 and val_fraction > 0) in the AB layout plus train-id labels; returns {"train": n, "val": m}.
    ``progress=False`` shows no progress bar."""
    out = Path(out)
    check_size(size)
    _check_args(out, count, seed, val_fraction)
    n_val = round(count * val_fraction)
    if val_fraction > 0 and count >= 2:
        n_val = min(max(n_val, 1), count - 1)
    counts = {"train": count - n_val, "val": n_val}
    for split, n in counts.items():
        for folder in (out / split, out / f"{split}_labels"):
            if folder.is_dir():
                stale = [p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                         and not (p.stem.isdigit() and 1 <= int(p.stem) <= n and p.suffix == ".png")]
                if stale:
                    raise UserError(f"{folder} already holds {len(stale)} other images (e.g. {sorted(stale)[0]}); "
                                    "write to an empty --out folder or delete the old data set first")
    jobs = [(split, k) for split, n in counts.items() for k in range(1, n + 1)]
    for split, k in tqdm(jobs, desc=f"synth {size}x{size} scenes", unit="scene", disable=None if progress else True):
        photo, ids = render_scene(np.random.default_rng([seed, SPLIT_STREAM[split], k]), size)
        atomic_write_bytes(out / split / f"{k}.png", _png(np.concatenate([photo, trainids_to_colors(ids)], axis=1)))
        atomic_write_bytes(out / f"{split}_labels" / f"{k}.png", _png(ids))
    return counts
