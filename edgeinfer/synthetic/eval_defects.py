"""An EVALUATION-ONLY renderer: SYNTHETIC defects drawn onto any image, exact boxes and masks.

Never train on it. It exists so that models trained on :mod:`edgeinfer.synthetic.defects`
(or on defects synthesized from it) are judged on defects drawn another way: it shares no
code, shape model or blending with that renderer. There, defects are anti-aliased OpenCV
polylines/polygons alpha-blended toward a colour and dents are a linear shading ramp inside
an ellipse; here every defect is a field computed with numpy (distance transforms of
midpoint-displacement fractals and sinusoid-bent curves, thresholded noise, height maps),
applied by multiplying the surface's own brightness (so the defect takes on the surface's
texture), by screen blending, by normal-mapped shading or by replacing the texture.

Types (index order of :data:`EVAL_CLASSES`):

- ``scratch``: a long thin curve (a segment bent by two sinusoids), Gaussian cross-section,
  screen-blended bright (specular) or multiplied dark; 50-220 px long, 1-3.5 px wide;
- ``stain``: an irregular blot (smoothed noise thresholded inside a radial envelope) that
  tints or darkens the surface multiplicatively, with a darker drying ring at its edge;
  20-90 px across;
- ``crack``: a midpoint-displacement fractal between two ends, with up to two fractal
  branches, tapering width, dark; 40-160 px long;
- ``dent``: a smooth depression (a height map: anisotropic raised cosine) lit from one side
  through its surface normals: one flank brightens, the other darkens; 30-110 px across;
- ``chip``: a star-shaped piece of material missing: the texture inside is replaced by a
  smooth, darker fill with a bright lip on the lit side; 15-60 px across.

:func:`render_defects` returns ``(image, boxes, classes, mask)``: the image with ``n``
defects (uint8, same shape), one tight box per defect (float32 ``[N, 4]`` x1 y1 x2 y2, x2/y2
exclusive) around the pixels it changed by at least :data:`CHANGE_LEVELS` grey levels, the
class indices (int64 ``[N]``) and the union of those pixels (bool, H x W). Defects do not
overlap (a gap of at least 8 px between boxes).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

__all__ = ["CHANGE_LEVELS", "EVAL_CLASSES", "render_defects"]

EVAL_CLASSES: tuple[str, ...] = ("scratch", "stain", "crack", "dent", "chip")

#: a pixel belongs to a defect when some channel moved by at least this much
CHANGE_LEVELS = 3.0

_GAP = 8
_TRIES = 40

#: a defect field: (canvas height, width) -> per-pixel multiplicative gain (h, w, 3) or None,
#: and the function that turns the old canvas into the new one
Field = tuple[int, int, Callable[[np.ndarray], np.ndarray]]


def _curve_distance(points: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance of every pixel of an h x w canvas to a densely sampled curve, and
    the index of the nearest sample (for widths that vary along the curve)."""
    seeds = np.full((h, w), 255, np.uint8)
    ids = np.zeros((h, w), np.int32)
    pts = np.round(points).astype(int)
    ok = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
    idx = np.flatnonzero(ok)
    seeds[pts[idx, 1], pts[idx, 0]] = 0
    ids[pts[idx, 1], pts[idx, 0]] = idx
    dist, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, cv2.DIST_MASK_PRECISE,
                                                   labelType=cv2.DIST_LABEL_PIXEL)
    # labels number the zero pixels in scan order: map them back to sample indices
    zy, zx = np.nonzero(seeds == 0)
    lut = np.zeros(len(zy) + 1, np.int32)
    lut[1:] = ids[zy, zx]
    return dist, lut[labels]


def _densify(points: np.ndarray, step: float = 0.5) -> np.ndarray:
    """Resample a polyline so consecutive samples are at most ``step`` px apart."""
    seg = np.diff(points, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    out = [points[:1]]
    for p, d, n in zip(points[:-1], seg, np.ceil(lengths / step).astype(int), strict=True):
        t = (np.arange(1, max(n, 1) + 1) / max(n, 1))[:, None]
        out.append(p + t * d)
    return np.concatenate(out)


def _fractal(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, rough: float,
             depth: int = 6) -> np.ndarray:
    """Midpoint displacement between ``a`` and ``b``: each level moves midpoints sideways by
    up to ``rough`` x the segment length."""
    pts = np.stack([a, b]).astype(np.float64)
    for _ in range(depth):
        mids = (pts[:-1] + pts[1:]) / 2
        seg = pts[1:] - pts[:-1]
        normal = np.stack([-seg[:, 1], seg[:, 0]], 1)
        mids += normal * rng.uniform(-rough, rough, (len(mids), 1))
        out = np.empty((len(pts) + len(mids), 2))
        out[0::2], out[1::2] = pts, mids
        pts = out
    return pts


def _screen_or_multiply(strength: np.ndarray, bright: bool) -> Callable[[np.ndarray], np.ndarray]:
    s = strength[..., None].astype(np.float32)
    if bright:
        return lambda old: 255.0 - (255.0 - old) * (1.0 - s)  # screen toward white
    return lambda old: old * (1.0 - s)


def _scratch(rng: np.random.Generator) -> Field:
    length = rng.uniform(50, 220)
    width = rng.uniform(0.5, 1.5)  # Gaussian sigma: 1-3.5 px wide
    theta = rng.uniform(0, math.pi)
    t = np.linspace(-0.5, 0.5, 400)
    bend = (rng.uniform(-0.06, 0.06) * np.sin(math.pi * (t + 0.5) * rng.uniform(0.5, 1.5))
            + rng.uniform(-0.015, 0.015) * np.sin(2 * math.pi * (t + 0.5) * rng.uniform(2, 4)))
    local = np.stack([t * length, bend * length], 1)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    pts = local @ rot.T
    pad = 8
    lo = pts.min(0) - pad
    pts -= lo
    w, h = (np.ceil(pts.max(0)) + pad).astype(int)
    dist, _ = _curve_distance(pts, h, w)
    strength = rng.uniform(0.35, 0.75) * np.exp(-0.5 * (dist / width) ** 2)
    return h, w, _screen_or_multiply(strength, bright=rng.random() < 0.6)


def _stain(rng: np.random.Generator) -> Field:
    r = rng.uniform(10, 45)
    side = int(2 * r * 1.5) + 8
    yy, xx = (np.mgrid[0:side, 0:side] - side / 2).astype(np.float32)
    noise = cv2.GaussianBlur(rng.standard_normal((side, side)).astype(np.float32), (0, 0),
                             max(1.5, r / 4))
    noise /= noise.std() + 1e-6
    envelope = 1.0 - np.hypot(xx, yy) / r
    level = envelope + 0.35 * noise
    inside = np.clip(level / 0.15, 0, 1)  # soft edge about 0.15 of the radius wide
    ring = np.clip(1 - np.abs(level - 0.08) / 0.08, 0, 1)  # the drying ring at the edge
    if rng.random() < 0.5:  # a tint (rust, oil, coffee) in BGR gains
        gain = np.array(rng.choice([(0.55, 0.7, 0.95), (0.75, 0.85, 0.6), (0.6, 0.72, 0.85)]))
    else:  # neutral: darker or bleached
        gain = np.full(3, rng.choice([rng.uniform(0.45, 0.7), rng.uniform(1.3, 1.55)]))
    depth = rng.uniform(0.6, 1.0)
    g = 1.0 + (inside[..., None] * depth) * (gain - 1.0)
    g = g * (1.0 - 0.25 * ring[..., None])
    g = g.astype(np.float32)
    return side, side, lambda old: old * g


def _crack(rng: np.random.Generator) -> Field:
    length = rng.uniform(40, 160)
    theta = rng.uniform(0, 2 * math.pi)
    a = np.zeros(2)
    b = np.array([math.cos(theta), math.sin(theta)]) * length
    main = _fractal(rng, a, b, rough=rng.uniform(0.12, 0.25))
    paths = [main]
    for _ in range(int(rng.integers(0, 3))):
        start = main[int(rng.integers(len(main) // 5, 4 * len(main) // 5))]
        turn = theta + rng.choice([-1, 1]) * rng.uniform(0.4, 1.1)
        end = start + np.array([math.cos(turn), math.sin(turn)]) * length * rng.uniform(0.2, 0.45)
        paths.append(_fractal(rng, start, end, rough=0.2, depth=5))
    dense = [_densify(p) for p in paths]
    # width tapers from the middle of the main crack to its ends and along branches
    widths = [np.interp(np.linspace(0, 1, len(d)), [0, 0.5, 1], [0.4, 1.0, 0.4]) for d in dense]
    widths[1:] = [w * 0.6 for w in widths[1:]]
    pts = np.concatenate(dense)
    width = np.concatenate(widths) * rng.uniform(0.8, 1.8)
    pad = 8
    lo = pts.min(0) - pad
    pts = pts - lo
    w, h = (np.ceil(pts.max(0)) + pad).astype(int)
    dist, nearest = _curve_distance(pts, h, w)
    sigma = width[nearest]
    strength = rng.uniform(0.6, 0.9) * np.clip(1.2 - dist / (sigma + 0.5), 0, 1) ** 1.5
    return h, w, _screen_or_multiply(np.clip(strength, 0, 0.95), bright=False)


def _dent(rng: np.random.Generator) -> Field:
    a = rng.uniform(15, 55)
    b = a * rng.uniform(0.5, 1.0)
    rot = rng.uniform(0, math.pi)
    side = int(2 * a) + 10
    yy, xx = (np.mgrid[0:side, 0:side] - side / 2).astype(np.float32)
    u = (xx * math.cos(rot) + yy * math.sin(rot)) / a
    v = (-xx * math.sin(rot) + yy * math.cos(rot)) / b
    r = np.sqrt(u * u + v * v)
    height = np.where(r < 1, -0.5 * (1 + np.cos(math.pi * np.minimum(r, 1))), 0.0) * a * 0.35
    gy, gx = np.gradient(height.astype(np.float32))
    normal = np.stack([-gx, -gy, np.ones_like(gx)], -1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    phi = rng.uniform(0, 2 * math.pi)
    light = np.array([math.cos(phi), math.sin(phi), 1.2])
    light /= np.linalg.norm(light)
    lambert = normal @ light
    flat = light[2]
    gain = 1.0 + rng.uniform(1.2, 2.2) * (lambert - flat)
    g = np.repeat(gain[..., None], 3, -1).astype(np.float32)
    return side, side, lambda old: old * g


def _chip(rng: np.random.Generator) -> Field:
    r = rng.uniform(8, 30)
    side = int(2 * r * 1.4) + 10
    yy, xx = (np.mgrid[0:side, 0:side] - side / 2).astype(np.float32)
    ang = np.arctan2(yy, xx)
    radius = np.full_like(ang, r)
    for k in range(2, 7):  # star-shaped outline from a few Fourier terms
        radius += r * rng.uniform(0, 0.25 / k * 2) * np.cos(k * ang + rng.uniform(0, 2 * math.pi))
    inside = np.clip((radius - np.hypot(xx, yy)) / 1.2, 0, 1)[..., None].astype(np.float32)
    phi = rng.uniform(0, 2 * math.pi)
    lip = np.clip(1 - np.abs(np.hypot(xx, yy) - radius) / 1.5, 0, 1)
    lip *= np.clip(np.cos(ang - phi), 0, 1)
    lip = lip[..., None].astype(np.float32)
    darkness = rng.uniform(0.35, 0.6)

    def apply(old: np.ndarray) -> np.ndarray:
        fill = cv2.GaussianBlur(old, (0, 0), max(2.0, r / 3)) * darkness
        new = old * (1 - inside) + fill * inside
        return new + lip * (255 - new) * 0.6

    return side, side, apply


_RENDERERS = (_scratch, _stain, _crack, _dent, _chip)


def _free(box: tuple[int, int, int, int], taken: list[tuple[int, int, int, int]]) -> bool:
    x1, y1, x2, y2 = box
    return all(x2 + _GAP <= a1 or a2 + _GAP <= x1 or y2 + _GAP <= b1 or b2 + _GAP <= y1
               for a1, b1, a2, b2 in taken)


def render_defects(
    image: np.ndarray,
    rng: np.random.Generator,
    n: int = 1,
    *,
    classes: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` EVALUATION-ONLY defects on a copy of a BGR (or grey) uint8 ``image``.

    ``classes``: the class indices to choose from (into :data:`EVAL_CLASSES`; default all),
    drawn uniformly. Returns ``(image, boxes, classes, mask)`` (see the module docstring);
    a defect that finds no free place after a few tries, or changes no pixel, is left out.
    """
    grey = image.ndim == 2
    img = (image[..., None] if grey else image).astype(np.float32)
    h, w = img.shape[:2]
    choices = tuple(range(len(EVAL_CLASSES))) if classes is None else tuple(classes)
    mask = np.zeros((h, w), bool)
    boxes: list[tuple[int, int, int, int]] = []
    kinds: list[int] = []
    for _ in range(n):
        cls = int(choices[int(rng.integers(0, len(choices)))])
        for _try in range(_TRIES):
            ch, cw, apply = _RENDERERS[cls](rng)
            if ch + 4 > h or cw + 4 > w:
                continue
            x0, y0 = int(rng.integers(2, w - cw - 1)), int(rng.integers(2, h - ch - 1))
            if _free((x0, y0, x0 + cw, y0 + ch), boxes):
                break
        else:
            continue
        old = img[y0: y0 + ch, x0: x0 + cw]
        src = old if old.shape[-1] == 3 else np.repeat(old, 3, -1)
        new = np.clip(apply(src.copy()), 0, 255)
        if old.shape[-1] == 1:
            new = new.mean(-1, keepdims=True)
        changed = np.abs(new - old).max(-1) >= CHANGE_LEVELS
        if not changed.any():
            continue
        img[y0: y0 + ch, x0: x0 + cw] = np.where(changed[..., None], new, old)
        ys, xs = np.nonzero(changed)
        box = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1,
               y0 + int(ys.max()) + 1)
        mask[y0: y0 + ch, x0: x0 + cw] |= changed
        boxes.append(box)
        kinds.append(cls)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if grey:
        out = out[..., 0]
    return (out, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(kinds, np.int64),
            mask)
