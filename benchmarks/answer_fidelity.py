"""Fidelity of float16 answers (``SplitClient(answer="fp16+lz4")``) on the defect detector.

The node's answer is the model's raw output; in float16 it is rounded before it is decoded on
the device. On the 200 SYNTHETIC evaluation tiles (seed 9999, as ``examples/inspection``):
mAP@0.5 of the detections decoded from float32 and from float16-rounded outputs, and at a 0.5
score threshold whether each tile keeps the same detections, with the largest box and score
differences.

    .venv/bin/python benchmarks/answer_fidelity.py [--tiles 200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapt import MODEL, coco_map, decode, make_tiles, prep, session


def main() -> None:
    """Print mAP@0.5 from float32 and float16 answers and the largest differences."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=200)
    args = ap.parse_args()
    sess = session(MODEL)
    gts, d32, d16 = [], [], []
    same, max_box, max_score = 0, 0.0, 0.0
    for img, boxes, classes in make_tiles(9999, args.tiles, 640):
        (out,) = sess.run(None, {"images": prep(img, 640)})
        half = out.astype(np.float16).astype(np.float32)
        gts.append((boxes, classes))
        d32.append(decode(out[0], 0.001, 0.6))
        d16.append(decode(half[0], 0.001, 0.6))
        a, b = decode(out[0], 0.5, 0.6), decode(half[0], 0.5, 0.6)
        if len(a[0]) == len(b[0]) and np.array_equal(a[2], b[2]):
            same += 1
            if len(a[0]):
                max_box = max(max_box, float(np.abs(a[0] - b[0]).max()))
                max_score = max(max_score, float(np.abs(a[1] - b[1]).max()))
    print(f"mAP@0.5 from float32 answers {coco_map(gts, d32)['map50']:.4f}, from float16 "
          f"answers {coco_map(gts, d16)['map50']:.4f}")
    print(f"at score 0.5: {same}/{args.tiles} tiles keep the same detections; boxes move by at "
          f"most {max_box:.2f} px, scores by at most {max_score:.5f}")


if __name__ == "__main__":
    main()
