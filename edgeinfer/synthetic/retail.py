"""SYNTHETIC retail video: a shop entrance with walking figures, and conveyors carrying parts.

Nothing here is filmed. Every frame comes from a seed:

- ``entrance``: a shop floor and shelves seen by a camera at a doorway or checkout; figures
  (coloured shoulders and a real head: the packaged ``face.jpg``, a public-domain NASA
  portrait, scaled to 190-300 px) cross the frame in groups, with stretches of empty scene
  between groups (what an idle mode is for). Ground truth: the face inside each head (the
  portrait's face box, scaled), when the face is wholly in the frame.
- ``conveyor``: a window sliding over generated inspection surfaces
  (:mod:`edgeinfer.synthetic.defects`), so that defects travel through the frame. Ground truth:
  the defect boxes and classes inside the window.

:func:`write_video` renders a scene to an MP4 (OpenCV ``mp4v``) plus a JSON-lines file of the
ground truth per frame, so a stream source can replay it at its frame rate.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.synthetic.defects import make_frame

SCENES = ("entrance", "conveyor")


@dataclass(frozen=True)
class SceneFrame:
    """One generated frame: BGR pixels, ground-truth boxes [N, 4] xyxy and class ids [N]."""

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray


def _face() -> np.ndarray:
    data = importlib.resources.files("edgeinfer").joinpath("data/face.jpg")
    with importlib.resources.as_file(data) as path:
        face = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if face is None:
        raise EdgeInferError(f"{path}: cannot read the packaged face image: reinstall edgeinfer")
    return face


def _shop_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Wall, floor, and shelves with boxes of goods."""
    img = np.empty((height, width, 3), np.uint8)
    horizon = int(height * rng.uniform(0.45, 0.6))
    wall = rng.integers(150, 215, 3)
    floor = rng.integers(70, 130, 3)
    img[:horizon] = wall
    img[horizon:] = floor
    for _ in range(int(rng.integers(2, 5))):  # shelves
        x0 = int(rng.integers(0, width - 80))
        w = int(rng.integers(60, 180))
        y1 = horizon - int(rng.integers(0, 20))
        y0 = y1 - int(rng.integers(80, horizon - 10))
        cv2.rectangle(img, (x0, max(0, y0)), (x0 + w, y1), (90, 90, 100), -1)
        for y in range(max(0, y0) + 8, y1 - 10, 28):
            x = x0 + 4
            while x < x0 + w - 14:
                bw = int(rng.integers(8, 22))
                colour = tuple(int(c) for c in rng.integers(30, 250, 3))
                cv2.rectangle(img, (x, y), (min(x + bw, x0 + w - 4), y + 20), colour, -1)
                x += bw + 2
    noise = rng.normal(0, 3, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


#: the face inside ``face.jpg`` (x1, y1, x2, y2), for the ground truth
FACE_IN_CROP = (38, 44, 125, 131)


@dataclass(frozen=True)
class _Walker:
    start: int  # frame it enters
    speed: float  # px per frame (sign: direction)
    top: int  # y of the head's top
    head_px: int  # head height
    colour: tuple[int, int, int]


def _walkers(rng: np.random.Generator, n_frames: int, width: int, height: int,
             fps: float) -> list[_Walker]:
    """Groups of 1-3 figures, each group entering after an empty stretch of 3-10 s."""
    out: list[_Walker] = []
    t = int(rng.uniform(1, 4) * fps)
    while t < n_frames:
        for _ in range(int(rng.integers(1, 4))):
            head = int(rng.integers(190, 301))
            speed = float(rng.uniform(4, 9)) * (1 if rng.random() < 0.5 else -1)
            top = int(rng.integers(0, max(1, height - head - 20)))
            colour = tuple(int(c) for c in rng.integers(20, 230, 3))
            out.append(_Walker(t + int(rng.integers(0, fps)), speed, top, head, colour))
        crossing = int((width + 600) / 4)  # the slowest figure's frames across the scene
        t += crossing + int(rng.uniform(3, 10) * fps)
    return out


def entrance_frames(
    seed: int, n_frames: int, fps: float = 15.0, width: int = 640, height: int = 480
) -> Iterator[SceneFrame]:
    """The entrance scene, frame by frame; ``boxes`` are the visible faces (class 0)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    background = _shop_background(rng, width, height)
    face = _face()
    walkers = _walkers(rng, n_frames, width, height, fps)
    scaled = {w.head_px: cv2.resize(face, (round(w.head_px * face.shape[1] / face.shape[0]),
                                           w.head_px), interpolation=cv2.INTER_AREA)
              for w in walkers}
    for k in range(n_frames):
        img = background.copy()
        boxes = []
        for w in sorted(walkers, key=lambda w: w.head_px):  # farther (smaller) first
            if k < w.start:
                continue
            head = scaled[w.head_px]
            fh, fw = head.shape[:2]
            travel = (k - w.start) * w.speed
            cx = int(-fw + travel) if w.speed > 0 else int(width + fw + travel)
            if cx + fw < 0 or cx - fw > width:
                continue
            shoulders = int(fw * 1.6)
            cv2.rectangle(img, (cx - shoulders // 2, w.top + int(fh * 0.85)),
                          (cx + shoulders // 2, height), w.colour, -1)
            x0, y0 = cx - fw // 2, w.top
            xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + fw, width), min(y0 + fh, height)
            if xb <= xa or yb <= ya:
                continue
            img[ya:yb, xa:xb] = head[ya - y0:yb - y0, xa - x0:xb - x0]
            s = fh / face.shape[0]
            fx1, fy1, fx2, fy2 = (x0 + FACE_IN_CROP[0] * s, y0 + FACE_IN_CROP[1] * s,
                                  x0 + FACE_IN_CROP[2] * s, y0 + FACE_IN_CROP[3] * s)
            if fx1 >= 0 and fy1 >= 0 and fx2 <= width and fy2 <= height:
                boxes.append((fx1, fy1, fx2, fy2))
        yield SceneFrame(img, np.asarray(boxes, np.float32).reshape(-1, 4),
                         np.zeros(len(boxes), np.int64))


def conveyor_frames(
    seed: int, n_frames: int, width: int = 640, height: int = 480, speed: int = 16
) -> Iterator[SceneFrame]:
    """A window sliding ``speed`` px per frame over generated inspection surfaces; ``boxes`` are
    the defects wholly inside the window, ``classes`` their classes (``defects.CLASSES``)."""
    strip, strip_boxes, strip_classes = _surface(seed, 0, height)
    part, x = 0, 0
    for _ in range(n_frames):
        while x + width > strip.shape[1]:  # extend the belt with the next generated part
            part += 1
            img, b, c = _surface(seed, part, height)
            shift = np.array([strip.shape[1] - x, 0, strip.shape[1] - x, 0], np.float32)
            strip_boxes = np.concatenate([strip_boxes - np.array([x, 0, x, 0], np.float32),
                                          b + shift])
            strip_classes = np.concatenate([strip_classes, c])
            strip, x = np.concatenate([strip[:, x:], img], axis=1), 0
            kept = strip_boxes[:, 2] > 0
            strip_boxes, strip_classes = strip_boxes[kept], strip_classes[kept]
        window = strip[:, x:x + width]
        b = strip_boxes - np.array([x, 0, x, 0], np.float32)
        inside = (b[:, 0] >= 0) & (b[:, 2] <= width)
        yield SceneFrame(np.ascontiguousarray(window), b[inside], strip_classes[inside])
        x += speed


def _surface(seed: int, part: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One generated inspection frame, cropped to ``height`` rows (defects cut by the crop
    dropped), as a piece of belt."""
    img, boxes, classes = make_frame(
        int(np.random.SeedSequence([seed, part, 2]).generate_state(1)[0]) % 10**9 + 10**9
    )
    y0 = (img.shape[0] - height) // 2
    keep = (boxes[:, 1] >= y0) & (boxes[:, 3] <= y0 + height)
    return (np.ascontiguousarray(img[y0:y0 + height]),
            boxes[keep] - np.array([0, y0, 0, y0], np.float32), classes[keep])


def write_video(
    scene: str, path: str | Path, seconds: float, fps: float = 15.0, seed: int = 0
) -> Path:
    """Render ``scene`` (``entrance`` or ``conveyor``) to an MP4 at ``path`` and its ground
    truth to ``path`` + ``.jsonl`` (one line per frame: boxes and classes)."""
    if scene not in SCENES:
        raise EdgeInferError(f"unknown scene '{scene}': choose one of {', '.join(SCENES)}")
    path = Path(path)
    n = max(1, round(seconds * fps))
    frames = entrance_frames(seed, n, fps) if scene == "entrance" else conveyor_frames(seed, n)
    writer = None
    try:
        with open(str(path) + ".jsonl", "w", encoding="utf-8") as truth:
            for f in frames:
                if writer is None:
                    h, w = f.image.shape[:2]
                    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                             (w, h))
                    if not writer.isOpened():
                        raise EdgeInferError(f"{path}: OpenCV cannot write this video: check "
                                             "the folder exists and is writable")
                writer.write(f.image)
                truth.write(json.dumps({"boxes": f.boxes.round(1).tolist(),
                                        "classes": f.classes.tolist()}) + "\n")
    finally:
        if writer is not None:
            writer.release()
    return path
