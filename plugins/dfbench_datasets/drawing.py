"""Drawing primitives of the ``shapes`` dataset: the class outlines and the two renderers.

Every shape is a set of polygons in normalised shape coordinates (x right, y down, roughly within
the unit disc). :func:`render_photo` fills them with a coloured texture and pastes the object on a
cluttered background; :func:`render_sketch` traces their outlines with wobbly, hand-drawn-looking
black strokes on white paper. Both draw at ``supersample`` times the output size and downsample
with a box filter (area averaging), which antialiases edges and thin strokes.

The renderers take a :class:`numpy.random.Generator` and draw every random quantity from it, in
an order that does not depend on the output size: only the last draws (pixel noise) do. A given
generator state therefore yields the same scene at every image size. Only numpy and PIL are used.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class Shape:
    """One class: filled contours, holes, and open detail strokes, in shape coordinates."""

    name: str
    contours: tuple  # closed polygons (k, 2) that are filled
    holes: tuple = ()  # closed polygons cut out of the fill (outlined in sketches)
    details: tuple = ()  # polygons filled darker in photos, traced as open strokes in sketches
    max_rotation: float = 180.0  # degrees: objects are rotated uniformly within +-max_rotation
    smooth: bool = False  # curved outline: no corner jitter in sketches


def _arr(points) -> np.ndarray:
    return np.asarray(points, dtype=np.float64)


def _regular(n: int, radius: float = 1.0, phase_deg: float = -90.0) -> np.ndarray:
    t = np.deg2rad(phase_deg) + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    t = np.deg2rad(-90.0) + np.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _heart(n: int = 48) -> np.ndarray:
    t = 2 * np.pi * np.arange(n) / n
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], axis=1)
    pts -= (pts.max(0) + pts.min(0)) / 2
    return pts / 16.5


def _crescent(n: int = 40, offset: float = 0.5, inner: float = 0.82) -> np.ndarray:
    # Outer unit circle minus a circle of radius `inner` centred at (offset, 0).
    xi = (1 - inner**2 + offset**2) / (2 * offset)
    yi = math.sqrt(max(0.0, 1 - xi**2))
    a = math.atan2(yi, xi)
    outer_t = np.linspace(a, 2 * np.pi - a, n)
    outer = np.stack([np.cos(outer_t), np.sin(outer_t)], axis=1)
    b = math.atan2(yi, xi - offset)
    inner_t = np.linspace(2 * np.pi - b, b, n // 2 + 2)[1:-1]
    inner_pts = np.stack([offset + inner * np.cos(inner_t), inner * np.sin(inner_t)], axis=1)
    pts = np.concatenate([outer, inner_pts])
    pts[:, 0] -= (pts[:, 0].max() + pts[:, 0].min()) / 2
    return pts / 0.95


def _build_shapes() -> tuple:
    house = _arr(
        [(-0.65, 0.9), (-0.65, -0.05), (-0.92, -0.05), (0.0, -0.92), (0.92, -0.05), (0.65, -0.05), (0.65, 0.9)]
    )
    door = _arr([(-0.19, 0.9), (-0.19, 0.35), (0.19, 0.35), (0.19, 0.9)])
    arm, ext = 0.3, 0.95
    cross = _arr(
        [(-arm, -ext), (arm, -ext), (arm, -arm), (ext, -arm), (ext, arm), (arm, arm), (arm, ext), (-arm, ext),
         (-arm, arm), (-ext, arm), (-ext, -arm), (-arm, -arm)]
    )
    arrow = _arr([(-0.95, -0.17), (0.15, -0.17), (0.15, -0.55), (0.95, 0.0), (0.15, 0.55), (0.15, 0.17), (-0.95, 0.17)])
    bolt = _arr([(-0.1, -1.0), (0.6, -1.0), (0.2, -0.2), (0.6, -0.2), (-0.4, 1.0), (-0.1, 0.15), (-0.5, 0.15)])
    shapes = [
        Shape("circle", (_regular(40),), smooth=True),
        Shape("square", (_regular(4, phase_deg=45.0) * 0.95,)),
        Shape("triangle", (_regular(3),)),
        Shape("star", (_star(),)),
        Shape("cross", (cross,)),
        Shape("heart", (_heart(),), max_rotation=30.0, smooth=True),
        Shape("arrow", (arrow,)),
        Shape("crescent", (_crescent(),), smooth=True),
        Shape("house", (house,), details=(door,), max_rotation=25.0),
        Shape("ring", (_regular(40),), holes=(_regular(40, 0.52),), smooth=True),
        Shape("hexagon", (_regular(6, phase_deg=0.0),)),
        Shape("lightning", (bolt,), max_rotation=35.0),
    ]
    out = []
    for s in shapes:
        # One normalisation for all polygons of a shape (holes/details keep their relative size).
        allpts = np.concatenate(list(s.contours))
        centre = (allpts.max(0) + allpts.min(0)) / 2
        scale = np.sqrt(((allpts - centre) ** 2).sum(1)).max()
        fix = lambda polys: tuple((p - centre) / scale for p in polys)  # noqa: E731
        out.append(Shape(s.name, fix(s.contours), fix(s.holes), fix(s.details), s.max_rotation, s.smooth))
    return tuple(out)


SHAPES: tuple = _build_shapes()
CLASS_NAMES: tuple = tuple(s.name for s in SHAPES)


# ----------------------------------------------------------------------------------------------
# geometry


@dataclass
class Placement:
    """Where an object lands: shape coordinates -> image coordinates in [0, 1]."""

    cx: float
    cy: float
    radius: float
    angle: float  # radians
    sx: float
    sy: float

    def apply(self, pts: np.ndarray, side: float) -> np.ndarray:
        p = pts * np.array([self.sx, self.sy])
        c, s = math.cos(self.angle), math.sin(self.angle)
        p = p @ np.array([[c, s], [-s, c]])
        return (p * self.radius + np.array([self.cx, self.cy])) * side


def _placement(rng: np.random.Generator, shape: Shape, rmin: float, rmax: float) -> Placement:
    radius = rng.uniform(rmin, rmax)
    sx, sy = np.exp(rng.normal(0.0, 0.08, size=2))
    angle = math.radians(rng.uniform(-shape.max_rotation, shape.max_rotation))
    slack = max(0.0, 0.5 - radius * max(sx, sy))  # keep the object (nearly) inside the frame
    cx, cy = 0.5 + rng.uniform(-slack, slack, size=2)
    return Placement(float(cx), float(cy), float(radius), angle, float(sx), float(sy))


def _poly(points: np.ndarray) -> list:
    return [(float(x), float(y)) for x, y in points]


_GRIDS: dict = {}


def _grid(side: int) -> tuple:
    """Pixel-centre coordinates in [0, 1] (float32), cached per side."""
    if side not in _GRIDS:
        v = (np.arange(side, dtype=np.float32) + 0.5) / side
        _GRIDS[side] = (v[None, :].repeat(side, 0), v[:, None].repeat(side, 1))
    return _GRIDS[side]


# ----------------------------------------------------------------------------------------------
# colours


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)), dtype=np.float32)


def _rgb255(c: np.ndarray) -> tuple:
    return tuple(int(round(float(x) * 255)) for x in np.clip(c, 0, 1))


def _luma(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


# ----------------------------------------------------------------------------------------------
# photos


LOW = 16  # side of the low-resolution canvas for smooth fields (gradients, blotches, shading)


def _smooth_noise(rng: np.random.Generator, cells: int, channels: int) -> np.ndarray:
    """Low-frequency noise in [0, 1] on the (LOW, LOW) canvas: tiny random image, upsampled."""
    small = (rng.random((cells, cells, channels)) * 255).astype(np.uint8)
    img = Image.fromarray(small[..., 0] if channels == 1 else small, "L" if channels == 1 else "RGB")
    arr = np.asarray(img.resize((LOW, LOW), Image.BICUBIC), dtype=np.float32) / 255.0
    return arr[..., None] if channels == 1 else arr


def _ramp(rng: np.random.Generator, angle: float | None = None) -> np.ndarray:
    """A linear ramp across the (LOW, LOW) canvas, roughly in [-0.5, 0.5], shape (LOW, LOW, 1)."""
    xx, yy = _grid(LOW)
    a = rng.uniform(0, 2 * np.pi) if angle is None else angle
    return (math.cos(a) * (xx - 0.5) + math.sin(a) * (yy - 0.5))[..., None]


def _upsample(field: np.ndarray, side: int) -> Image.Image:
    """A float RGB field in [0, 1] on the low canvas, as an RGB image of the given side."""
    img = Image.fromarray((np.clip(field, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    return img.resize((side, side), Image.BILINEAR)


def _background(rng: np.random.Generator, side: int) -> tuple[Image.Image, np.ndarray]:
    """A smooth colour gradient with blotches, plus small distractors; and its mean colour."""
    hue = rng.random()
    c0 = _hsv(hue, rng.uniform(0.05, 0.6), rng.uniform(0.2, 0.95))
    c1 = _hsv(hue + rng.normal(0, 0.15), rng.uniform(0.05, 0.6), rng.uniform(0.2, 0.95))
    u = np.clip(_ramp(rng) * rng.uniform(0.8, 1.6) + 0.5, 0, 1)
    field = c0 + (c1 - c0) * u + rng.uniform(0.0, 0.35) * (_smooth_noise(rng, 5, 3) - 0.5)
    img = _upsample(field, side)
    # Distractors: small blobs, strokes and boxes of random colours.
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 10))):
        kind = rng.integers(0, 3)
        col = _rgb255(_hsv(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.1, 1.0)))
        x, y = rng.random(2) * side
        r = rng.uniform(0.015, 0.07) * side
        if kind == 0:
            rx, ry = r * np.exp(rng.normal(0, 0.3, 2))
            draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=col)
        elif kind == 1:
            t = rng.uniform(0, np.pi)
            ln = r * rng.uniform(1.5, 4.0)
            draw.line([(x, y), (x + ln * math.cos(t), y + ln * math.sin(t))], fill=col,
                      width=max(1, int(rng.uniform(0.006, 0.02) * side)))
        else:
            draw.rectangle([x - r, y - 0.6 * r, x + r, y + 0.6 * r], fill=col)
    return img, (c0 + c1) / 2


def _texture(rng: np.random.Generator, side: int, bg_mean: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """A (side, side) RGB texture and its mean colour, contrasting with ``bg_mean``.

    Two colours mixed by a pattern (flat, stripes, checker, gradient, dots, mottled noise), with
    a soft directional shading. Colours are random and independent of the class; only contrast
    with the background is enforced (by redrawing low-contrast colours a few times).
    """
    for _ in range(10):
        hue = rng.random()
        c0 = _hsv(hue, rng.uniform(0.45, 1.0), rng.uniform(0.35, 1.0))
        shift = rng.choice([rng.normal(0, 0.06), 0.5 + rng.normal(0, 0.1), rng.uniform(0.15, 0.35)])
        c1 = _hsv(hue + shift, rng.uniform(0.3, 1.0), rng.uniform(0.2, 1.0))
        mean = (c0 + c1) / 2
        dl = abs(_luma(mean) - _luma(bg_mean))
        if dl > 0.2 or (dl > 0.08 and np.abs(mean - bg_mean).sum() > 0.6):
            break
    kind = int(rng.integers(0, 6))
    a = rng.uniform(0, np.pi)
    period = rng.uniform(0.06, 0.16)  # in image widths
    phase = rng.random()
    duty = rng.uniform(0.35, 0.65)
    dot = rng.uniform(0.04, 0.1)
    slope = rng.uniform(1.0, 2.5)
    cells = int(rng.integers(4, 12))
    shade_amount = rng.uniform(0.0, 0.35)
    shade = 1.0 - shade_amount * (_ramp(rng) + 0.5)  # darkening towards one side
    weight: Image.Image | None = None
    if kind == 0:  # flat
        mean = c0
    elif kind == 3:  # gradient: smooth, so computed on the low canvas
        w = np.clip(_ramp(rng, a)[..., 0] * slope + 0.5, 0, 1)
        weight = Image.fromarray((w * 255 + 0.5).astype(np.uint8), "L").resize((side, side), Image.BILINEAR)
    elif kind == 5:  # mottled noise
        w = np.clip((_smooth_noise(rng, cells, 1)[..., 0] - 0.5) * 2.0 + 0.5, 0, 1)
        weight = Image.fromarray((w * 255 + 0.5).astype(np.uint8), "L").resize((side, side), Image.BILINEAR)
    else:  # sharp patterns at full resolution (antialiased by the final downsampling)
        xx, yy = _grid(side)
        u = (math.cos(a) * xx + math.sin(a) * yy) / period
        if kind == 1:  # stripes
            w = (u + phase) % 1.0 < duty
        else:
            v = (-math.sin(a) * xx + math.cos(a) * yy) / period
            if kind == 2:  # checker
                w = (np.floor(u) + np.floor(v)) % 2 > 0.5
            else:  # dots
                w = ((u % 1.0) - 0.5) ** 2 + ((v % 1.0) - 0.5) ** 2 < dot
        weight = Image.fromarray(w.astype(np.uint8) * 255, "L")
    base = _upsample(c0 * shade, side)
    if weight is None:
        return base, mean
    return Image.composite(_upsample(c1 * shade, side), base, weight), mean


def render_photo(rng: np.random.Generator, shape: Shape, size: int, supersample: int = 4) -> np.ndarray:
    """A filled, textured, coloured object on clutter: uint8 (size, size, 3)."""
    side = size * supersample
    place = _placement(rng, shape, 0.26, 0.4)
    bg, bg_mean = _background(rng, side)
    obj, tex_mean = _texture(rng, side, bg_mean)
    mask = Image.new("L", (side, side), 0)
    md = ImageDraw.Draw(mask)
    for c in shape.contours:
        md.polygon(_poly(place.apply(c, side)), fill=255)
    for h in shape.holes:
        md.polygon(_poly(place.apply(h, side)), fill=0)
    od = ImageDraw.Draw(obj)
    dark = _rgb255(tex_mean * rng.uniform(0.2, 0.55))
    for d in shape.details:
        od.polygon(_poly(place.apply(d, side)), fill=dark)
    img = Image.composite(obj, bg, mask)
    if rng.random() < 0.5:  # a dark rim around the object
        draw = ImageDraw.Draw(img)
        width = max(1, int(round(rng.uniform(0.008, 0.02) * side)))
        for c in shape.contours + shape.holes:
            p = _poly(place.apply(c, side))
            draw.line(p + p[:1], fill=dark, width=width, joint="curve")
    if supersample > 1:
        img = img.reduce(supersample)
    out = np.asarray(img, dtype=np.float32)
    sigma = rng.uniform(0.0, 8.0)
    out = out + rng.normal(0.0, sigma, size=out.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# sketches


def _resample(points: np.ndarray, closed: bool, step: float) -> np.ndarray:
    """Points at (about) equal arc-length spacing ``step`` along a polyline."""
    pts = np.concatenate([points, points[:1]]) if closed else points
    seg = np.sqrt((np.diff(pts, axis=0) ** 2).sum(1))
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(math.ceil(cum[-1] / step)), 3)
    t = np.linspace(0, cum[-1], n + 1)
    if closed:
        t = t[:-1]
    return np.stack([np.interp(t, cum, pts[:, 0]), np.interp(t, cum, pts[:, 1])], axis=1)


def _hand_stroke(rng: np.random.Generator, points: np.ndarray, closed: bool, corner_jitter: float) -> list:
    """A wobbly, hand-drawn version of a polyline: a list of polylines (gaps split it)."""
    pts = points + rng.normal(0.0, corner_jitter, size=points.shape)
    dense = _resample(pts, closed, 0.05)
    if closed:  # start anywhere, overshoot (or fall short) a little past the start
        dense = np.roll(dense, -int(rng.integers(0, len(dense))), axis=0)
        extra = int(round(len(dense) * rng.uniform(-0.03, 0.12)))
        dense = np.concatenate([dense, dense[: max(extra, 0) + 1]]) if extra >= 0 else dense[:extra]
    n = len(dense)
    # Normals from central differences; offsets = smooth wobble + small tremor.
    tang = np.gradient(dense, axis=0)
    tang /= np.maximum(np.sqrt((tang**2).sum(1, keepdims=True)), 1e-9)
    normal = np.stack([-tang[:, 1], tang[:, 0]], axis=1)
    s = np.linspace(0.0, 1.0, n)
    off = np.zeros(n)
    for _ in range(3):
        off += rng.normal(0.0, 0.022) * np.sin(2 * np.pi * (rng.uniform(0.5, 4.0) * s + rng.random()))
    off += rng.normal(0.0, 0.006, size=n)
    if closed:  # the stroke drifts a little: start and end need not meet exactly
        off += np.linspace(0.0, rng.normal(0.0, 0.04), n)
    dense = dense + normal * off[:, None]
    # Gaps: occasionally lift the pen for a short stretch.
    keep = np.ones(n, dtype=bool)
    if rng.random() < 0.45:
        for _ in range(int(rng.integers(1, 3))):
            length = int(rng.integers(1, 3))
            start = int(rng.integers(1, max(2, n - length - 1)))
            keep[start : start + length] = False
    runs, cur = [], []
    for i in range(n):
        if keep[i]:
            cur.append(dense[i])
        elif cur:
            runs.append(np.array(cur))
            cur = []
    if cur:
        runs.append(np.array(cur))
    return [r for r in runs if len(r) >= 2]


def render_sketch(rng: np.random.Generator, shape: Shape, size: int, supersample: int = 4) -> np.ndarray:
    """A hand-drawn-looking outline, black on white: uint8 (size, size) grey."""
    side = size * supersample
    place = _placement(rng, shape, 0.26, 0.4)
    # Stroke width relative to the image, a little thinner (relatively) at large sizes.
    width_frac = rng.uniform(0.022, 0.045) * min(1.0, math.sqrt(64.0 / size))
    ink = int(rng.integers(0, 70))
    retrace = rng.random() < 0.2
    img = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(img)
    strokes = [(c, True) for c in shape.contours + shape.holes]
    # Details are open strokes: drop the closing edge (e.g. the door's threshold is the floor line).
    strokes += [(d, False) for d in shape.details]
    for pts, closed in strokes:
        jitter = 0.012 if shape.smooth else 0.035
        passes = 2 if retrace else 1
        for p in range(passes):
            w = width_frac * (1.0 if p == 0 else rng.uniform(0.5, 0.8))
            width = max(1, int(round(w * side)))
            for run in _hand_stroke(rng, pts, closed, jitter):
                draw.line(_poly(place.apply(run, side)), fill=ink, width=width, joint="curve")
    if supersample > 1:
        img = img.reduce(supersample)
    return np.asarray(img, dtype=np.uint8)
