"""The detector's training loss: FCOS-style centre sampling, GIoU on the boxes and a quality
focal loss on the classes.

Assignment: a cell is positive for a box when its centre lies inside the box and within 2.5
strides of the box's centre; the stride-8 head takes boxes up to ``p3_max`` px (64), the
stride-16 head from 48 px; a box with no such cell takes its nearest. The class target of a
positive cell is the IoU of its predicted box (so scores rank boxes by fit); every other
cell's target is 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)


def assign(
    points: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, radius: float = 2.5,
    p3_max: float = 64.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre-sampling assignment. ``points`` [N, 3] (x, y, stride), ``gt`` [B, M, 4] xyxy,
    ``valid`` [B, M]. Returns positive mask [B, N] and the index of each cell's box [B, N]."""
    px, py, s = (points[:, i][None, :, None] for i in range(3))
    x1, y1, x2, y2 = (gt[..., i][:, None, :] for i in range(4))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    inside = (px > x1) & (px < x2) & (py > y1) & (py < y2)
    near = ((px - cx).abs() < radius * s) & ((py - cy).abs() < radius * s)
    size = torch.maximum(x2 - x1, y2 - y1)
    level = torch.where(s == 8, size <= p3_max, size >= 48)
    ok = level & valid[:, None, :]
    cand = inside & near & ok
    lonely = valid & ~cand.any(1)  # [B, M]: boxes too small or thin for any cell centre
    if lonely.any():
        d2 = torch.where(ok, (px - cx) ** 2 + (py - cy) ** 2, torch.inf)
        nearest = d2.argmin(1)  # [B, M]
        b_idx, m_idx = lonely.nonzero(as_tuple=True)
        cand[b_idx, nearest[b_idx, m_idx], m_idx] = True
    area = (x2 - x1) * (y2 - y1)
    cost = torch.where(cand, area.expand_as(cand), torch.inf)
    best, idx = cost.min(-1)
    return torch.isfinite(best), idx


def giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and generalised IoU of matching xyxy boxes [K, 4]."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    union = area_a + area_b - inter + 1e-7
    iou = inter / union
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(1) + 1e-7
    return iou, iou - (hull - union) / hull


def detection_loss(
    dists: torch.Tensor,
    logits: torch.Tensor,
    points: torch.Tensor,
    gt: torch.Tensor,
    gt_cls: torch.Tensor,
    valid: torch.Tensor,
    box_weight: float = 2.0,
    p3_max: float = 64.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Quality focal loss + GIoU loss, both normalised by the number of positive cells."""
    pos, idx = assign(points, gt, valid, p3_max=p3_max)
    num_pos = max(int(pos.sum()), 1)
    target = torch.zeros_like(logits)
    box_loss = dists.sum() * 0.0
    if pos.any():
        b_idx, n_idx = pos.nonzero(as_tuple=True)
        m_idx = idx[b_idx, n_idx]
        p = points[n_idx]
        d = dists[b_idx, n_idx]
        pred = torch.stack([p[:, 0] - d[:, 0], p[:, 1] - d[:, 1],
                            p[:, 0] + d[:, 2], p[:, 1] + d[:, 3]], 1)
        iou, g = giou(pred, gt[b_idx, m_idx])
        box_loss = (1 - g).sum() / num_pos
        target[b_idx, n_idx, gt_cls[b_idx, m_idx]] = iou.detach().clamp(min=0.05)
    prob = logits.sigmoid()
    qfl = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    cls_loss = (qfl * (prob - target).abs().pow(2)).sum() / num_pos
    loss = cls_loss + box_weight * box_loss
    return loss, {"cls": cls_loss.item(), "box": box_loss.item(), "pos": num_pos}
