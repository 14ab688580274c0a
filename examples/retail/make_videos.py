"""Render the three SYNTHETIC camera streams of the retail scenario (nothing here is filmed).

``entrance.mp4``: a shop entrance where figures with real faces (the packaged public-domain
portrait) walk through in groups, with empty stretches of several seconds between groups;
``conveyor-1.mp4`` and ``conveyor-2.mp4``: generated inspection surfaces with defects sliding
past. Each video gets a ``.jsonl`` of its ground truth, one line a frame
(:mod:`edgeinfer.synthetic.retail`).

    .venv/bin/python examples/retail/make_videos.py [--out DIR] [--seconds 40] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeinfer.synthetic.retail import write_video

HERE = Path(__file__).resolve().parent
#: file name -> (scene, seed offset)
VIDEOS = {
    "entrance.mp4": ("entrance", 0),
    "conveyor-1.mp4": ("conveyor", 1),
    "conveyor-2.mp4": ("conveyor", 2),
}


def make_videos(out: Path, seconds: float = 40.0, fps: float = 15.0, seed: int = 0,
                conveyor_seconds: float | None = None) -> list[Path]:
    """Write the three videos (and their ground truth) into ``out``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (scene, offset) in VIDEOS.items():
        length = seconds if scene == "entrance" else (conveyor_seconds or seconds)
        paths.append(write_video(scene, out / name, length, fps, seed + offset))
    return paths


def missing(out: Path) -> bool:
    """Whether any of the three videos is not in ``out`` yet."""
    return any(not (out / name).exists() for name in VIDEOS)


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "videos")
    ap.add_argument("--seconds", type=float, default=40.0, help="entrance length")
    ap.add_argument("--conveyor-seconds", type=float, default=20.0, help="conveyor length")
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for p in make_videos(args.out, args.seconds, args.fps, args.seed, args.conveyor_seconds):
        print(p)


if __name__ == "__main__":
    main()
