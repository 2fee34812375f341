"""Drawing surface of the synthetic street scenes: a pinhole camera over a flat ground plane.

World coordinates are metres: X to the right, Y up (ground at Y = 0), Z forward along the street; the camera
sits at X = 0, height ``cam_h``, looking along +Z.  A point projects to ``col = cx + f X / Z`` and
``row = hy + f (cam_h - Y) / Z`` (``hy`` is the horizon row).  Objects are planar faces (ground, facades
X = const, fronts Z = const) filled with ``skimage.draw.polygon``; every face also knows the world
coordinates of its pixels (inverse projection), so textures (windows, tiles, lane markings) are in
perspective and anti-aliased by pixel footprint.  Everything is vectorised numpy: no per-pixel loops.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from scipy import ndimage
from skimage import draw

(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY,
 PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(19)
VOID = 255
FAR = 1.0e4
NEAR = 0.3

Pixels = tuple[np.ndarray, np.ndarray]


def value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: a (cells+1)^2 grid of uniform values bilinearly upsampled to size x size."""
    grid = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1)).astype(np.float32)
    return ndimage.zoom(grid, size / cells, order=1, grid_mode=False)[:size, :size]


def band(d: np.ndarray, half: float | np.ndarray, px: np.ndarray | float) -> np.ndarray:
    """Anti-aliased coverage of the stripe |d| < half, for pixels ``px`` metres wide (1 inside, 0 outside)."""
    return np.clip((half - np.abs(d)) / np.maximum(px, 1e-6) + 0.5, 0.0, 1.0)


def periodic(s: np.ndarray, pitch: float, phase: float = 0.0) -> np.ndarray:
    """Signed offset of ``s`` from the nearest centre of a lattice with spacing ``pitch``."""
    return (s - phase) % pitch - pitch / 2


def cell_hash(i: np.ndarray, j: np.ndarray | int, salt: int) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1] per integer cell (i, j): per-tile / per-window variation."""
    h = (np.asarray(i, np.int64) * 73856093) ^ (np.asarray(j, np.int64) * 19349663) ^ np.int64(salt)
    h = (h * 2654435761) % 4294967296
    return ((h >> 7) % 1024).astype(np.float32) / 1023.0


class Canvas:
    """Label map, photo (float RGB, linear-ish [0, 1]) and depth of one scene, plus its camera and noise fields."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng = rng
        self.size = size
        self.f = size * rng.uniform(0.75, 1.0)
        self.cx = size * rng.uniform(0.42, 0.58)
        self.hy = size * rng.uniform(0.38, 0.48)
        self.cam_h = rng.uniform(1.3, 1.8)
        self.label = np.full((size, size), SKY, np.uint8)
        self.photo = np.zeros((size, size, 3), np.float32)
        self.depth = np.full((size, size), FAR, np.float32)
        self.salt = int(rng.integers(0, 2**31))
        # Size-dependent draws come from their own stream, so a scene's layout is the same at every size.
        self.noise_rng = np.random.default_rng([self.salt, size])
        self.grain = self.noise_rng.standard_normal((size, size), dtype=np.float32)
        self.mid = value_noise(self.noise_rng, size, max(4, size // 6))
        self.coarse = value_noise(rng, size, 5)

    @contextmanager
    def forked(self, key: int) -> Iterator[np.random.Generator]:
        """Within the block ``self.rng`` is a child stream keyed by (scene, key): what one object draws (its
        colours, and whether it draws at all when it is too small to see) cannot shift the scene's other
        draws, so a seed gives the same layout at every image size."""
        main, self.rng = self.rng, np.random.default_rng([self.salt, key])
        try:
            yield self.rng
        finally:
            self.rng = main

    # ----- projection -------------------------------------------------------------------------------
    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points -> (rows, cols) in pixel index space (pixel centres at integers)."""
        z = np.maximum(np.asarray(z, np.float64), NEAR)
        return self.hy + self.f * (self.cam_h - np.asarray(y)) / z, self.cx + self.f * np.asarray(x) / z

    def polygon(self, x, y, z) -> Pixels:
        """Pixels inside the projected 3D polygon with vertices (x[i], y[i], z[i])."""
        r, c = self.project(np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(z, np.float64))
        return draw.polygon(r, c, (self.size, self.size))

    def side_quad(self, xp: float, z0: float, z1: float, y0: float, y1: float) -> Pixels:
        """Pixels of the vertical rectangle on the plane X = xp, Z in [z0, z1], Y in [y0, y1]."""
        return self.polygon([xp] * 4, [y0, y1, y1, y0], [z0, z0, z1, z1])

    def front_quad(self, zp: float, x0: float, x1: float, y0: float, y1: float) -> Pixels:
        """Pixels of the rectangle facing the camera at depth zp, X in [x0, x1], Y in [y0, y1]."""
        return self.polygon([x0, x1, x1, x0], [y0, y0, y1, y1], [zp] * 4)

    def front_ellipse(self, zp: float, x: float, y: float, rx: float, ry: float) -> Pixels:
        """Pixels of an ellipse facing the camera at depth zp, centre (x, y), radii rx, ry metres."""
        r, c = self.project(x, y, zp)
        s = self.f / max(zp, NEAR)
        return draw.ellipse(r, c, max(ry * s, 0.5), max(rx * s, 0.5), shape=(self.size, self.size))

    def ground_xz(self, rr: np.ndarray, cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World (X, Z) on the ground plane seen through pixels (rr, cc) below the horizon."""
        z = self.f * self.cam_h / np.maximum(rr - self.hy, 1e-3)
        return (cc - self.cx) * z / self.f, np.minimum(z, FAR)

    def side_zy(self, rr: np.ndarray, cc: np.ndarray, xp: float) -> tuple[np.ndarray, np.ndarray]:
        """World (Z, Y) on the plane X = xp seen through pixels (rr, cc)."""
        du = cc - self.cx
        du = np.where(np.abs(du) < 1e-3, 1e-3 * np.sign(xp), du)
        z = np.clip(self.f * xp / du, NEAR, FAR)
        return z, self.cam_h - (rr - self.hy) * z / self.f

    def front_xy(self, rr: np.ndarray, cc: np.ndarray, zp: float) -> tuple[np.ndarray, np.ndarray]:
        """World (X, Y) on the plane Z = zp seen through pixels (rr, cc)."""
        return (cc - self.cx) * zp / self.f, self.cam_h - (rr - self.hy) * zp / self.f

    # ----- painting ---------------------------------------------------------------------------------
    def shade(self, rr: np.ndarray, cc: np.ndarray, rgb, grain: float = 0.04, mid: float = 0.08,
              coarse: float = 0.0) -> np.ndarray:
        """(n, 3) colours: ``rgb`` modulated by the scene's fine grain, mid-scale and coarse noise."""
        m = 1.0 + grain * self.grain[rr, cc] + mid * self.mid[rr, cc]
        if coarse:
            m = m + coarse * self.coarse[rr, cc]
        return np.atleast_2d(np.asarray(rgb, np.float32)) * m[:, None]

    def put(self, rr: np.ndarray, cc: np.ndarray, cls: int | np.ndarray, rgb: np.ndarray, depth: np.ndarray | float,
            alpha: np.ndarray | None = None) -> None:
        """Paint class ``cls`` with colours ``rgb`` at depth; ``alpha`` < 1 lets the photo behind show through
        (fence gaps, bicycle spokes) while the label still takes the object's class."""
        self.label[rr, cc] = cls
        self.depth[rr, cc] = depth
        rgb = np.broadcast_to(np.asarray(rgb, np.float32), (len(rr), 3))
        if alpha is None:
            self.photo[rr, cc] = rgb
        else:
            a = alpha[:, None]
            self.photo[rr, cc] = self.photo[rr, cc] * (1.0 - a) + rgb * a
