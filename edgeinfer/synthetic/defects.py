"""SYNTHETIC industrial-inspection frames: textured surfaces with labelled defects.

Nothing here is a photograph. Every frame is drawn from a seed: a brushed-metal or PCB-like
background, 3-12 defects of four classes, then lighting (gradient, vignetting, gain) and sensor
noise. Boxes are exact: each defect is rendered into its own patch, changes smaller than
:data:`CHANGE_THRESHOLD` grey levels are dropped, and the box is the bounding box of the pixels
the defect changed (``x2``/``y2`` exclusive, so ``x2 - x1`` is the width in pixels).

Classes (index order): ``scratch`` (thin, long, smooth bright or dark line), ``spot`` (round
soft blob), ``crack`` (jagged dark polyline with branches), ``dent`` (shaded ellipse: light on
the side facing the light, dark on the other).

``make_frame`` draws one 5 MP frame (2592x1944 by default) in a few hundred milliseconds;
``make_tiles`` crops training/evaluation tiles out of a series of frames. ``draw_defects``
draws the same defects onto ANY image (a photograph of the user's own surface), with exact
boxes: both go through :func:`place_defect` and :func:`apply_defect`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

CLASSES: tuple[str, ...] = ("scratch", "spot", "crack", "dent")

#: a defect changes a pixel when it moves one channel by at least this much (grey levels)
CHANGE_THRESHOLD = 2.0

#: training and test frames come from disjoint seed ranges: tiles of ``make_tiles(seed, ...)``
#: crop frames ``seed * FRAMES_PER_SEED + k`` (k = 0, 1, ...)
FRAMES_PER_SEED = 100_000

Frame = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class DefectPatch:
    """A rendered defect: the top-left corner of its canvas and how it changes the pixels."""

    x0: int
    y0: int
    alpha: np.ndarray  #: (h, w) blend weight toward ``color``, or None-like zeros for shading
    color: np.ndarray | None  #: (3,) BGR target of the blend, None for additive shading
    shade: np.ndarray | None  #: (h, w) additive change (grey levels), None for a blend


# --- backgrounds ------------------------------------------------------------------------------


def _low_freq(rng: np.random.Generator, h: int, w: int, cells: int, amp: float) -> np.ndarray:
    """Smooth random field (cubic upsampling of a coarse grid), about ``amp`` grey levels."""
    gh = max(2, round(cells * h / max(h, w)))
    gw = max(2, round(cells * w / max(h, w)))
    coarse = rng.standard_normal((gh, gw), dtype=np.float32) * np.float32(amp)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _brushed_metal(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Grey metal brushed along a random direction: noise blurred along one axis, rotated."""
    base = rng.uniform(85, 175)
    length = int(rng.integers(10, 30)) * 2 + 1
    sigma = rng.uniform(10, 22)
    noise = rng.standard_normal((h, w), dtype=np.float32)
    noise = cv2.blur(noise, (length, 1)) * np.float32(sigma * math.sqrt(length) / 3.0)
    rows = cv2.GaussianBlur(rng.standard_normal((h, 1), dtype=np.float32), (1, 5), 0)
    noise += rows * np.float32(rng.uniform(2, 6))  # streaks: whole lines a little lighter/darker
    angle = rng.uniform(0, 180)
    if abs(angle % 180) > 1:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        noise = cv2.warpAffine(noise, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
    gray = noise + _low_freq(rng, h, w, 6, rng.uniform(2, 8)) + np.float32(base)
    tint = (1.0 + rng.uniform(-0.05, 0.05, 3)).astype(np.float32)
    return gray[..., None] * tint


def _pcb(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Green solder mask with copper traces, metal pads, vias and silkscreen outlines."""
    mask_bgr = np.array([rng.uniform(25, 70), rng.uniform(90, 150), rng.uniform(20, 60)])
    img = np.empty((h, w, 3), np.float32)
    img[:] = mask_bgr
    area = h * w / (2592 * 1944)
    trace = tuple(float(c) for c in np.clip(mask_bgr * rng.uniform(1.2, 1.45), 0, 255))
    dirs = [(1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)]
    for _ in range(max(2, int(rng.integers(30, 90) * area))):
        p = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        pts = [p.copy()]
        for _ in range(int(rng.integers(2, 6))):
            d = dirs[int(rng.integers(0, 4 if rng.random() < 0.7 else 8))]
            p = p + np.array(d) * rng.uniform(60, 500)
            pts.append(p.copy())
        cv2.polylines(img, [np.array(pts, np.int32)], False, trace,
                      int(rng.integers(4, 13)), cv2.LINE_AA)
    metal = [(rng.uniform(175, 210),) * 3, (rng.uniform(50, 80), rng.uniform(150, 185),
                                            rng.uniform(190, 225))]
    pad_c = metal[int(rng.integers(0, 2))]
    for _ in range(max(1, int(rng.integers(6, 20) * area))):  # SMD rows of rectangular pads
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        pw, ph = rng.uniform(10, 30), rng.uniform(18, 50)
        vertical = rng.random() < 0.5
        step = max(pw, ph) * rng.uniform(1.6, 2.2)
        for i in range(int(rng.integers(4, 16))):
            dx, dy = (0, i * step) if vertical else (i * step, 0)
            a, b = (ph, pw) if vertical else (pw, ph)
            cv2.rectangle(img, (int(x + dx), int(y + dy)), (int(x + dx + a), int(y + dy + b)),
                          pad_c, -1)
    for _ in range(max(1, int(rng.integers(20, 70) * area))):  # vias
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        r = int(rng.integers(6, 14))
        cv2.circle(img, c, r, pad_c, -1, cv2.LINE_AA)
        cv2.circle(img, c, max(2, r // 2 - 1), (20, 25, 20), -1, cv2.LINE_AA)
    silk = (rng.uniform(215, 240),) * 3
    for _ in range(int(rng.integers(0, 7) * area + 0.5)):  # component outlines
        x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        cv2.rectangle(img, (x, y), (x + int(rng.uniform(150, 500)), y + int(rng.uniform(80, 300))),
                      silk, int(rng.integers(3, 5)))
    img = cv2.GaussianBlur(img, (3, 3), 0)
    img += rng.standard_normal((h, w), dtype=np.float32)[..., None] * np.float32(2.5)
    img += _low_freq(rng, h, w, 8, rng.uniform(2, 6))[..., None]
    return img


# --- defects ----------------------------------------------------------------------------------


def _canvas(points: np.ndarray, margin: int) -> tuple[int, int, int, int, np.ndarray]:
    """Integer canvas (x0, y0, w, h) around ``points`` and the points in canvas coordinates."""
    lo = np.floor(points.min(0)).astype(int) - margin
    hi = np.ceil(points.max(0)).astype(int) + margin
    return int(lo[0]), int(lo[1]), int(hi[0] - lo[0]), int(hi[1] - lo[1]), points - lo


def _polyline_alpha(paths: list[tuple[np.ndarray, int]], margin: int = 4) -> tuple:
    """Anti-aliased polylines (points, thickness) drawn at 1/16-pixel precision into one alpha."""
    allpts = np.concatenate([p for p, _ in paths])
    x0, y0, cw, ch, _ = _canvas(allpts, margin)
    alpha = np.zeros((ch, cw), np.uint8)
    for pts, thickness in paths:
        local = np.round((pts - (x0, y0)) * 16).astype(np.int32)
        cv2.polylines(alpha, [local], False, 255, thickness, cv2.LINE_AA, shift=4)
    return x0, y0, alpha.astype(np.float32) / 255.0


def _extent_ok(points: np.ndarray, min_side: float) -> bool:
    ext = points.max(0) - points.min(0)
    return bool(ext.min() >= min_side)


def _scratch(rng: np.random.Generator, cx: float, cy: float) -> DefectPatch:
    """A thin, long, gently curved line, bright (specular) or dark."""
    while True:
        length = rng.uniform(30, 120)
        theta = rng.uniform(0, math.pi)
        d = np.array([math.cos(theta), math.sin(theta)])
        n = np.array([-d[1], d[0]])
        bow = rng.uniform(-0.08, 0.08) * length
        t = np.linspace(0, 1, 24)[:, None]
        p0, p2 = -d * length / 2, d * length / 2
        p1 = n * 2 * bow
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2 + (cx, cy)
        if _extent_ok(pts, 8):
            break
    x0, y0, alpha = _polyline_alpha([(pts, int(rng.integers(1, 3)))])
    alpha *= rng.uniform(0.55, 0.9)
    bright = rng.random() < 0.5
    color = np.full(3, rng.uniform(225, 255) if bright else rng.uniform(5, 35))
    return DefectPatch(x0, y0, alpha, color, None)


def _spot(rng: np.random.Generator, cx: float, cy: float) -> DefectPatch:
    """A round, soft-edged blob of contamination or corrosion (10-44 px across)."""
    r = rng.uniform(5, 22)
    phi = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    rad = np.ones_like(phi)
    for k in (2, 3, 4):
        rad += rng.uniform(0, 0.07) * np.cos(k * phi + rng.uniform(0, 2 * math.pi))
    pts = np.stack([cx + r * rad * np.cos(phi), cy + r * rad * np.sin(phi)], 1)
    x0, y0, cw, ch, local = _canvas(pts, 6)
    mask = np.zeros((ch, cw), np.uint8)
    cv2.fillPoly(mask, [np.round(local * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(0.6, r * 0.2))
    alpha *= rng.uniform(0.6, 0.95)
    palette = [(20, 35, 60), (15, 15, 20), (30, 70, 140), (205, 210, 215), (40, 90, 110)]
    color = np.array(palette[int(rng.integers(0, len(palette)))], np.float64)
    return DefectPatch(x0, y0, alpha, color + rng.uniform(-10, 10, 3), None)


def _walk(rng: np.random.Generator, start: np.ndarray, theta: float, length: float) -> np.ndarray:
    """A jagged path: steps of 4-9 px, each turned up to about 35 degrees off ``theta``."""
    pts, p, done = [start], start.copy(), 0.0
    while done < length:
        step = rng.uniform(4, 9)
        a = theta + rng.normal(0, 0.6)
        p = p + step * np.array([math.cos(a), math.sin(a)])
        pts.append(p.copy())
        done += step
    return np.array(pts)


def _crack(rng: np.random.Generator, cx: float, cy: float) -> DefectPatch:
    """A jagged dark polyline with one to three shorter branches."""
    while True:
        length = rng.uniform(35, 110)
        theta = rng.uniform(0, 2 * math.pi)
        main = _walk(rng, np.zeros(2), theta, length)
        paths = [(main, int(rng.integers(1, 3)))]
        for _ in range(int(rng.integers(1, 4))):
            lo = len(main) // 5
            at = main[int(rng.integers(lo, max(lo + 1, 4 * len(main) // 5)))]
            turn = rng.uniform(0.5, 1.1) * (1 if rng.random() < 0.5 else -1)
            paths.append((_walk(rng, at, theta + turn, length * rng.uniform(0.25, 0.5)), 1))
        allpts = np.concatenate([p for p, _ in paths])
        if _extent_ok(allpts, 10) and (allpts.max(0) - allpts.min(0)).max() <= 120:
            break
    center = (allpts.max(0) + allpts.min(0)) / 2
    paths = [(p - center + (cx, cy), t) for p, t in paths]
    x0, y0, alpha = _polyline_alpha(paths)
    alpha *= rng.uniform(0.75, 0.95)
    return DefectPatch(x0, y0, alpha, np.full(3, rng.uniform(0, 25)), None)


def _dent(rng: np.random.Generator, cx: float, cy: float) -> DefectPatch:
    """A shallow elliptical depression under directional light: a shaded ellipse (20-120 px)."""
    a = rng.uniform(10, 60)
    b = a * rng.uniform(0.55, 1.0)
    rot = rng.uniform(0, math.pi)
    light = rng.uniform(0, 2 * math.pi)
    amp = rng.uniform(35, 70)
    half = math.ceil(a) + 3
    x0, y0 = int(cx) - half, int(cy) - half
    ys, xs = np.mgrid[0 : 2 * half + 1, 0 : 2 * half + 1].astype(np.float32)
    dx, dy = xs + x0 - cx, ys + y0 - cy
    u = (dx * math.cos(rot) + dy * math.sin(rot)) / a
    v = (-dx * math.sin(rot) + dy * math.cos(rot)) / b
    r2 = u * u + v * v
    inside = cv2.GaussianBlur((r2 <= 1).astype(np.float32), (3, 3), 0.7)
    # The surface of a paraboloid dent slopes linearly: the side facing the light brightens,
    # the far side darkens, and the whole floor is a little shadowed.
    ramp = (dx * math.cos(light) + dy * math.sin(light)) / a
    shade = (amp * ramp - 0.2 * amp) * inside
    return DefectPatch(x0, y0, np.zeros_like(shade), None, shade.astype(np.float32))


#: the renderer of each class, in :data:`CLASSES` order: ``render(rng, cx, cy) -> DefectPatch``
RENDER = (_scratch, _spot, _crack, _dent)

Box = tuple[int, int, int, int]


def place_defect(
    rng: np.random.Generator,
    cls: int,
    width: int,
    height: int,
    taken: list[Box],
    margin: float = 70,
    tries: int = 30,
) -> DefectPatch | None:
    """Render a defect of class ``cls`` at a random centre at least ``margin`` px from the
    image's edges, whose canvas lies inside the ``width`` x ``height`` image and keeps 6 px
    from every box in ``taken``; None when ``tries`` positions all fail."""
    for _attempt in range(tries):
        cx, cy = rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)
        patch = RENDER[cls](rng, cx, cy)
        ph, pw = patch.alpha.shape
        box = (patch.x0, patch.y0, patch.x0 + pw, patch.y0 + ph)
        inside = box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height
        if inside and not any(_overlap(box, b, 6) for b in taken):
            return patch
    return None


def defect_box(img: np.ndarray, patch: DefectPatch) -> Box | None:
    """The tight box ``patch`` would get in the float image ``img``, which is left unchanged."""
    ph, pw = patch.alpha.shape
    x0, y0 = patch.x0, patch.y0
    region = img[max(0, y0) : y0 + ph, max(0, x0) : x0 + pw].copy()
    local = DefectPatch(min(0, x0), min(0, y0), patch.alpha, patch.color, patch.shade)
    tight = apply_defect(region, local)
    if tight is None:
        return None
    ox, oy = max(0, x0), max(0, y0)
    return tight[0] + ox, tight[1] + oy, tight[2] + ox, tight[3] + oy


def apply_defect(img: np.ndarray, patch: DefectPatch) -> Box | None:
    """Draw ``patch`` into the float32 BGR image ``img`` in place; return its tight box
    (x1, y1, x2, y2; x2/y2 exclusive) or None when it changes no pixel by
    :data:`CHANGE_THRESHOLD`."""
    h, w = img.shape[:2]
    ph, pw = patch.alpha.shape
    x1, y1 = max(0, patch.x0), max(0, patch.y0)
    x2, y2 = min(w, patch.x0 + pw), min(h, patch.y0 + ph)
    if x2 <= x1 or y2 <= y1:
        return None
    sl = (slice(y1 - patch.y0, y2 - patch.y0), slice(x1 - patch.x0, x2 - patch.x0))
    old = img[y1:y2, x1:x2]
    if patch.color is not None:
        a = patch.alpha[sl][..., None]
        new = old + a * (patch.color.astype(np.float32) - old)
    else:
        new = old + patch.shade[sl][..., None]
    new = np.clip(new, 0, 255)
    changed = np.abs(new - old).max(-1) >= CHANGE_THRESHOLD
    if not changed.any():
        return None
    img[y1:y2, x1:x2] = np.where(changed[..., None], new, old)
    ys, xs = np.nonzero(changed)
    return x1 + int(xs.min()), y1 + int(ys.min()), x1 + int(xs.max()) + 1, y1 + int(ys.max()) + 1


# --- frames -----------------------------------------------------------------------------------


def make_frame(
    seed: int,
    width: int = 2592,
    height: int = 1944,
    *,
    background: str | None = None,
    n_defects: int | None = None,
    defects: bool = True,
) -> Frame:
    """Draw one SYNTHETIC inspection frame.

    Returns ``(image, boxes, classes)``: a BGR ``uint8`` image (height, width, 3), the defects'
    tight boxes as float32 ``[N, 4]`` (x1, y1, x2, y2; x2/y2 exclusive) and their class indices
    ``[N]`` (int64, into :data:`CLASSES`). ``background`` is ``"metal"``, ``"pcb"`` or None
    (chosen from the seed); ``n_defects`` defaults to 3-12 from the seed. ``defects=False``
    draws the very same frame without its defects (every other random choice unchanged), which
    is how the tests check that the boxes hold every changed pixel.
    """
    bg_ss, defect_ss, light_ss, noise_ss = np.random.SeedSequence(seed).spawn(4)
    bg_rng = np.random.default_rng(bg_ss)
    kind = background or ("metal" if bg_rng.random() < 0.5 else "pcb")
    if kind not in ("metal", "pcb"):
        raise ValueError(f"background must be 'metal' or 'pcb', not {kind!r}")
    img = (_brushed_metal if kind == "metal" else _pcb)(bg_rng, height, width)

    rng = np.random.default_rng(defect_ss)
    count = int(rng.integers(3, 13)) if n_defects is None else n_defects
    boxes: list[Box] = []
    classes: list[int] = []
    for _ in range(count):
        cls = int(rng.integers(0, len(CLASSES)))
        patch = place_defect(rng, cls, width, height, boxes)
        if patch is None:
            continue
        # defects=False: the box the defect would have had, without drawing it
        tight = apply_defect(img, patch) if defects else defect_box(img, patch)
        if tight is not None:
            boxes.append(tight)
            classes.append(cls)

    lrng = np.random.default_rng(light_ss)
    yy = (np.arange(height, dtype=np.float32) - height / 2) / (max(width, height) / 2)
    xx = (np.arange(width, dtype=np.float32) - width / 2) / (max(width, height) / 2)
    g = lrng.uniform(0, 0.25)
    phi = lrng.uniform(0, 2 * math.pi)
    ox, oy = lrng.uniform(-0.3, 0.3, 2)
    k = lrng.uniform(0, 0.45)
    light = (1 + g * (xx[None, :] * math.cos(phi) + yy[:, None] * math.sin(phi))) * (
        1 - k * ((xx[None, :] - ox) ** 2 + (yy[:, None] - oy) ** 2) / 2
    )
    light *= np.float32(lrng.uniform(0.8, 1.2))
    img *= light[..., None]
    nrng = np.random.default_rng(noise_ss)
    # Sensor noise: uniform (random bytes are ten times cheaper than normal draws), std 1.5-4.
    sigma = nrng.uniform(1.5, 4.0)
    noise = np.frombuffer(nrng.bytes(img.size), np.uint8).reshape(img.shape)
    img += noise.astype(np.float32) * np.float32(sigma / 73.9) - np.float32(127.5 * sigma / 73.9)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return (out, np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64))


def draw_defects(
    image: np.ndarray,
    rng: np.random.Generator | int,
    count: int | tuple[int, int] = (1, 4),
    *,
    classes: tuple[int, ...] | None = None,
    margin: float = 0,
    min_contrast: float = 0.0,
    soften: float = 0.0,
    taken: list[Box] | None = None,
) -> Frame:
    """Draw defects onto a copy of ANY BGR ``uint8`` image (a photograph of a surface).

    ``count`` defects (or lo..hi drawn from ``rng``) of the class indices ``classes`` (default:
    all of :data:`CLASSES`, uniformly) are rendered as in :func:`make_frame`, at random places
    whose canvas lies inside the image, ``margin`` px from its edges and 6 px from each other
    and from the boxes in ``taken``. A defect whose changed pixels move by less than
    ``min_contrast`` grey levels on average (a bright scratch on a bright spot) is left out.
    ``soften`` blurs each defect (not the image) by a Gaussian of sigma drawn from 0..soften
    px: real defects have soft edges. Sizes are in pixels of ``image`` (10-120 px, as on the
    generator's 640 px tiles).

    Returns ``(image, boxes, classes)`` like :func:`make_frame`, and the boxes are as exact:
    every pixel that differs from ``image`` lies in a box, and every box is tight.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"draw_defects takes a BGR uint8 image (H, W, 3), not {image.shape} "
                         f"{image.dtype}")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    kinds = tuple(range(len(CLASSES))) if classes is None else tuple(classes)
    n = count if isinstance(count, int) else int(rng.integers(count[0], count[1] + 1))
    height, width = image.shape[:2]
    img = image.astype(np.float32)
    boxes: list[Box] = []
    drawn: list[int] = []
    others = list(taken or [])
    for _ in range(n):
        cls = kinds[int(rng.integers(0, len(kinds)))]
        patch = place_defect(rng, cls, width, height, others + boxes, margin=margin)
        if patch is None:
            continue
        if soften > 0:
            patch = _soft(patch, rng.uniform(0, soften), width, height)
        tight = _draw_visible(img, patch, min_contrast)
        if tight is not None:
            boxes.append(tight)
            drawn.append(cls)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return out, np.array(boxes, np.float32).reshape(-1, 4), np.array(drawn, np.int64)


def _soft(patch: DefectPatch, sigma: float, width: int, height: int) -> DefectPatch:
    """``patch`` blurred by a Gaussian of ``sigma`` px, its canvas grown to hold the blur and
    kept inside the ``width`` x ``height`` image."""
    if sigma < 0.3:
        return patch
    pad = math.ceil(3 * sigma)
    ph, pw = patch.alpha.shape
    x0, y0 = max(0, patch.x0 - pad), max(0, patch.y0 - pad)
    x1, y1 = min(width, patch.x0 + pw + pad), min(height, patch.y0 + ph + pad)

    def grow(a: np.ndarray) -> np.ndarray:
        out = np.zeros((y1 - y0, x1 - x0), np.float32)
        out[patch.y0 - y0 : patch.y0 - y0 + ph, patch.x0 - x0 : patch.x0 - x0 + pw] = a
        return cv2.GaussianBlur(out, (0, 0), sigma)

    shade = None if patch.shade is None else grow(patch.shade)
    alpha = grow(patch.alpha) if patch.color is not None else np.zeros((y1 - y0, x1 - x0),
                                                                       np.float32)
    return DefectPatch(x0, y0, alpha, patch.color, shade)


def _draw_visible(img: np.ndarray, patch: DefectPatch, min_contrast: float) -> Box | None:
    """:func:`apply_defect` when the defect changes its pixels by ``min_contrast`` on average
    (measured on a copy first), else None and ``img`` unchanged."""
    if min_contrast <= 0:
        return apply_defect(img, patch)
    ph, pw = patch.alpha.shape
    sl = (slice(patch.y0, patch.y0 + ph), slice(patch.x0, patch.x0 + pw))
    region = img[sl].copy()
    local = DefectPatch(0, 0, patch.alpha, patch.color, patch.shade)
    tight = apply_defect(region, local)
    if tight is None:
        return None
    change = np.abs(region - img[sl]).max(-1)
    if float(change[change >= CHANGE_THRESHOLD].mean()) < min_contrast:
        return None
    img[sl] = region
    return (tight[0] + patch.x0, tight[1] + patch.y0, tight[2] + patch.x0, tight[3] + patch.y0)


def _overlap(a: tuple[int, ...], b: tuple[int, ...], margin: int) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0]
                or a[3] + margin <= b[1] or b[3] + margin <= a[1])


# --- tiles ------------------------------------------------------------------------------------


def crop(frame: Frame, x: int, y: int, tile: int, min_visible: float = 0.6) -> Frame:
    """Cut a ``tile`` x ``tile`` crop at (x, y): boxes clipped to it, those with less than
    ``min_visible`` of their area inside dropped."""
    img, boxes, classes = frame
    sub = img[y : y + tile, x : x + tile]
    b = boxes - np.array([x, y, x, y], np.float32)
    clipped = np.clip(b, 0, tile)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    vis = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = vis >= min_visible * np.maximum(area, 1)
    return sub.copy(), clipped[keep], classes[keep]


def _cuts(boxes: np.ndarray, x: int, y: int, tile: int) -> bool:
    """Whether the crop at (x, y) cuts through any box (touches it without holding it)."""
    if not len(boxes):
        return False
    x1, y1, x2, y2 = boxes.T
    hit = (x2 > x) & (x1 < x + tile) & (y2 > y) & (y1 < y + tile)
    whole = (x1 >= x) & (x2 <= x + tile) & (y1 >= y) & (y2 <= y + tile)
    return bool((hit & ~whole).any())


def frame_tiles(
    frame: Frame,
    count: int,
    tile: int,
    rng: np.random.Generator,
    p_defect: float = 0.75,
) -> list[Frame]:
    """``count`` crops of one frame: with probability ``p_defect`` around a randomly chosen
    defect (placed at a random spot in the tile), otherwise anywhere. Positions avoid cutting
    through defects where they can (up to 20 tries); a defect cut anyway keeps its clipped box
    when at least 60% of it is inside the crop."""
    height, width = frame[0].shape[:2]
    boxes = frame[1]
    out = []
    for _ in range(count):
        for _try in range(20):
            if len(boxes) and rng.random() < p_defect:
                bx = boxes[int(rng.integers(0, len(boxes)))]
                lo_x, hi_x = max(0, int(bx[2]) - tile), min(width - tile, int(bx[0]))
                lo_y, hi_y = max(0, int(bx[3]) - tile), min(height - tile, int(bx[1]))
                x = int(rng.integers(lo_x, max(lo_x, hi_x) + 1))
                y = int(rng.integers(lo_y, max(lo_y, hi_y) + 1))
            else:
                x = int(rng.integers(0, width - tile + 1))
                y = int(rng.integers(0, height - tile + 1))
            if not _cuts(boxes, x, y, tile):
                break
        out.append(crop(frame, x, y, tile))
    return out


def make_tiles(
    seed: int,
    n: int,
    tile: int = 640,
    *,
    per_frame: int = 4,
    p_defect: float = 0.75,
    start: int = 0,
    frame_defects: tuple[int, int] | None = None,
    width: int = 2592,
    height: int = 1944,
) -> Iterator[Frame]:
    """Yield ``n`` SYNTHETIC ``tile`` x ``tile`` crops ``(image, boxes, classes)``.

    Crops come ``per_frame`` at a time (see :func:`frame_tiles`) from frames
    ``seed * FRAMES_PER_SEED + k`` for ``k = start, start + 1, ...``, so different seeds never
    share a frame and disjoint ``start`` ranges split one seed's series into independent
    chunks. ``frame_defects=(lo, hi)`` draws lo..hi defects per frame instead of the frames'
    own 3-12 (the training set uses more, which gives more distinct defects per generated
    frame). Deterministic for a given argument list.
    """
    if not 0 <= seed < 2**63 // FRAMES_PER_SEED:
        raise ValueError(f"seed must be a non-negative integer below {2**63 // FRAMES_PER_SEED}")
    made, k = 0, start
    while made < n:
        rng = np.random.default_rng(np.random.SeedSequence([seed, k, tile, per_frame]))
        count = None if frame_defects is None else int(rng.integers(frame_defects[0],
                                                                    frame_defects[1] + 1))
        frame = make_frame(seed * FRAMES_PER_SEED + k, width, height, n_defects=count)
        k += 1
        for item in frame_tiles(frame, min(per_frame, n - made), tile, rng, p_defect):
            yield item
            made += 1
