"""The static street of a synthetic scene: sky, ground (road, sidewalk, terrain), facades and their walls/fences.

Each class has its own texture in world coordinates: asphalt grain with lane markings and zebra crossings,
paving tiles with joints and a curb, grass, facades with floors of windows and shop fronts, concrete wall
panels, see-through fence bars, leafy vegetation.  Lighting: a sun side (one row of facades lit, the other in
shade), cast shadows of the sunny side's buildings on the street, or an overcast sky.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from p2p_eval.data.synth_canvas import (BUILDING, FENCE, ROAD, SIDEWALK, SKY, TERRAIN, VEGETATION, WALL,
                                        Canvas, band, cell_hash, periodic)


@dataclass
class Light:
    """Scene lighting: ``sun`` is -1 (sun on the left) / +1 (right); facades facing it get ``lit``, others ``shade``."""

    sun: int
    overcast: bool
    lit: float
    shade: float
    shadow: float
    tint: np.ndarray

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Light":
        overcast = bool(rng.random() < 0.3)
        tint = rng.uniform(0.94, 1.06, 3).astype(np.float32)
        if overcast:
            return cls(int(rng.choice([-1, 1])), True, 0.9, 0.8, 1.0, 1 + (tint - 1) / 3)
        return cls(int(rng.choice([-1, 1])), False, rng.uniform(1.0, 1.15), rng.uniform(0.5, 0.7),
                   rng.uniform(0.45, 0.65), tint)

    def face(self, facing: int) -> float:
        """Brightness of a vertical face whose normal points to ``facing`` (+1 = +X)."""
        return self.lit if facing == self.sun else self.shade


@dataclass
class Segment:
    """A stretch of one street side: ``kind`` is building / vegetation / gap, from z0 to z1, height h."""

    kind: str
    side: int
    x: float
    z0: float
    z1: float
    h: float


@dataclass
class Street:
    """Ground layout: road between xl and xr, bands outward on each side, facade planes, crossings."""

    xl: float
    xr: float
    bands: dict[int, list[tuple[int, float]]]
    facade: dict[int, float]
    lanes: list[float]
    dashed: list[bool]
    crossing: tuple[float, float] | None
    zebra: float | None
    end: float
    segments: list[Segment] = field(default_factory=list)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Street":
        n_lanes = int(rng.integers(1, 4))
        lane_w = rng.uniform(2.9, 3.6)
        left_lanes = int(rng.integers(0, n_lanes))
        xl = -(left_lanes + rng.uniform(0.2, 0.8)) * lane_w
        xr = xl + n_lanes * lane_w + rng.uniform(0.0, 2.5)
        lanes = [xl + k * lane_w for k in range(1, n_lanes)]
        dashed = [bool(rng.random() < 0.75) for _ in lanes]
        bands, facade = {}, {}
        for side in (-1, 1):
            edge = abs(xl if side < 0 else xr)
            choice = rng.random()
            if choice < 0.6:
                b = [(SIDEWALK, rng.uniform(1.8, 4.5))]
            elif choice < 0.85:
                b = [(TERRAIN, rng.uniform(0.8, 2.0)), (SIDEWALK, rng.uniform(1.5, 3.5))]
            else:
                b = [(SIDEWALK, rng.uniform(1.5, 3.0)), (TERRAIN, rng.uniform(2.0, 8.0))]
            bands[side] = b
            facade[side] = side * (edge + sum(w for _, w in b) + rng.uniform(0.0, 1.0))
        crossing = None
        if rng.random() < 0.4:
            z0 = rng.uniform(15, 45)
            crossing = (z0, z0 + rng.uniform(8, 14))
        zebra = None
        if rng.random() < 0.35:
            zebra = (crossing[0] - 4.0) if crossing else rng.uniform(8, 25)
        return cls(xl, xr, bands, facade, lanes, dashed, crossing, zebra, rng.uniform(60, 160))

    def on_sidewalk(self, rng: np.random.Generator, side: int) -> float:
        """A random X on the sidewalk of ``side`` (or the first band when there is no sidewalk)."""
        x = abs(self.xl if side < 0 else self.xr)
        for cls_id, w in self.bands[side]:
            if cls_id == SIDEWALK:
                return side * (x + rng.uniform(0.3, max(0.4, w - 0.3)))
            x += w
        return side * (abs(self.xl if side < 0 else self.xr) + 0.5)


def paint_sky(cv: Canvas, light: Light) -> None:
    """Sky above the horizon (the ground covers the rest): blue gradient, pale near the horizon, with
    coarse-noise clouds; or grey overcast."""
    rows = min(cv.size, int(np.floor(cv.hy)) + 2)
    t = np.clip(np.arange(rows, dtype=np.float32) / max(cv.hy, 1.0), 0.0, 1.0)[:, None, None]
    rng = cv.rng
    if light.overcast:
        top = np.array([0.72, 0.74, 0.78], np.float32) * rng.uniform(0.9, 1.1)
        low = np.array([0.85, 0.86, 0.88], np.float32)
    else:
        top = np.array([0.25, 0.45, 0.85], np.float32) * rng.uniform(0.85, 1.1)
        low = np.array([0.7, 0.8, 0.92], np.float32)
    rgb = top * (1 - t) + low * t
    cloud = np.clip(cv.coarse[:rows] * 1.6 + cv.mid[:rows] * 0.5 - rng.uniform(-0.2, 0.8), 0, 1)[..., None]
    rgb = rgb * (1 - cloud) + np.array([0.95, 0.95, 0.96], np.float32) * cloud
    cv.photo[:rows] = rgb * (1 + 0.01 * cv.grain[:rows, :, None])
    cv.label[:rows] = SKY
    cv.depth[:rows] = 1.0e4


def paint_ground(cv: Canvas, st: Street, light: Light) -> None:
    """Road, sidewalks (tiles, curb), terrain (grass) for every pixel below the horizon, by world X/Z."""
    rng, s = cv.rng, cv.size
    r0 = int(np.floor(cv.hy)) + 1
    rr, cc = np.mgrid[r0:s, 0:s]
    rr, cc = rr.ravel(), cc.ravel()
    x, z = cv.ground_xz(rr.astype(np.float64), cc.astype(np.float64))
    px = z / cv.f
    cls = np.full(rr.shape, TERRAIN, np.uint8)
    cls[(x >= st.xl) & (x <= st.xr)] = ROAD
    for side in (-1, 1):
        edge = abs(st.xl if side < 0 else st.xr)
        d = side * x
        for cls_id, w in st.bands[side]:
            cls[(d > edge) & (d <= edge + w)] = cls_id
            edge += w
    if st.crossing:
        across = (z >= st.crossing[0]) & (z <= st.crossing[1])
        cls[across] = ROAD
    rgb = np.empty((len(rr), 3), np.float32)
    # road: asphalt grain, patches, markings
    m = cls == ROAD
    asphalt = rng.uniform(0.2, 0.4) * np.array([1.0, 1.0, 1.03])
    rgb[m] = cv.shade(rr[m], cc[m], asphalt, grain=0.1, mid=0.1, coarse=0.08)
    xm, zm, pm = x[m], z[m], px[m]
    paint = np.zeros(len(xm), np.float32)
    for lx, dashed in zip(st.lanes, st.dashed):
        line = band(xm - lx, 0.07, pm)
        if dashed:
            line = line * (((zm + lx) % 9.0) < 3.5)
        paint = np.maximum(paint, line)
    for ex in (st.xl + 0.25, st.xr - 0.25):
        paint = np.maximum(paint, band(xm - ex, 0.07, pm) * 0.9)
    if st.zebra is not None:
        zeb = (np.abs(zm - st.zebra - 1.5) < 1.5) & (band(periodic(xm, 1.0), 0.25, pm) > 0.5)
        paint = np.maximum(paint, zeb * 0.95)
    if st.crossing:
        paint *= ~((zm > st.crossing[0]) & (zm < st.crossing[1]))
    white = np.array([0.85, 0.85, 0.82], np.float32) * (1 + 0.05 * cv.grain[rr[m], cc[m], None])
    rgb[m] = rgb[m] * (1 - paint[:, None]) + white * paint[:, None]
    # sidewalk: tiles with joints and per-tile tone, a lighter curb along the road
    m = cls == SIDEWALK
    base = np.array([0.62, 0.6, 0.57]) * rng.uniform(0.75, 1.1) * rng.uniform(0.95, 1.05, 3)
    tile = rng.uniform(0.3, 0.6)
    xm, zm, pm = x[m], z[m], px[m]
    tone = 0.9 + 0.2 * cell_hash(np.floor(xm / tile), np.floor(zm / tile), cv.salt)
    joint = np.maximum(band(periodic(xm, tile, tile / 2), 0.02, pm), band(periodic(zm, tile, tile / 2), 0.02, pm))
    rgb[m] = cv.shade(rr[m], cc[m], base, grain=0.06, mid=0.05) * (tone * (1 - 0.35 * joint))[:, None]
    curb = np.maximum(band(xm - st.xl + 0.12, 0.12, pm), band(xm - st.xr - 0.12, 0.12, pm))
    rgb[m] = rgb[m] * (1 - curb[:, None]) + np.array([0.75, 0.75, 0.73]) * curb[:, None]
    # terrain: grass / dry earth mix, coarse grain
    m = cls == TERRAIN
    green = np.array([0.3, 0.42, 0.16]) * rng.uniform(0.8, 1.1)
    dry = np.array([0.5, 0.44, 0.3])
    mix = np.clip(0.5 + 0.6 * cv.coarse[rr[m], cc[m]] + 0.3 * cv.mid[rr[m], cc[m]], 0, 1)[:, None]
    rgb[m] = (green * (1 - mix) + dry * mix) * (1 + 0.2 * cv.grain[rr[m], cc[m], None])
    rgb *= light.lit if not light.overcast else 0.95
    cv.put(rr, cc, cls, rgb, z)


def ground_shadows(cv: Canvas, st: Street, light: Light) -> None:
    """Darken the ground inside the shadows the sunny side's buildings cast across the street."""
    if light.overcast:
        return
    segs = [g for g in st.segments if g.side == light.sun and g.kind in ("building", "vegetation")]
    if not segs:
        return
    r0 = int(np.floor(cv.hy)) + 1
    rr, cc = np.mgrid[r0:cv.size, 0:cv.size]
    rr, cc = rr.ravel(), cc.ravel()
    x, z = cv.ground_xz(rr.astype(np.float64), cc.astype(np.float64))
    reach = np.zeros(len(rr))
    k = cv.rng.uniform(0.3, 0.9)
    for g in segs:
        inside = (z >= g.z0) & (z < g.z1)
        reach[inside] = np.maximum(reach[inside], g.h * k)
    shadow = (light.sun * (st.facade[light.sun] - x) < reach) & (cv.depth[rr, cc] >= z - 1e-3)
    shadow &= np.isin(cv.label[rr, cc], (ROAD, SIDEWALK, TERRAIN))
    cv.photo[rr[shadow], cc[shadow]] *= light.shadow


def _facade_rgb(cv: Canvas, rr, cc, s, t, px_s, px_t, h: float, light_f: float) -> np.ndarray:
    """A facade in its own (along s, height t) metres: wall colour, floors of windows, a shop floor, a cornice."""
    rng = cv.rng
    palette = np.array([[0.72, 0.66, 0.55], [0.6, 0.58, 0.56], [0.62, 0.38, 0.3], [0.82, 0.8, 0.74],
                        [0.5, 0.42, 0.35], [0.78, 0.7, 0.5], [0.45, 0.47, 0.5]])
    base = palette[rng.integers(len(palette))] * rng.uniform(0.8, 1.1) * rng.uniform(0.95, 1.05, 3)
    rgb = cv.shade(rr, cc, base, grain=0.05, mid=0.06, coarse=0.05)
    fp, wp = rng.uniform(2.8, 3.6), rng.uniform(1.8, 3.6)
    ww, wh = wp * rng.uniform(0.3, 0.6), fp * rng.uniform(0.35, 0.55)
    gf = rng.uniform(3.0, 4.5)
    phase = rng.uniform(0, wp)
    upper = (t > gf) & (t < h - 0.9)
    win = band(periodic(s, wp, phase), ww / 2, px_s) * band(periodic(t - gf, fp), wh / 2, px_t) * upper
    frame = band(periodic(s, wp, phase), ww / 2 + 0.12, px_s) * band(periodic(t - gf, fp), wh / 2 + 0.12, px_t) * upper
    cornice = band(t - h + 0.25, 0.25, px_t) + band(t - gf, 0.12, px_t)
    shop = (t < gf - 0.4) & (t > 0.3)
    shop_glass = band(periodic(s, 4.0, phase), 1.6, px_s) * shop
    rgb *= (1 - 0.25 * np.clip(frame - win + cornice, 0, 1))[:, None]
    wi, wj = np.floor((s - phase) / wp), np.floor((t - gf) / fp)
    glow = cell_hash(wi, wj, cv.salt)
    glass = np.array([0.16, 0.2, 0.26]) + np.array([0.35, 0.38, 0.4]) * (glow ** 3)[:, None]
    glass = glass * (1 + 0.3 * cv.mid[rr, cc, None])
    a = np.clip(win + shop_glass, 0, 1)[:, None]
    rgb = rgb * (1 - a) + glass * a
    return rgb * light_f * (0.85 + 0.15 * np.clip(t / 4.0, 0, 1))[:, None]


def _leafy(cv: Canvas, rr, cc, y: np.ndarray, top: float) -> np.ndarray:
    """Foliage: green with strong fine grain (leaves), dark gaps, lighter towards the top."""
    rng = cv.rng
    base = np.array([0.2, 0.33, 0.1]) * rng.uniform(0.7, 1.2) * rng.uniform(0.9, 1.1, 3)
    leaves = 1 + 0.35 * cv.grain[rr, cc] + 0.25 * cv.mid[rr, cc]
    light = 0.7 + 0.5 * np.clip(y / max(top, 0.1), 0, 1)
    return base[None, :] * np.clip(leaves * light, 0.2, 2.0)[:, None]


def paint_sides(cv: Canvas, st: Street, light: Light) -> None:
    """Both street sides from the far end to the camera: buildings, parks/hedges, gaps; then walls and fences."""
    rng = cv.rng
    for side in (-1, 1):
        z = st.end
        segs = []
        while z > 0.5:
            length = rng.uniform(8, 30)
            z0 = max(z - length, 0.5)
            kind = "building" if rng.random() < 0.72 else "vegetation"
            if st.crossing and z0 < st.crossing[1] and z > st.crossing[0]:
                if z > st.crossing[1] + 0.5:
                    z0 = st.crossing[1]
                else:
                    segs.append(Segment("gap", side, st.facade[side], st.crossing[0], st.crossing[1], 0.0))
                    z = st.crossing[0]
                    continue
            x = st.facade[side] + side * rng.uniform(0.0, 1.5)
            h = rng.uniform(9, 30) if kind == "building" else rng.uniform(2.5, 10)
            segs.append(Segment(kind, side, x, z0, z, h))
            z = z0
        st.segments += segs
    far = (rng.random() < 0.6, rng.uniform(8, 30), rng.uniform(6, 15))
    with cv.forked(1):
        if far[0]:
            _front_building(cv, st.end, st.facade[-1] - 40, st.facade[1] + 40, far[1], light)
        else:
            _treeline(cv, st.end, st.facade[-1] - 60, st.facade[1] + 60, far[2])
    if st.crossing:  # the corner buildings across the side street face the camera
        for side in (-1, 1):
            x0, x1 = sorted((st.facade[side], st.facade[side] + side * 40.0))
            h = rng.uniform(8, 22)
            with cv.forked(2 + side):
                _front_building(cv, st.crossing[1], x0, x1, h, light)
    for key, g in enumerate(sorted(st.segments, key=lambda g: -g.z1)):
        with cv.forked(100 + key):
            if g.kind == "building":
                _side_building(cv, g, light)
            elif g.kind == "vegetation":
                _side_vegetation(cv, g, light)
    for key, g in enumerate(g for g in st.segments if g.kind != "gap"):
        roll, x = rng.random(), st.facade[g.side] - g.side * rng.uniform(0.0, 0.5)
        with cv.forked(1000 + key):
            if roll < 0.3:
                _side_wall(cv, g, x, light)
            elif roll < 0.6:
                _side_fence(cv, g, x, light)


def _side_building(cv: Canvas, g: Segment, light: Light) -> None:
    rr, cc = cv.side_quad(g.x, g.z0, g.z1, 0.0, g.h)
    if len(rr) == 0:
        return
    z, y = cv.side_zy(rr.astype(np.float64), cc.astype(np.float64), g.x)
    px_t = z / cv.f
    px_s = z * z / (cv.f * abs(g.x))
    rgb = _facade_rgb(cv, rr, cc, z, y, px_s, px_t, g.h, light.face(-g.side))
    cv.put(rr, cc, BUILDING, rgb, z)


def _front_building(cv: Canvas, zp: float, x0: float, x1: float, h: float, light: Light) -> None:
    rr, cc = cv.front_quad(zp, x0, x1, 0.0, h)
    if len(rr) == 0:
        return
    x, y = cv.front_xy(rr.astype(np.float64), cc.astype(np.float64), zp)
    px = zp / cv.f
    rgb = _facade_rgb(cv, rr, cc, x, y, px, px, h, 0.5 * (light.lit + light.shade))
    cv.put(rr, cc, BUILDING, rgb, zp)


def _wavy_top(rng: np.random.Generator, n: int, h: float) -> np.ndarray:
    """Heights of an irregular canopy line: a smoothed random walk around h."""
    walk = np.cumsum(rng.normal(0, h * 0.12, n))
    walk = np.convolve(walk - walk.mean(), np.ones(3) / 3, mode="same")
    return np.clip(h + walk, 0.6, None)


def _treeline(cv: Canvas, zp: float, x0: float, x1: float, h: float) -> None:
    n = 40
    xs = np.linspace(x0, x1, n)
    tops = _wavy_top(cv.rng, n, h)
    rr, cc = cv.polygon(np.r_[xs, xs[::-1]], np.r_[tops, np.zeros(n)], np.full(2 * n, zp))
    if len(rr):
        _, y = cv.front_xy(rr.astype(np.float64), cc.astype(np.float64), zp)
        cv.put(rr, cc, VEGETATION, _leafy(cv, rr, cc, y, h), zp)


def _side_vegetation(cv: Canvas, g: Segment, light: Light) -> None:
    n = max(6, int((g.z1 - g.z0) / 1.5))
    zs = np.linspace(g.z0, g.z1, n)
    tops = _wavy_top(cv.rng, n, g.h)
    rr, cc = cv.polygon(np.full(2 * n, g.x), np.r_[tops, np.zeros(n)], np.r_[zs, zs[::-1]])
    if len(rr) == 0:
        return
    z, y = cv.side_zy(rr.astype(np.float64), cc.astype(np.float64), g.x)
    cv.put(rr, cc, VEGETATION, _leafy(cv, rr, cc, y, g.h) * light.face(-g.side), z)


def _side_strip(cv: Canvas, g: Segment, x: float, heights: tuple[float, float], max_len: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float] | None:
    """A strip standing at lateral offset ``x`` along part of the segment, of random height in ``heights`` and
    length 4..``max_len`` m: its pixels (rr, cc), their depth z and height y, and h; None when off screen."""
    rng = cv.rng
    h = rng.uniform(*heights)
    z0 = rng.uniform(g.z0, g.z1)
    z1 = min(g.z1, z0 + rng.uniform(4, max_len))
    rr, cc = cv.side_quad(x, z0, z1, 0.0, h)
    if len(rr) == 0:
        return None
    z, y = cv.side_zy(rr.astype(np.float64), cc.astype(np.float64), x)
    return rr, cc, z, y, h


def _side_wall(cv: Canvas, g: Segment, x: float, light: Light) -> None:
    """A concrete/stone wall in front of the segment: panels with seams, stains from coarse noise."""
    strip = _side_strip(cv, g, x, (0.8, 2.5), 20)
    if strip is None:
        return
    rr, cc, z, y, h = strip
    rng = cv.rng
    base = np.array([0.6, 0.58, 0.54]) * rng.uniform(0.7, 1.15) * rng.uniform(0.95, 1.05, 3)
    seam = band(periodic(z, rng.uniform(1.5, 3.0)), 0.03, z * z / (cv.f * abs(x)))
    cap = band(y - h + 0.08, 0.08, z / cv.f)
    rgb = cv.shade(rr, cc, base, grain=0.07, mid=0.08, coarse=0.12) * (1 - 0.4 * seam + 0.15 * cap)[:, None]
    cv.put(rr, cc, WALL, rgb * light.face(-g.side), z)


def _side_fence(cv: Canvas, g: Segment, x: float, light: Light) -> None:
    """A metal bar fence (see-through between bars, the label covers it all) or a wooden plank fence."""
    strip = _side_strip(cv, g, x, (1.0, 2.0), 25)
    if strip is None:
        return
    rr, cc, z, y, h = strip
    rng = cv.rng
    px_s, px_t = z * z / (cv.f * abs(x)), z / cv.f
    if rng.random() < 0.6:
        colour = np.array([0.2, 0.22, 0.2]) if rng.random() < 0.5 else np.array([0.3, 0.4, 0.3])
        pitch = rng.uniform(0.12, 0.25)
        bars = band(periodic(z, pitch), 0.025, px_s)
        rails = np.maximum(band(y - h + 0.05, 0.05, px_t), band(y - 0.15, 0.04, px_t))
        alpha = np.maximum(bars, rails)
    else:
        colour = np.array([0.5, 0.36, 0.22]) * rng.uniform(0.7, 1.1)
        alpha = 1 - 0.6 * band(periodic(z, 0.15), 0.012, px_s)
        alpha = np.clip(alpha, 0, 1)
    rgb = cv.shade(rr, cc, colour, grain=0.08, mid=0.1) * light.face(-g.side)
    cv.put(rr, cc, FENCE, rgb, z, alpha=alpha.astype(np.float32))
