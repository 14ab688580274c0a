"""Output decoders, chosen by name from an artifact's manifest (a registry, filled at import).

Each decoder takes the model's raw outputs (a list of arrays, in output order), the manifest's
``decoder_params``, the preprocessing transform and the labels. ``classification`` returns a
list of dicts; the detection decoders (``yolo``, ``blazeface``, ``db``) return
:class:`~edgeinfer.vision.boxes.Detections` in original-image pixels
(``Detections.to_dicts()`` gives JSON-ready values); ``ctc``, ``landmarks`` and ``raw`` return
the results of :mod:`edgeinfer.vision.results`; ``anomaly`` returns an
:class:`~edgeinfer.vision.anomaly.AnomalyResult` (image score, verdict, regions).

A decoder registered with a :class:`~edgeinfer.vision.layouts.OutputLayout` checks the outputs
it is given against it first and refuses a mismatch in one line that names the decoder, the
outputs it saw and the decoders whose layouts they fit (:func:`check_outputs`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import cv2
import numpy as np

from edgeinfer.errors import EdgeInferError, ShapeError
from edgeinfer.vision import layouts as lay
from edgeinfer.vision.anomaly import AnomalyResult, decode_anomaly_map
from edgeinfer.vision.boxes import Detections, box_area
from edgeinfer.vision.layouts import DecoderMismatchError, Dims, OutputLayout
from edgeinfer.vision.nms import nms
from edgeinfer.vision.preprocess import Transform
from edgeinfer.vision.results import LandmarksResult, RawResult, TextResult

Decoder = Callable[[Sequence[np.ndarray], dict[str, Any], Transform, Sequence[str] | None], Any]
#: the signature of the detection decoders: a Decoder whose result is Detections
DetectionDecoder = Callable[
    [Sequence[np.ndarray], dict[str, Any], Transform, Sequence[str] | None], Detections
]
DECODERS: dict[str, Decoder] = {}
#: decoder name -> the output layout it reads (decoders registered without one are unchecked)
DECODER_LAYOUTS: dict[str, OutputLayout] = {}


def register_decoder(name: str, layout: OutputLayout | None = None
                     ) -> Callable[[Decoder], Decoder]:
    """Register a decoder under ``name``; with ``layout``, the registered function checks its
    outputs against it before decoding (:func:`check_outputs`)."""

    def deco(fn: Decoder) -> Decoder:
        if layout is None:
            DECODERS[name] = fn
            return fn
        DECODER_LAYOUTS[name] = layout

        @functools.wraps(fn)
        def checked(outputs: Sequence[np.ndarray], params: dict[str, Any],
                    transform: Transform, labels: Sequence[str] | None = None) -> Any:
            check_outputs(name, lay.shapes_of(outputs), params, labels)
            return fn(outputs, params, transform, labels)

        DECODERS[name] = checked
        return checked

    return deco


def fitting_decoders(shapes: Sequence[Dims], labels: Sequence[str] | None = None,
                     input_shape: Dims | None = None) -> list[str]:
    """The decoders whose declared layout ``shapes`` fit with default parameters (decoders
    that need labels are tried with ``labels``)."""
    return sorted(n for n, layout in DECODER_LAYOUTS.items()
                  if layout.problem(shapes, {}, labels, input_shape) is None)


def check_outputs(name: str, shapes: Sequence[Dims], params: dict[str, Any] | None = None,
                  labels: Sequence[str] | None = None, input_shape: Dims | None = None) -> None:
    """A one-line :class:`DecoderMismatchError` when outputs of ``shapes`` do not fit the
    layout decoder ``name`` reads: the decoder, its layout, the outputs seen, the reason and
    the decoders that would fit."""
    layout = DECODER_LAYOUTS.get(name)
    if layout is None:
        return
    problem = layout.problem(shapes, params, labels, input_shape)
    if problem is None:
        return
    fits = [n for n in fitting_decoders(shapes, labels, input_shape) if n != name]
    raise DecoderMismatchError(
        f"decoder '{name}' reads {layout.text}; the model gives {len(shapes)} output(s) "
        f"{lay.format_shapes(shapes)} ({problem}): decoders that fit: {', '.join(fits)} "
        "(set it with `edgeinfer import MODEL -o ARTIFACT --decoder NAME`)"
    )


def get_decoder(name: str) -> Decoder:
    """Look up a decoder by name, with an error listing the known ones."""
    try:
        return DECODERS[name]
    except KeyError:
        raise EdgeInferError(
            f"unknown decoder '{name}': known decoders are {sorted(DECODERS)}"
        ) from None


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def is_probabilities(scores: np.ndarray, tol: float = 1e-3) -> bool:
    """Whether ``scores`` already are a probability distribution (in 0..1, summing to 1):
    the output of a model that ends in softmax."""
    s = np.asarray(scores, np.float64)
    return bool(s.size) and s.min() >= -tol and s.max() <= 1 + tol and abs(s.sum() - 1) <= tol


@register_decoder("classification", OutputLayout(
    "output 0 with one score per class ([1, C])", lay.class_vector))
def decode_classification(
    outputs: Sequence[np.ndarray],
    params: dict[str, Any],
    transform: Transform,
    labels: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Top-k classes of output 0. ``softmax``: ``auto`` (default) applies softmax unless the
    scores already are probabilities (in 0..1, summing to 1: a model ending in softmax);
    True always (logits); False never (scores shown as the model gives them)."""
    scores = np.asarray(outputs[0], np.float32).reshape(-1)
    mode = params.get("softmax", "auto")
    apply = not is_probabilities(scores) if mode == "auto" else bool(mode)
    probs = softmax(scores) if apply else scores
    k = int(params.get("top_k", 5))
    top = np.argsort(-probs)[:k]
    return [
        {
            "class_id": int(i),
            "label": labels[i] if labels and i < len(labels) else str(int(i)),
            "score": float(probs[i]),
        }
        for i in top
    ]


# --- detection helpers -----------------------------------------------------------------------


def _param(params: dict[str, Any], names: Sequence[str], default: Any) -> Any:
    """The first of ``names`` present in ``params`` (aliases: our names, then the zoo's)."""
    for name in names:
        if params.get(name) is not None:
            return params[name]
    return default


def boxes_to_image(boxes: np.ndarray, transform: Transform) -> np.ndarray:
    """Map ``[N, 4]`` x1 y1 x2 y2 boxes from input-tensor pixels to original-image pixels."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    scale = np.array([transform.scale_x, transform.scale_y] * 2, np.float32)
    pad = np.array([transform.pad_x, transform.pad_y] * 2, np.float32)
    return (b - pad) / scale


def _image_size(params: dict[str, Any], transform: Transform) -> tuple[int, int] | None:
    """(width, height) of the original image: ``params['image_size']`` else the transform's."""
    size = params.get("image_size")
    if size is not None:
        w, h = size
        return int(w), int(h)
    if transform.image_width is not None and transform.image_height is not None:
        return transform.image_width, transform.image_height
    return None


def _finish(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    labels: Sequence[str] | None,
    params: dict[str, Any],
    transform: Transform,
) -> Detections:
    """Tensor-pixel boxes -> Detections in the original image, clipped when its size is known;
    boxes left without area (entirely in the padding) are dropped."""
    det = Detections(boxes_to_image(boxes, transform), scores, class_ids, labels)
    size = _image_size(params, transform)
    if size is not None:
        det = det.clipped(*size)
        det = det.select(box_area(det.boxes) > 0)
    return det


# --- YOLO (anchor-free, v8 head) -------------------------------------------------------------


def _yolo_rows(out: np.ndarray, num_classes: int | None) -> np.ndarray:
    """YOLO output 0 as ``[N, 4 + C]`` rows, whichever axis holds the 4 + C values."""
    a = np.asarray(out)
    if a.ndim == 3:
        if a.shape[0] != 1:
            raise ShapeError(f"yolo decoder: output batch {a.shape[0]}, decode one image at once")
        a = a[0]
    if a.ndim != 2:
        raise ShapeError(
            f"yolo decoder: output 0 has shape {list(np.shape(out))}, expected [1, 4 + C, N] "
            "or [1, N, 4 + C]"
        )
    if num_classes is not None:
        width = 4 + num_classes
        if a.shape[0] == width:
            return a.T
        if a.shape[1] == width:
            return a
        raise ShapeError(
            f"yolo decoder: output 0 has shape {list(np.shape(out))}, no axis of 4 + "
            f"{num_classes} classes: set decoder_params.num_classes or the labels to match"
        )
    return a.T if a.shape[0] <= a.shape[1] else a


@register_decoder("yolo", OutputLayout(
    "1 output [1, 4 + C, N] or [1, N, 4 + C] (v8-style head)", lay.yolo_head))
def decode_yolo(
    outputs: Sequence[np.ndarray],
    params: dict[str, Any],
    transform: Transform,
    labels: Sequence[str] | None = None,
) -> Detections:
    """Anchor-free YOLO (v8-style head): output 0 ``[1, 4 + C, N]`` or ``[1, N, 4 + C]`` with
    rows ``cx, cy, w, h`` in input-tensor pixels and C class scores in 0..1.

    Each anchor keeps its best class; ``conf_threshold`` (0.25) filters, NMS at
    ``iou_threshold`` (0.45) runs in tensor pixels per class (``class_agnostic``: False) and
    keeps ``max_detections`` (300). C comes from ``num_classes``, else the labels, else the
    smaller axis.
    """
    num_classes = params.get("num_classes")
    if num_classes is None and labels:
        num_classes = len(labels)
    rows = _yolo_rows(outputs[0], None if num_classes is None else int(num_classes))
    if rows.shape[1] < 5:
        raise ShapeError(f"yolo decoder: rows of {rows.shape[1]} values, need 4 box + classes")
    cls_scores = rows[:, 4:]
    class_ids = cls_scores.argmax(1)
    scores = cls_scores[np.arange(len(rows)), class_ids]
    conf = float(_param(params, ("conf_threshold", "score_threshold"), 0.25))
    cand = np.flatnonzero(scores >= conf)
    cx, cy, w, h = rows[cand, :4].T.astype(np.float32)
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    keep = nms(
        boxes,
        scores[cand],
        float(params.get("iou_threshold", 0.45)),
        class_ids=None if params.get("class_agnostic", False) else class_ids[cand],
        max_detections=int(params.get("max_detections", 300)),
    )
    return _finish(
        boxes[keep], scores[cand][keep], class_ids[cand][keep], labels, params, transform
    )


# --- BlazeFace (MediaPipe) -------------------------------------------------------------------

#: MediaPipe's SSD anchor options for the BlazeFace models: input size, (stride, anchors per
#: cell) after merging the layers of equal stride; anchor offset 0.5, fixed anchor size 1.
BLAZEFACE_VARIANTS: dict[str, tuple[int, tuple[tuple[int, int], ...]]] = {
    "short_range": (128, ((8, 2), (16, 6))),  # 16*16*2 + 8*8*6 = 896 anchors
    "full_range": (192, ((4, 1),)),  # 48*48 = 2304 anchors
}


@cache
def blazeface_anchors(
    input_size: int = 128, layers: tuple[tuple[int, int], ...] = ((8, 2), (16, 6))
) -> np.ndarray:
    """Anchor centres ``[A, 2]`` (x, y in 0..1) of MediaPipe's SsdAnchorsCalculator with
    ``fixed_anchor_size`` (every anchor is 1 x 1), in the model's output order."""
    parts = []
    for stride, per_cell in layers:
        n = -(-input_size // stride)
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        centres = np.stack([(xs + 0.5) / n, (ys + 0.5) / n], axis=-1).reshape(-1, 2)
        parts.append(np.repeat(centres, per_cell, axis=0))
    anchors = np.concatenate(parts).astype(np.float32)
    anchors.flags.writeable = False
    return anchors


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function (float64 inside: no overflow for logits down to -700)."""
    x = np.asarray(x)
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.result_type(x, np.float32))


def _blazeface_anchor_count(params: dict[str, Any]) -> int:
    variant = params.get("variant", "short_range")
    if variant not in BLAZEFACE_VARIANTS:
        raise EdgeInferError(f"unknown variant '{variant}'")
    size, layers = BLAZEFACE_VARIANTS[variant]
    return len(blazeface_anchors(size, layers))


@register_decoder("blazeface", OutputLayout(
    "2 outputs, expected regressors [1, A, 16] and scores [1, A, 1]",
    lay.blazeface_pair(_blazeface_anchor_count)))
def decode_blazeface(
    outputs: Sequence[np.ndarray],
    params: dict[str, Any],
    transform: Transform,
    labels: Sequence[str] | None = None,
) -> Detections:
    """MediaPipe BlazeFace: regressors ``[1, A, 16]`` and score logits ``[1, A, 1]`` (told apart
    by shape) -> face boxes (class 0, ``face``).

    A box is ``(x_centre, y_centre, w, h)`` / input size relative to its anchor; the score is
    the sigmoid of the logit clipped to +-100. Faces scoring ``score_threshold`` (0.5) or more
    go through plain greedy NMS at ``iou_threshold`` (0.3); MediaPipe blends overlapping boxes
    (weighted NMS) instead, so boxes differ slightly from MediaPipe's, the faces found do not.
    ``variant`` is ``short_range`` (128 px, 896 anchors; default) or ``full_range``. The six
    keypoints are not returned.
    """
    variant = params.get("variant", "short_range")
    if variant not in BLAZEFACE_VARIANTS:
        raise EdgeInferError(
            f"blazeface decoder: unknown variant '{variant}': use one of "
            f"{sorted(BLAZEFACE_VARIANTS)}"
        )
    size, layers = BLAZEFACE_VARIANTS[variant]
    anchors = blazeface_anchors(size, layers)
    regressors = logits = None
    for out in outputs:
        a = np.asarray(out)
        a = a.reshape(-1, a.shape[-1]) if a.ndim else a
        if a.ndim == 2 and a.shape[0] == len(anchors) and a.shape[1] >= 4:
            regressors = a
        elif a.ndim == 2 and a.shape[0] == len(anchors) and a.shape[1] == 1:
            logits = a[:, 0]
    if regressors is None or logits is None:
        raise ShapeError(
            f"blazeface decoder ({variant}): outputs {[list(np.shape(o)) for o in outputs]}, "
            f"expected regressors [1, {len(anchors)}, 16] and scores [1, {len(anchors)}, 1]"
        )
    scores = sigmoid(np.clip(logits.astype(np.float32), -100.0, 100.0))
    thresh = float(_param(params, ("score_threshold", "score_thresh"), 0.5))
    cand = np.flatnonzero(scores >= thresh)
    r = regressors[cand, :4].astype(np.float32) / size
    cx = r[:, 0] + anchors[cand, 0]
    cy = r[:, 1] + anchors[cand, 1]
    boxes = np.stack([cx - r[:, 2] / 2, cy - r[:, 3] / 2, cx + r[:, 2] / 2, cy + r[:, 3] / 2], 1)
    boxes *= size  # normalised -> input-tensor pixels
    keep = nms(
        boxes,
        scores[cand],
        float(_param(params, ("iou_threshold", "iou_thresh"), 0.3)),
        max_detections=params.get("max_detections"),
    )
    return _finish(
        boxes[keep],
        scores[cand][keep],
        np.zeros(len(keep), np.int64),
        labels or ("face",),
        params,
        transform,
    )


# --- DB text detection (PP-OCR) --------------------------------------------------------------


def _box_score(prob: np.ndarray, poly: np.ndarray) -> float:
    """Mean of ``prob`` inside polygon ``poly`` ([K, 2] pixel coordinates), over its bounding
    box only (PaddleOCR's ``box_score_fast``/``box_score_slow``)."""
    h, w = prob.shape
    xmin = int(np.clip(np.floor(poly[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(poly[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(poly[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(poly[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), np.uint8)
    shifted = (poly - [xmin, ymin]).astype(np.int32).reshape(1, -1, 2)
    cv2.fillPoly(mask, shifted, 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


@register_decoder("db", OutputLayout(
    "a probability map [1, 1, H, W] (or [1, H, W, 1]) as output 0", lay.probability_map))
def decode_db(
    outputs: Sequence[np.ndarray],
    params: dict[str, Any],
    transform: Transform,
    labels: Sequence[str] | None = None,
) -> Detections:
    """PP-OCR DB text detection: probability map ``[1, 1, H, W]`` (or ``[1, H, W, 1]``, channels
    last as a TFLite conversion gives it) -> axis-aligned text boxes
    (class 0, ``text``) in reading order (top to bottom, then left to right).

    As PaddleOCR's ``DBPostProcess``: ``prob > thresh`` (0.3); each contour (at most
    ``max_candidates``, 1000) gives its min-area rectangle; shorter side under ``min_size`` (3)
    goes; score = mean probability inside the rectangle (``score_mode`` ``fast``, default) or
    the contour (``slow``); below ``box_thresh`` (0.6) goes; the rectangle is unclipped by
    ``offset = area * unclip_ratio / perimeter`` (1.5) on every side and dropped if its shorter
    side is then under ``min_size + 2``. PaddleOCR offsets the polygon with pyclipper; for a
    rectangle that is the same rectangle grown by ``offset`` with rounded corners, whose
    min-area rectangle is exactly the rectangle grown by ``offset`` on each side (both its area
    and its perimeter are smallest unrotated), so pyclipper is not needed (it also rounds to
    integer pixels; we do not). The result is the axis-aligned bounding box of the (possibly
    rotated) rectangle.
    """
    prob = np.asarray(outputs[0], np.float32)
    if prob.ndim == 4 and prob.shape[1] != 1 and prob.shape[3] == 1:
        prob = prob[..., 0]  # channels last, as a TFLite conversion gives it
    if prob.ndim < 2 or prob.size != prob.shape[-2] * prob.shape[-1]:
        raise ShapeError(
            f"db decoder: output 0 has shape {list(np.shape(outputs[0]))}, expected a "
            "probability map [1, 1, H, W]"
        )
    prob = prob.reshape(prob.shape[-2:])
    thresh = float(params.get("thresh", 0.3))
    box_thresh = float(params.get("box_thresh", 0.6))
    ratio = float(params.get("unclip_ratio", 1.5))
    min_size = float(params.get("min_size", 3))
    max_candidates = int(params.get("max_candidates", 1000))
    slow = params.get("score_mode", "fast") == "slow"

    bitmap = (prob > thresh).astype(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes, scores = [], []
    for contour in contours[:max_candidates]:
        centre, (rw, rh), angle = cv2.minAreaRect(contour)
        if min(rw, rh) < min_size:
            continue
        poly = contour.reshape(-1, 2) if slow else cv2.boxPoints((centre, (rw, rh), angle))
        score = _box_score(prob, poly.astype(np.float32))
        if score < box_thresh:
            continue
        offset = rw * rh * ratio / (2 * (rw + rh))
        rw, rh = rw + 2 * offset, rh + 2 * offset
        if min(rw, rh) < min_size + 2:
            continue
        corners = cv2.boxPoints((centre, (rw, rh), angle))
        boxes.append([*corners.min(0), *corners.max(0)])
        scores.append(score)
    if not boxes:
        return Detections.empty(labels or ("text",))
    b = np.asarray(boxes, np.float32)
    order = np.lexsort((b[:, 0], b[:, 1]))
    return _finish(
        b[order],
        np.asarray(scores, np.float32)[order],
        np.zeros(len(b), np.int64),
        labels or ("text",),
        params,
        transform,
    )


# --- CTC text recognition (PP-OCR rec) -------------------------------------------------------


@register_decoder("ctc", OutputLayout(
    "output 0 [1, T, C]: per time step, blank + the charset's characters", lay.ctc_sequence))
def decode_ctc(
    outputs: Sequence[np.ndarray],
    params: dict[str, Any],
    transform: Transform,
    labels: Sequence[str] | None = None,
) -> TextResult:
    """Greedy CTC: output 0 ``[1, T, C]`` (probabilities or logits) -> the best class per
    step, repeats collapsed, blanks dropped. Class ``blank`` (0) is the CTC blank; class i
    (1..K) is line i of the labels file (the charset, one character per line); with
    ``append_space`` (True, as PaddleOCR's ``use_space_char``) class K + 1 is a space. The
    score is the mean probability of the kept steps (softmax applied to logits)."""
    if labels is None:
        raise EdgeInferError(
            "ctc decoder: no character set: give it as the labels file (`edgeinfer import "
            "MODEL -o ARTIFACT --decoder ctc --labels CHARSET.txt`, one character per line)"
        )
    seq = np.asarray(outputs[0], np.float32).reshape(np.shape(outputs[0])[-2:])
    probs = seq if is_probabilities(seq[0]) else softmax(seq, axis=-1)
    chars = list(labels or ()) + ([" "] if params.get("append_space", True) else [])
    blank = int(params.get("blank", 0))
    best = probs.argmax(-1)
    keep = (best != blank) & np.concatenate([[True], best[1:] != best[:-1]])
    idx = best[keep]
    # padding around a short line reads as spaces at its ends: not part of the text
    text = "".join(chars[i - 1 if i > blank else i] for i in idx).strip()
    score = float(probs[np.flatnonzero(keep), idx].mean()) if len(idx) else 0.0
    return TextResult(text, score)


# --- landmarks (face mesh, hand and pose landmarks) ------------------------------------------


@register_decoder("landmarks", OutputLayout(
    "output 0 with K points of D = 2 or 3 coordinates ([1, K, D], [1, 1, 1, K*D], or [1, K*D] "
    "beside a presence score)", lay.point_set))
def decode_landmarks(
    outputs: Sequence[np.ndarray],
    params: dict[str, Any],
    transform: Transform,
    labels: Sequence[str] | None = None,
) -> LandmarksResult:
    """Output 0 as K points of ``dims`` coordinates (3 when the size divides by 3, else 2;
    MediaPipe's face mesh gives 468 x 3) in input-tensor pixels, or in 0..1 of the input with
    ``normalized`` and ``input_size`` [w, h]; mapped back to original-image pixels. A further
    output holding one value is the presence score (a logit unless it lies in 0..1)."""
    flat = np.asarray(outputs[0], np.float32).reshape(-1)
    dims = int(params.get("dims", 3 if flat.size % 3 == 0 else 2))
    pts = flat.reshape(-1, dims).copy()
    if params.get("normalized"):
        w, h = params.get("input_size", (1, 1))
        pts[:, 0] *= float(w)
        pts[:, 1] *= float(h)
    pts[:, 0] = (pts[:, 0] - transform.pad_x) / transform.scale_x
    pts[:, 1] = (pts[:, 1] - transform.pad_y) / transform.scale_y
    presence = None
    single = [np.asarray(o).reshape(-1)[0] for o in outputs[1:] if np.asarray(o).size == 1]
    if single:
        v = float(single[0])
        presence = v if 0.0 <= v <= 1.0 else float(sigmoid(np.float64(v)))
    return LandmarksResult(pts, presence)


# --- raw: any model ---------------------------------------------------------------------------


@register_decoder("raw", OutputLayout("any outputs", lay.any_outputs))
def decode_raw(
    outputs: Sequence[np.ndarray],
    params: dict[str, Any],
    transform: Transform,
    labels: Sequence[str] | None = None,
) -> RawResult:
    """The outputs as they are, named by ``output_names`` (``edgeinfer import`` writes the
    model's), so any model runs and its answer goes out as JSON."""
    return RawResult.of(outputs, params.get("output_names"))


# --- anomaly maps ----------------------------------------------------------------------------


@register_decoder("anomaly")
def decode_anomaly(
    outputs: Sequence[np.ndarray],
    params: dict[str, Any],
    transform: Transform,
    labels: Sequence[str] | None = None,
) -> AnomalyResult:
    """An anomaly model's map ``[1, 1, h, w]`` -> image score (the map's maximum), verdict
    (score above ``threshold``, calibrated at training for a false-alarm rate) and regions
    (connected components above it, at least ``min_area`` image pixels); see
    :mod:`edgeinfer.vision.anomaly`. ``input_size`` ([width, height]) is the model input's."""
    return decode_anomaly_map(list(outputs), params, transform)
