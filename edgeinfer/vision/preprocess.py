"""Image -> input tensor, driven by an artifact's :class:`~edgeinfer.artifact.Preprocess`.

Images are OpenCV's native BGR ``uint8`` arrays (H, W, 3). Resizing uses OpenCV; the value
transform is ``((pixel * scale) - mean) / std`` per channel, in the manifest's channel order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeinfer.artifact import InputSpec, Preprocess
from edgeinfer.errors import EdgeInferError, ShapeError
from edgeinfer.model.shapes import dynamic_message

_INTERP = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
    "cubic": cv2.INTER_CUBIC,
}

#: file suffixes read as images (by OpenCV) wherever a folder of images is accepted
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

#: center-crop resizes the shorter side to ``size / CROP_FRACTION`` first (ImageNet habit).
CROP_FRACTION = 0.875


@dataclass(frozen=True)
class Transform:
    """How input-tensor pixels map back to the original image: ``orig = (t - pad) / scale``.

    ``image_width`` and ``image_height`` are the original image's size when known (``resize``
    sets them; detection decoders clip boxes to it); they take no part in equality.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    image_width: int | None = field(default=None, compare=False)
    image_height: int | None = field(default=None, compare=False)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as BGR uint8 through the decode gate
    (:func:`edgeinfer.vision.image_io.decode_image`: sized from its header, refused over the
    pixel limit before decoding), with a one-line error naming the file."""
    from edgeinfer.vision.image_io import ImageDecodeError, decode_image

    path = Path(path)
    if not path.exists():
        raise EdgeInferError(f"{path}: no such image file: check the path")
    try:
        return decode_image(path.read_bytes())
    except ImageDecodeError as exc:
        reason = str(exc).removeprefix("the uploaded ")
        raise EdgeInferError(f"{path} is not a readable image ({reason})") from exc


def spatial_size(spec: InputSpec) -> tuple[int, int]:
    """(height, width) of an image input from its shape and layout."""
    if len(spec.shape) != 4:
        raise ShapeError(
            f"input '{spec.name}' has shape {list(spec.shape)}, not an image batch "
            "(N, C, H, W or N, H, W, C): feed it a tensor, not an image"
        )
    h, w = (spec.shape[1], spec.shape[2]) if spec.layout == "NHWC" else spec.shape[2:4]
    if h <= 0 or w <= 0:
        raise ShapeError(dynamic_message(spec.name, spec.shape))
    return h, w


def resize(
    image: np.ndarray, size: tuple[int, int], pre: Preprocess
) -> tuple[np.ndarray, Transform]:
    """Resize a BGR image to ``size`` (h, w) as ``pre.resize`` says; return it and the transform."""
    h, w = size
    ih, iw = image.shape[:2]
    interp = _INTERP[pre.interpolation]
    if pre.resize == "none":
        if (ih, iw) != (h, w):
            raise EdgeInferError(
                f"image is {iw}x{ih}, the model needs {w}x{h} and resize is "
                "'none': resize the image or set preprocess.resize"
            )
        return image, Transform(1.0, 1.0, 0.0, 0.0, iw, ih)
    if pre.resize == "stretch":
        out = cv2.resize(image, (w, h), interpolation=interp)
        return out, Transform(w / iw, h / ih, 0.0, 0.0, iw, ih)
    if pre.resize == "center-crop":
        r = max(h, w) / CROP_FRACTION / min(ih, iw)
        rw, rh = max(w, round(iw * r)), max(h, round(ih * r))
        scaled = cv2.resize(image, (rw, rh), interpolation=interp)
        y, x = (rh - h) // 2, (rw - w) // 2
        return scaled[y : y + h, x : x + w], Transform(rw / iw, rh / ih, -x, -y, iw, ih)
    # letterbox: keep aspect ratio, pad to size
    r = min(h / ih, w / iw)
    rw, rh = round(iw * r), round(ih * r)
    scaled = cv2.resize(image, (rw, rh), interpolation=interp)
    top, left = (h - rh) // 2, (w - rw) // 2
    out = cv2.copyMakeBorder(
        scaled,
        top,
        h - rh - top,
        left,
        w - rw - left,
        cv2.BORDER_CONSTANT,
        value=(pre.pad_value,) * 3,
    )
    return out, Transform(r, r, float(left), float(top), iw, ih)


def to_tensor(image: np.ndarray, spec: InputSpec, pre: Preprocess) -> tuple[np.ndarray, Transform]:
    """Turn one BGR image into a batch-1 input tensor for ``spec``."""
    resized, transform = resize(image, spatial_size(spec), pre)
    if pre.channel_order == "RGB":
        resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    x = resized.astype(np.float32)
    if pre.scale != 1.0:
        x *= np.float32(pre.scale)
    x -= np.asarray(pre.mean, dtype=np.float32)
    x /= np.asarray(pre.std, dtype=np.float32)
    if spec.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    x = np.ascontiguousarray(x[None])
    if spec.dtype != "float32":
        x = x.astype(spec.dtype)
    return x, transform
