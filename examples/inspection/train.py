"""Train the defect detector on SYNTHETIC tiles, on the CPU, and export it to ONNX: the recipe
that made the shipped ``defect-detector`` (to fine-tune it on your own data instead, use
``edgeinfer train detector``: docs/guides/train-detector.md).

    .venv/bin/python examples/inspection/train.py --seed 0 --out edgeinfer/data/defects

The network, its loss and its export live in ``edgeinfer.training`` (``detector_model``,
``detect_loss``); this script keeps the data generation and the exact loop (batch order, flips,
EMA) that the shipped weights came from, so that the run still reproduces them.

Reproducible: the training tiles come from
``edgeinfer.synthetic.defects.make_tiles(seed, ...)`` (frames ``seed * 100000 + k``; the
evaluation uses seed 9999, so frames never overlap), and every random choice of the training
(initialisation, batch order, flips) draws from ``--seed``. Steps:

1. generate ``--tiles`` crops of ``--tile`` pixels (default 10000 of 256x256, 20 per frame,
   85% of them around a defect, from frames drawn with 16-28 defects instead of 3-12: more
   distinct defects per generated frame) in ``--workers`` processes, in fixed chunks so that
   the data do not depend on the worker count. The network is fully convolutional: it trains
   on small crops (cheaper) and runs on 640x640 tiles;
2. train ``--steps`` AdamW steps (batch ``--batch``, warm-up then cosine learning rate, random
   flips and transposes, an exponential moving average of the weights);
3. export the averaged model: ``defect-detector.onnx`` (opset 17, input ``images``
   ``[batch, 3, 640, 640]`` RGB / 255, output ``output0`` ``[batch, 4 + C, 8000]``) and
   ``labels.txt`` into ``--out``.

Loss (``edgeinfer.training.detect_loss``): FCOS-style centre sampling (cells inside the box and
within 2.5 strides of its centre; the stride-8 head takes boxes up to 64 px, the stride-16 head
from 48 px; a box with no such cell takes its nearest one), GIoU on the box distances, and a
quality focal loss whose class target is the IoU of the predicted box, so that scores rank boxes
by how well they fit.
"""

from __future__ import annotations

import argparse
import copy
import math
import multiprocessing
import time
from pathlib import Path

import numpy as np
import torch

from edgeinfer.synthetic.defects import CLASSES, Frame, make_tiles
from edgeinfer.training.detect_loss import detection_loss
from edgeinfer.training.detector_model import DefectDetector, count_parameters, export_detector

#: tiles per generation chunk (a chunk is ``make_tiles(seed, CHUNK, start=...)``)
CHUNK = 240


def _chunk(args: tuple[int, int, int, int, float, int, tuple[int, int]]) -> list[Frame]:
    seed, n, tile, per_frame, p_defect, start, frame_defects = args
    import cv2

    cv2.setNumThreads(1)
    return list(make_tiles(seed, n, tile, per_frame=per_frame, p_defect=p_defect, start=start,
                           frame_defects=frame_defects))


def generate(
    seed: int, n: int, tile: int, per_frame: int, p_defect: float,
    frame_defects: tuple[int, int], workers: int,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """``n`` training tiles as a uint8 array ``[n, tile, tile, 3]`` (BGR) plus boxes/classes."""
    frames_per_chunk = math.ceil(CHUNK / per_frame)
    jobs = [(seed, min(CHUNK, n - i), tile, per_frame, p_defect, (i // CHUNK) * frames_per_chunk,
             frame_defects) for i in range(0, n, CHUNK)]
    images = np.empty((n, tile, tile, 3), np.uint8)
    boxes, classes = [], []
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        i = 0
        for part in pool.imap(_chunk, jobs):
            for img, b, c in part:
                images[i] = img
                boxes.append(b)
                classes.append(c)
                i += 1
    return images, boxes, classes


# --- data -------------------------------------------------------------------------------------


def batch(
    images: np.ndarray,
    boxes: list[np.ndarray],
    classes: list[np.ndarray],
    index: torch.Tensor,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensors for the tiles ``index``: RGB / 255 images with a random flip/transpose each,
    padded boxes [B, M, 4], classes [B, M] and the validity mask [B, M]."""
    size = images.shape[1]
    imgs = torch.from_numpy(images[index.numpy()][..., ::-1].copy()).permute(0, 3, 1, 2)
    imgs = imgs.float().div_(255)
    m = max(1, max(len(boxes[i]) for i in index.tolist()))
    gt = torch.zeros(len(index), m, 4)
    cls = torch.zeros(len(index), m, dtype=torch.long)
    valid = torch.zeros(len(index), m, dtype=torch.bool)
    flips = torch.randint(0, 2, (len(index), 3), generator=gen).bool()
    out = []
    for j, i in enumerate(index.tolist()):
        b = torch.from_numpy(boxes[i]).clone()
        img = imgs[j]
        if flips[j, 0]:  # horizontal
            img = img.flip(2)
            b[:, [0, 2]] = size - b[:, [2, 0]]
        if flips[j, 1]:  # vertical
            img = img.flip(1)
            b[:, [1, 3]] = size - b[:, [3, 1]]
        if flips[j, 2]:  # transpose
            img = img.transpose(1, 2)
            b = b[:, [1, 0, 3, 2]]
        out.append(img)
        k = len(b)
        gt[j, :k] = b
        cls[j, :k] = torch.from_numpy(classes[i])
        valid[j, :k] = True
    return torch.stack(out), gt, cls, valid


# --- training ---------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> DefectDetector:
    """Generate the tiles, train, and return the weight-averaged model."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    images, boxes, classes = generate(args.seed, args.tiles, args.tile, args.per_frame,
                                      args.p_defect, tuple(args.frame_defects), args.workers)
    n_boxes = sum(len(b) for b in boxes)
    print(f"data: {len(images)} tiles {args.tile}x{args.tile}, {n_boxes} defects, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)

    # channels-last activations: about a third faster for oneDNN convolutions on the CPU
    model = DefectDetector(len(CLASSES), args.width).to(memory_format=torch.channels_last)
    print(f"model: {count_parameters(model):,} parameters", flush=True)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(images), generator=gen)
    cursor = 0
    model.train()
    t1 = time.perf_counter()
    for step in range(args.steps):
        warm = min(1.0, (step + 1) / args.warmup)
        cos = 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = args.lr * warm * (0.02 + 0.98 * cos)
        if cursor + args.batch > len(order):
            order, cursor = torch.randperm(len(images), generator=gen), 0
        index = order[cursor : cursor + args.batch]
        cursor += args.batch
        imgs, gt, cls, valid = batch(images, boxes, classes, index, gen)
        dists, logits, points = model(imgs.contiguous(memory_format=torch.channels_last))
        loss, parts = detection_loss(dists, logits, points, gt, cls, valid, p3_max=args.p3_max)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        with torch.no_grad():
            d = args.ema * (1 - math.exp(-(step + 1) / 200))
            for pe, pm in zip(ema.state_dict().values(), model.state_dict().values(),
                              strict=True):
                if pe.dtype.is_floating_point:
                    pe.mul_(d).add_(pm.detach(), alpha=1 - d)
                else:
                    pe.copy_(pm)
        if step % 50 == 0 or step == args.steps - 1:
            el = time.perf_counter() - t1
            print(f"step {step:5d}  loss {loss.item():.3f}  cls {parts['cls']:.3f}  "
                  f"box {parts['box']:.3f}  pos {parts['pos']:4d}  "
                  f"lr {opt.param_groups[0]['lr']:.2e}  {el:.0f} s", flush=True)
    print(f"training: {time.perf_counter() - t1:.0f} s; total {time.perf_counter() - t0:.0f} s",
          flush=True)
    return ema.to(memory_format=torch.contiguous_format)


def export_onnx(model: DefectDetector, out: Path) -> Path:
    """Write ``defect-detector.onnx`` (opset 17, dynamic batch, height and width:
    ``edgeinfer.training.detector_model.export_detector``) and ``labels.txt`` to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    path = export_detector(model.eval(), out / "defect-detector.onnx")
    (out / "labels.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("edgeinfer/data/defects"))
    ap.add_argument("--tiles", type=int, default=10000, help="training tiles generated")
    ap.add_argument("--tile", type=int, default=256, help="training tile size (pixels)")
    ap.add_argument("--per-frame", type=int, default=20, help="tiles cut from each frame")
    ap.add_argument("--p-defect", type=float, default=0.85,
                    help="share of tiles cut around a defect (the rest lie anywhere)")
    ap.add_argument("--frame-defects", type=int, nargs=2, default=(16, 28), metavar=("LO", "HI"),
                    help="defects per training frame (test frames have 3-12)")
    ap.add_argument("--p3-max", type=float, default=64.0,
                    help="largest box side (px) the stride-8 head learns (stride 16: from 48)")
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--width", type=int, default=16, help="base channel width of the network")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--workers", type=int, default=2, help="processes generating the data")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="also save the PyTorch state dict here")
    args = ap.parse_args(argv)
    model = train(args)
    if args.checkpoint:
        torch.save(model.state_dict(), args.checkpoint)
    path = export_onnx(model, args.out)
    print(f"exported {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
