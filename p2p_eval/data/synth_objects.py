"""Things in a synthetic street: vehicles (boxes seen from behind and from the side), people and riders,
bicycles and motorcycles (side view), poles with lamps / traffic lights / signs, and trees.

Each drawer paints one object into a :class:`~p2p_eval.data.synth_canvas.Canvas` with its class label and a
class-specific look: smooth glossy paint with glass, lights and dark tyres on vehicles; clothes, skin and
hair on people; thin frames and see-through spokes on bicycles; cylinder shading on poles; leafy canopies.
"""

from __future__ import annotations

import numpy as np

from p2p_eval.data.synth_canvas import (BICYCLE, BUS, CAR, LIGHT, MOTORCYCLE, PERSON, POLE, RIDER, SIGN, TRAIN,
                                        TRUCK, VEGETATION, Canvas, band, periodic)
from p2p_eval.data.synth_street import Light

CAR_PAINTS = np.array([[0.8, 0.8, 0.82], [0.08, 0.08, 0.09], [0.45, 0.46, 0.5], [0.55, 0.08, 0.06],
                       [0.1, 0.2, 0.45], [0.7, 0.7, 0.72], [0.2, 0.3, 0.22], [0.85, 0.75, 0.35]])
TYRE = np.array([0.05, 0.05, 0.055])
GLASS = np.array([0.12, 0.15, 0.2])


def _fl(rr: np.ndarray, cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return rr.astype(np.float64), cc.astype(np.float64)


def _side_disc(cv: Canvas, xp: float, zc: float, yc: float, r: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of a circle of radius r in the plane X = xp (a wheel seen from the side of a vehicle)."""
    a = np.linspace(0, 2 * np.pi, 17)[:-1]
    return cv.polygon(np.full(16, xp), yc + r * np.sin(a), zc + r * np.cos(a))


def vehicle(cv: Canvas, light: Light, cls: int, xc: float, z0: float, w: float, length: float) -> None:
    """A car / truck / bus / train (tram) at lateral centre xc whose near end is at depth z0."""
    rng = cv.rng
    shape = {CAR: (rng.uniform(1.4, 1.6), 0.3), TRUCK: (rng.uniform(3.0, 3.8), 0.5),
             BUS: (rng.uniform(2.9, 3.2), 0.35), TRAIN: (rng.uniform(3.3, 3.6), 0.4)}
    h, y0 = shape[cls]
    if cls == CAR:
        paint = CAR_PAINTS[rng.integers(len(CAR_PAINTS))] * rng.uniform(0.85, 1.1)
    elif cls == TRAIN:
        paint = np.array([[0.85, 0.85, 0.82], [0.75, 0.15, 0.1], [0.9, 0.75, 0.2]])[rng.integers(3)]
    else:
        paint = rng.uniform(0.15, 0.9, 3)
    paint = paint * rng.uniform(0.95, 1.05, 3)
    x_side = xc - w / 2 if xc - w / 2 > 0.2 else (xc + w / 2 if xc + w / 2 < -0.2 else None)
    wheels = [0.18, 0.82] if cls == CAR else ([0.12, 0.3, 0.85] if cls == TRUCK else [0.15, 0.75])
    if x_side is not None:
        facing = -1 if x_side > 0 else 1
        _vehicle_side(cv, light, cls, x_side, z0, length, h, y0, paint, facing)
        if cls != TRAIN:
            for f in wheels:
                rr, cc = _side_disc(cv, x_side, z0 + f * length, 0.34, 0.34)
                if len(rr):
                    z, y = cv.side_zy(*_fl(rr, cc), x_side)
                    hub = band(np.hypot(z - (z0 + f * length), y - 0.34), 0.14, z / cv.f)
                    rgb = TYRE * (1 - hub[:, None]) + np.array([0.45, 0.45, 0.47]) * hub[:, None]
                    cv.put(rr, cc, cls, cv.shade(rr, cc, rgb, grain=0.05, mid=0.0), z)
    for x0 in (xc - w / 2 + 0.05, xc + w / 2 - 0.3):
        rr, cc = cv.front_quad(z0 + 0.05, x0, x0 + 0.25, 0.0, y0 + 0.1)
        cv.put(rr, cc, cls, cv.shade(rr, cc, TYRE, grain=0.05, mid=0.0), z0 + 0.05)
    _vehicle_back(cv, light, cls, xc, z0, w, h, y0, paint)


def _vehicle_side(cv: Canvas, light: Light, cls: int, xp: float, z0: float, length: float, h: float, y0: float,
                  paint: np.ndarray, facing: int) -> None:
    if cls == CAR:
        prof = np.array([[0, y0], [0, 0.95], [0.2, 1.0], [0.3, h], [0.68, h], [0.82, 1.0], [1.0, 0.85], [1.0, y0]])
    elif cls == TRUCK:
        prof = np.array([[0, y0], [0, h], [0.74, h], [0.74, 2.6], [0.95, 2.5], [1.0, 1.3], [1.0, y0]])
    else:
        prof = np.array([[0, y0], [0, h], [1.0, h], [1.0, y0]])
    rr, cc = cv.polygon(np.full(len(prof), xp), prof[:, 1], z0 + prof[:, 0] * length)
    if len(rr) == 0:
        return
    z, y = cv.side_zy(*_fl(rr, cc), xp)
    s = (z - z0) / length
    px_s = z * z / (cv.f * abs(xp)) / length
    px_t = z / cv.f
    rgb = cv.shade(rr, cc, paint, grain=0.015, mid=0.03) * (0.8 + 0.3 * np.clip(y / h, 0, 1))[:, None]
    if cls == CAR:
        glass = band(s - 0.5, 0.18, px_s) * band(y - (1.0 + h) / 2 - 0.02, (h - 1.0) / 2 - 0.07, px_t)
        pillar = band(s - 0.5, 0.012, px_s)
        glass = glass * (1 - pillar)
        trim = band(y - 0.55, 0.03, px_t) * 0.5
    elif cls == TRUCK:
        glass = band(s - 0.86, 0.07, px_s) * band(y - 2.1, 0.35, px_t)
        trim = band(periodic(s * length, 0.35), 0.04, px_s * length) * (s < 0.72) * 0.25
    elif cls == BUS:
        glass = band(y - 1.95, 0.65, px_t) * (1 - band(periodic(s * length, 1.4), 0.06, px_s * length))
        trim = band(y - 0.9, 0.1, px_t) * 0.6
    else:
        glass = band(y - 2.1, 0.55, px_t) * (1 - band(periodic(s * length, 1.8), 0.15, px_s * length))
        trim = band(y - 0.8, 0.25, px_t) * 0.8
    rgb = rgb * (1 - trim[:, None] * 0.7)
    sky = GLASS + np.array([0.25, 0.3, 0.35]) * np.clip(1 - (y - 1.0) / h, 0, 1)[:, None] * 0.6
    rgb = rgb * (1 - glass[:, None]) + sky * glass[:, None]
    cv.put(rr, cc, cls, rgb * light.face(facing), z)


def _vehicle_back(cv: Canvas, light: Light, cls: int, xc: float, z0: float, w: float, h: float, y0: float,
                  paint: np.ndarray) -> None:
    hw = w / 2
    if cls == CAR:
        xs = np.array([-hw, hw, hw, hw - 0.12, hw - 0.28, -hw + 0.28, -hw + 0.12, -hw]) + xc
        ys = np.array([y0, y0, 0.95, 1.0, h, h, 1.0, 0.95])
    else:
        xs = np.array([-hw, hw, hw, -hw]) + xc
        ys = np.array([y0, y0, h, h])
    rr, cc = cv.polygon(xs, ys, np.full(len(xs), z0))
    if len(rr) == 0:
        return
    x, y = cv.front_xy(*_fl(rr, cc), z0)
    px = z0 / cv.f
    dx = np.abs(x - xc)
    rgb = cv.shade(rr, cc, paint, grain=0.015, mid=0.03) * (0.75 + 0.35 * np.clip(y / h, 0, 1))[:, None]
    lamp_y = 0.78 if cls == CAR else 1.0
    lamp = band(dx - (hw - 0.2), 0.14, px) * band(y - lamp_y, 0.07, px)
    plate = band(dx, 0.26, px) * band(y - (lamp_y - 0.25), 0.06, px)
    bumper = band(y - y0 - 0.1, 0.1, px) * 0.6
    if cls == CAR:
        glass = band(dx, hw - 0.3, px) * band(y - (1.05 + h) / 2, (h - 1.05) / 2 - 0.05, px)
    elif cls == TRUCK:
        glass = 0 * dx
        bumper = np.maximum(bumper, band(dx, 0.02, px) * (y > 1.0))
    else:
        glass = band(dx, hw - 0.25, px) * band(y - (h - 0.8), 0.55, px)
    rgb = rgb * (1 - bumper[:, None] * 0.7)
    for a, col in ((glass, GLASS * 1.3), (lamp, np.array([0.75, 0.06, 0.05])), (plate, np.array([0.85, 0.85, 0.8]))):
        rgb = rgb * (1 - a[:, None]) + col * a[:, None]
    cv.put(rr, cc, cls, rgb * (0.5 * (light.lit + light.shade)), z0)


def _limb(cv: Canvas, z: float, p0: tuple[float, float], p1: tuple[float, float], w0: float, w1: float):
    """Pixels of a tapered segment from p0 to p1 (x, y metres) at depth z: legs, arms, frame tubes."""
    d = np.array([p1[0] - p0[0], p1[1] - p0[1]])
    n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-6)
    xs = [p0[0] + n[0] * w0 / 2, p1[0] + n[0] * w1 / 2, p1[0] - n[0] * w1 / 2, p0[0] - n[0] * w0 / 2]
    ys = [p0[1] + n[1] * w0 / 2, p1[1] + n[1] * w1 / 2, p1[1] - n[1] * w1 / 2, p0[1] - n[1] * w0 / 2]
    return cv.polygon(xs, ys, [z] * 4)


def _paint_part(cv: Canvas, light: Light, pix, cls: int, colour: np.ndarray, z: float, x0: float,
                grain: float = 0.06) -> None:
    rr, cc = pix
    if len(rr) == 0:
        return
    x, _ = cv.front_xy(*_fl(rr, cc), z)
    roundness = 1 + 0.3 * light.sun * np.clip((x - x0) / 0.25, -1, 1) * (not light.overcast)
    cv.put(rr, cc, cls, cv.shade(rr, cc, colour, grain=grain, mid=0.05) * roundness[:, None] * light.lit, z)


def person(cv: Canvas, light: Light, x: float, z: float, cls: int = PERSON, seated: int = 0) -> None:
    """A pedestrian (standing or walking) or, with ``seated`` = +-1 (facing direction), a rider on a bike."""
    rng = cv.rng
    hgt = rng.uniform(1.55, 1.95)
    skin = np.array([0.85, 0.65, 0.5]) * rng.uniform(0.45, 1.05)
    shirt = rng.uniform(0.05, 0.85, 3)
    pants = np.array([0.15, 0.18, 0.3]) * rng.uniform(0.4, 1.6) if rng.random() < 0.7 else rng.uniform(0.05, 0.6, 3)
    hair = np.array([0.12, 0.08, 0.05]) * rng.uniform(0.5, 3.0)
    if seated:
        d = seated
        hip, sh = (x - 0.15 * d, 0.95), (x + 0.08 * d, 0.95 + 0.33 * hgt)
        head = (sh[0] + 0.08 * d, sh[1] + 0.15)
        for dx in (0.0, 0.12):
            knee = (x + (0.18 + dx) * d, 0.7)
            _paint_part(cv, light, _limb(cv, z, hip, knee, 0.15, 0.12), cls, pants, z, x)
            _paint_part(cv, light, _limb(cv, z, knee, (x + (0.05 + dx) * d, 0.3), 0.12, 0.1), cls, pants, z, x)
        _paint_part(cv, light, _limb(cv, z, hip, sh, 0.3, 0.36), cls, shirt, z, x)
        _paint_part(cv, light, _limb(cv, z, sh, (x + 0.42 * d, 1.05), 0.09, 0.07), cls, shirt, z, x)
    else:
        stride = rng.uniform(0.0, 0.35)
        hip_y, sh_y = 0.5 * hgt, 0.81 * hgt
        head = (x, 0.92 * hgt)
        for sgn in (-1, 1):
            _paint_part(cv, light, _limb(cv, z, (x + 0.06 * sgn, hip_y), (x + sgn * stride, 0.0), 0.16, 0.11),
                        cls, pants, z, x)
        _paint_part(cv, light, cv.front_quad(z, x - 0.12, x + 0.12, hip_y - 0.05, hip_y + 0.05), cls, pants, z, x)
        torso = cv.polygon([x - 0.15, x + 0.15, x + 0.2, x - 0.2], [hip_y, hip_y, sh_y, sh_y], [z] * 4)
        _paint_part(cv, light, torso, cls, shirt, z, x)
        for sgn in (-1, 1):
            hand = (x + sgn * (0.24 + 0.1 * stride), 0.5 * hgt)
            _paint_part(cv, light, _limb(cv, z, (x + 0.2 * sgn, sh_y - 0.04), hand, 0.09, 0.07), cls, shirt, z, x)
    _paint_part(cv, light, cv.front_ellipse(z, head[0], head[1], 0.085, 0.11), cls, skin, z, x, grain=0.03)
    _paint_part(cv, light, cv.front_ellipse(z, head[0], head[1] + 0.05, 0.09, 0.07), cls, hair, z, x)


def bicycle(cv: Canvas, light: Light, x: float, z: float, d: int, motor: bool) -> None:
    """A bicycle (thin frame, see-through spoked wheels) or motorcycle (solid wheels, body) seen from the side."""
    rng = cv.rng
    cls = MOTORCYCLE if motor else BICYCLE
    base = 0.7 if motor else 0.53
    r = 0.31 if motor else 0.34
    frame = rng.uniform(0.05, 0.85, 3)
    for wx in (x - base * d, x + base * d):
        rr, cc = cv.front_ellipse(z, wx, r, r, r)
        if len(rr) == 0:
            continue
        px, py = cv.front_xy(*_fl(rr, cc), z)
        dist = np.hypot(px - wx, py - r)
        pxs = z / cv.f
        tyre = band(dist - r + 0.04, 0.04 if not motor else 0.07, pxs)
        if motor:
            rgb = TYRE * tyre[:, None] + np.array([0.5, 0.5, 0.52]) * (1 - tyre[:, None])
            alpha = None
        else:
            rgb = TYRE * tyre[:, None] + np.array([0.6, 0.6, 0.62]) * (1 - tyre[:, None])
            alpha = np.clip(tyre + band(dist, 0.03, pxs) + 0.15, 0, 1).astype(np.float32)
        cv.put(rr, cc, cls, cv.shade(rr, cc, rgb, grain=0.05, mid=0.0), z, alpha=alpha)
    if motor:
        xs = x + d * np.array([-0.65, -0.5, -0.1, 0.3, 0.6, 0.45, 0.0])
        ys = np.array([0.45, 0.78, 0.85, 0.95, 0.8, 0.4, 0.3])
        _paint_part(cv, light, cv.polygon(xs, ys, [z] * 7), cls, frame, z, x, grain=0.02)
        _paint_part(cv, light, _limb(cv, z, (x + 0.5 * d, 0.9), (x + 0.7 * d, r), 0.06, 0.05), cls,
                    np.array([0.3, 0.3, 0.32]), z, x)
        return
    hub_r, hub_f = (x - base * d, r), (x + base * d, r)
    bb, seat, head = (x, 0.3), (x - 0.12 * d, 0.85), (x + 0.38 * d, 0.85)
    for p0, p1 in ((hub_r, bb), (bb, seat), (seat, hub_r), (seat, head), (head, bb), (head, hub_f),
                   (head, (x + 0.33 * d, 1.02))):
        _paint_part(cv, light, _limb(cv, z, p0, p1, 0.045, 0.045), cls, frame, z, x, grain=0.02)
    _paint_part(cv, light, cv.front_quad(z, seat[0] - 0.12, seat[0] + 0.1, 0.85, 0.9), cls, TYRE * 2, z, x)


def rider_on(cv: Canvas, light: Light, x: float, z: float, motor: bool) -> None:
    """A rider (class rider) on a bicycle or motorcycle (their own classes), crossing the view."""
    d = int(cv.rng.choice([-1, 1]))
    bicycle(cv, light, x, z + 0.01, d, motor)
    person(cv, light, x, z, cls=RIDER, seated=d)


def pole(cv: Canvas, light: Light, x: float, z: float, kind: str, toward: int) -> None:
    """A pole; ``kind`` lamp adds an arm and lamp head toward the road (``toward`` = -1/+1), ``light`` a
    traffic light housing, ``sign`` a traffic sign plate, ``plain`` nothing."""
    rng = cv.rng
    w = rng.uniform(0.1, 0.2)
    h = {"lamp": rng.uniform(6, 9), "light": rng.uniform(3.2, 4.5), "sign": rng.uniform(2.6, 3.4),
         "plain": rng.uniform(3, 8)}[kind]
    metal = np.array([0.45, 0.46, 0.47]) * rng.uniform(0.5, 1.2)
    _paint_part(cv, light, cv.front_quad(z, x - w / 2, x + w / 2, 0.0, h), POLE, metal, z, x, grain=0.03)
    if kind == "lamp":
        tip = x + toward * rng.uniform(1.0, 2.0)
        _paint_part(cv, light, _limb(cv, z, (x, h - 0.05), (tip, h + 0.2), 0.08, 0.07), POLE, metal, z, x)
        _paint_part(cv, light, cv.front_quad(z - 0.01, tip - 0.3, tip + 0.3, h + 0.05, h + 0.25), POLE,
                    metal * 0.8, z, tip)
    elif kind == "light":
        rr, cc = cv.front_quad(z - 0.05, x - 0.17, x + 0.17, h, h + 0.95)
        if len(rr):
            lx, ly = cv.front_xy(*_fl(rr, cc), z - 0.05)
            rgb = cv.shade(rr, cc, np.array([0.1, 0.1, 0.09]), grain=0.05, mid=0.05)
            on = int(rng.integers(3))
            for k, col in enumerate(([0.95, 0.15, 0.1], [0.95, 0.7, 0.1], [0.15, 0.9, 0.4])):
                lamp = band(np.hypot(lx - x, ly - (h + 0.78 - 0.3 * k)), 0.1, z / cv.f)
                col = np.array(col) * (1.0 if k == on else 0.25)
                rgb = rgb * (1 - lamp[:, None]) + col * lamp[:, None]
            cv.put(rr, cc, LIGHT, rgb, z - 0.05)
    elif kind == "sign":
        sign(cv, x, z - 0.03, h - 0.35)


def sign(cv: Canvas, x: float, z: float, y: float) -> None:
    """A traffic sign plate: red-ringed white disc, blue disc, red-bordered triangle or blue rectangle."""
    rng = cv.rng
    style = int(rng.integers(4))
    s = rng.uniform(0.28, 0.4)
    if style == 3:
        rr, cc = cv.front_quad(z, x - s, x + s, y - s * 1.2, y + s * 0.6)
    elif style == 2:
        rr, cc = cv.polygon([x - s, x + s, x], [y + s * 0.6, y + s * 0.6, y - s * 1.1], [z] * 3)
    else:
        rr, cc = cv.front_ellipse(z, x, y, s, s)
    if len(rr) == 0:
        return
    px, py = cv.front_xy(*_fl(rr, cc), z)
    dist = np.hypot(px - x, py - y)
    pxs = z / cv.f
    if style == 0:
        ring = band(dist - s + 0.06, 0.06, pxs)
        rgb = np.array([0.9, 0.9, 0.88]) * (1 - ring[:, None]) + np.array([0.8, 0.1, 0.08]) * ring[:, None]
    elif style == 1:
        arrow = band(px - x, 0.04, pxs) * band(py - y, s * 0.6, pxs)
        rgb = np.array([0.1, 0.25, 0.7]) * (1 - arrow[:, None]) + 0.9 * arrow[:, None]
    elif style == 2:
        inner = band(dist, s * 0.45, pxs)
        rgb = np.array([0.8, 0.1, 0.08]) * (1 - inner[:, None]) + np.array([0.9, 0.9, 0.85]) * inner[:, None]
    else:
        text = band(periodic(py, 0.12), 0.025, pxs) * band(px - x, s * 0.7, pxs)
        rgb = np.array([0.1, 0.3, 0.65]) * (1 - text[:, None]) + 0.9 * text[:, None]
    cv.put(rr, cc, SIGN, cv.shade(rr, cc, rgb, grain=0.02, mid=0.03), z)


def tree(cv: Canvas, light: Light, x: float, z: float) -> None:
    """A street tree: bark trunk and an irregular leafy canopy (both vegetation, as in Cityscapes)."""
    rng = cv.rng
    trunk_h = rng.uniform(1.8, 3.5)
    radius = rng.uniform(1.2, 3.0)
    bark = np.array([0.3, 0.22, 0.15]) * rng.uniform(0.6, 1.2)
    _paint_part(cv, light, cv.front_quad(z, x - 0.13, x + 0.13, 0.0, trunk_h + radius * 0.5), VEGETATION,
                bark, z, x, grain=0.15)
    a = np.linspace(0, 2 * np.pi, 25)[:-1]
    rad = radius * np.clip(1 + np.convolve(rng.normal(0, 0.18, 24), np.ones(3) / 3, mode="same"), 0.6, 1.4)
    yc = trunk_h + radius * 0.8
    rr, cc = cv.polygon(x + rad * np.cos(a), yc + 0.85 * rad * np.sin(a), np.full(24, z))
    if len(rr) == 0:
        return
    _, y = cv.front_xy(*_fl(rr, cc), z)
    base = np.array([0.18, 0.32, 0.09]) * rng.uniform(0.7, 1.25) * rng.uniform(0.9, 1.1, 3)
    leaves = 1 + 0.4 * cv.grain[rr, cc] + 0.3 * cv.mid[rr, cc]
    lit = 0.65 + 0.55 * np.clip((y - yc + radius) / (2 * radius), 0, 1)
    cv.put(rr, cc, VEGETATION, base * np.clip(leaves * lit, 0.15, 2.2)[:, None] * light.lit, z)
