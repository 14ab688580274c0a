"""Adaptive controllers a stream loop calls once per frame: resolution ladder and idle mode.

Each controller is a small object with no threads and no sleeps of its own: the loop hands it
timestamps (any monotonic clock; tests pass a fake one) and what happened to the frame, and the
controller says what to do next (which input size, whether to process, how long to wait). The
precision cascade (INT8 first, FP32 when unsure) lives in :mod:`edgeinfer.runtime.adapt_cascade`
and is re-exported here.

Not thread-safe: one controller per stream loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.runtime.adapt_cascade import (
    CascadeConfig,
    PrecisionCascade,
    classification_uncertain,
    detection_uncertain,
)

__all__ = [
    "CascadeConfig",
    "IdleConfig",
    "IdleController",
    "LadderConfig",
    "PrecisionCascade",
    "ResolutionLadder",
    "classification_uncertain",
    "detection_uncertain",
    "rung_for_fps",
]

log = logging.getLogger(__name__)

#: the motion gate's thumbnail (width, height): enough for a scene change, a few µs to compare
THUMB = (64, 36)


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    """A small grey float32 thumbnail of a BGR (or grey) frame."""
    small = cv2.resize(frame, THUMB, interpolation=cv2.INTER_AREA)
    if small.ndim == 3:
        small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return small.astype(np.float32)


@dataclass(frozen=True)
class LadderConfig:
    """Rungs and rules of the resolution ladder.

    ``rungs`` are input sides, ascending; ``fps_thresholds`` (descending, one fewer than the
    rungs) map a frame rate to a rung: above ``fps_thresholds[i]`` -> ``rungs[i]``, else the
    last rung (the default is the brief's: > 20 fps -> 320, > 10 -> 480, else 640).

    Measuring: frames are gathered into windows of at least ``window_s`` seconds and
    ``min_frames`` frames; a window's rate is frames per second of work (``n / sum(busy)``),
    what the loop can sustain at this rung under the current load. Moving: down one rung after
    ``patience`` windows in a row below ``target * (1 - down_margin)``; up one rung after
    ``patience`` windows in a row where the rate predicted there is at least
    ``target * (1 + up_margin)``. The prediction uses the rate ratio measured between the two
    rungs across the last move between them (the window before it and the one after, taken
    under nearly the same load), else cost ~ side ** ``cost_exponent``. Nothing counts for
    ``settle_s`` after a move; a move up undone within ``undo_s`` multiplies the hold before
    the next move up by ``backoff`` (up to ``max_hold_s``; a later down move resets it).
    """

    rungs: tuple[int, ...] = (320, 480, 640)
    fps_thresholds: tuple[float, ...] = (20.0, 10.0)
    window_s: float = 1.0
    min_frames: int = 4
    patience: int = 2
    down_margin: float = 0.10
    up_margin: float = 0.25
    settle_s: float = 2.0
    cost_exponent: float = 2.0
    backoff: float = 2.0
    max_hold_s: float = 60.0
    undo_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.rungs or list(self.rungs) != sorted(set(self.rungs)):
            raise EdgeInferError(f"ladder rungs {self.rungs} must be distinct and ascending")
        th = self.fps_thresholds
        if len(th) != len(self.rungs) - 1 or list(th) != sorted(th, reverse=True):
            raise EdgeInferError(
                f"fps_thresholds {th} must be descending, one fewer than the rungs {self.rungs}"
            )
        if self.min_frames < 1 or self.patience < 1 or self.settle_s < 0:
            raise EdgeInferError("ladder needs min_frames >= 1, patience >= 1, settle_s >= 0")
        if not 0 <= self.down_margin < 1 or self.up_margin < 0:
            raise EdgeInferError("ladder needs 0 <= down_margin < 1 and up_margin >= 0")


def rung_for_fps(fps: float, config: LadderConfig | None = None) -> int:
    """The rung the threshold table gives a frame rate (the ladder's starting point)."""
    config = config or LadderConfig()
    for side, threshold in zip(config.rungs, config.fps_thresholds, strict=False):
        if fps > threshold:
            return side
    return config.rungs[-1]


class ResolutionLadder:
    """Picks the input size per frame from measured frame times against a target frame rate.

    Loop: ``size = ladder.size``; process the frame at ``size``; ``ladder.update(now,
    busy_s)`` with the seconds the frame's work took (what bounds the rate the loop can
    sustain, whatever else shares the CPU). Starts at :func:`rung_for_fps` of the target.
    """

    def __init__(
        self, target_fps: float, config: LadderConfig | None = None, start: int | None = None
    ) -> None:
        self.config = config or LadderConfig()
        if target_fps <= 0:
            raise EdgeInferError(f"target_fps must be positive, got {target_fps}")
        self.target_fps = target_fps
        size = start if start is not None else rung_for_fps(target_fps, self.config)
        if size not in self.config.rungs:
            raise EdgeInferError(f"start size {size} is not a rung of {self.config.rungs}")
        self._index = self.config.rungs.index(size)
        self._busy: list[float] = []
        self._window_start: float | None = None
        self._settled_at: float | None = None  # windows start counting from here
        self._votes = 0  # consecutive windows asking for the same move (+n up, -n down)
        self._last_up: float | None = None
        self._up_hold = self.config.settle_s
        self.seen_fps: dict[int, float] = {}  # last window's rate at each rung
        self._ratios: dict[tuple[int, int], float] = {}  # rate at b / rate at a, measured
        self._before: tuple[int, float] | None = None  # (size, rate) of the window before a move
        self.measured_fps: float | None = None
        self.switches = 0
        self.history: list[tuple[float, int]] = []  # (time, new size) per switch

    @property
    def size(self) -> int:
        """The input side to use for the next frame."""
        return self.config.rungs[self._index]

    def predicted_fps(self, fps: float, index: int) -> float:
        """The rate expected at rung ``index`` given ``fps`` at the current rung."""
        here, there = self.size, self.config.rungs[index]
        ratio = self._ratios.get((here, there))
        if ratio is None:
            ratio = (here / there) ** self.config.cost_exponent
        return fps * ratio

    def update(self, now: float, busy_s: float) -> int:
        """Record one processed frame (its end time and work seconds); return the next size."""
        cfg = self.config
        if self._settled_at is None:
            self._settled_at = now - busy_s
        if now < self._settled_at:
            return self.size
        if self._window_start is None:
            self._window_start = now - busy_s
        self._busy.append(busy_s)
        if now - self._window_start < cfg.window_s or len(self._busy) < cfg.min_frames:
            return self.size
        fps = len(self._busy) / max(sum(self._busy), 1e-9)
        self._busy.clear()
        self._window_start = None
        self.measured_fps = fps
        self.seen_fps[self.size] = fps
        if self._before is not None:  # the last window before a move and the first after it
            size, before = self._before
            self._ratios[(self.size, size)] = before / fps
            self._ratios[(size, self.size)] = fps / before
            self._before = None
        self._vote(now, fps)
        return self.size

    def _vote(self, now: float, fps: float) -> None:
        cfg = self.config
        top = len(cfg.rungs) - 1
        if fps < self.target_fps * (1 - cfg.down_margin) and self._index > 0:
            self._votes = min(self._votes, 0) - 1
        elif (
            self._index < top
            and self._hold_passed(now)
            and self.predicted_fps(fps, self._index + 1) >= self.target_fps * (1 + cfg.up_margin)
        ):
            self._votes = max(self._votes, 0) + 1
        else:
            self._votes = 0
        if self._votes <= -cfg.patience:
            if self._last_up is not None and now - self._last_up < cfg.undo_s:
                self._up_hold = min(self._up_hold * cfg.backoff, cfg.max_hold_s)
            else:
                self._up_hold = cfg.settle_s
            self._switch(now, -1, fps)
        elif self._votes >= cfg.patience:
            self._last_up = now
            self._switch(now, +1, fps)

    def _hold_passed(self, now: float) -> bool:
        """Whether the hold time after the last move has passed, so a move up may count."""
        last = self.history[-1][0] if self.history else None
        return last is None or now - last >= self._up_hold

    def _switch(self, now: float, step: int, fps: float) -> None:
        old = self.size
        self._before = (old, fps)
        self._index += step
        self._busy.clear()
        self._window_start = None
        self._votes = 0
        self._settled_at = now + self.config.settle_s
        self.switches += 1
        self.history.append((now, self.size))
        log.debug("ladder %d -> %d at %.1f fps (target %.1f)", old, self.size, fps,
                  self.target_fps)


@dataclass(frozen=True)
class IdleConfig:
    """Idle mode: after ``idle_after_s`` with nothing detected, process ``idle_fps`` frames a
    second instead of ``full_fps``; the first detection restores the full rate.

    ``motion_threshold`` (None: off): while idle, a due frame whose small grey thumbnail
    differs from the last processed one by less than this mean absolute difference (grey
    levels, 0-255) is not run through the model at all: a still scene costs a resize instead
    of an inference. Any change above it runs the model, so activity is still seen at the
    first idle frame that shows it.
    """

    idle_after_s: float = 10.0
    idle_fps: float = 5.0
    full_fps: float = 30.0
    motion_threshold: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.idle_fps <= self.full_fps or self.idle_after_s < 0:
            raise EdgeInferError("idle mode needs 0 < idle_fps <= full_fps and idle_after_s >= 0")
        if self.motion_threshold is not None and not 0 < self.motion_threshold < 255:
            raise EdgeInferError("the motion threshold is a grey-level difference: give 0..255")


class IdleController:
    """Tells a stream loop when to process the next frame.

    A loop that sleeps: process, call :meth:`report`, sleep what it returns. A loop fed by a
    camera at its own rate: process a frame only when :meth:`should_process` says so, then
    :meth:`report` it. Either way a detection while idle brings the next frame one full-rate
    interval later.
    """

    def __init__(self, config: IdleConfig | None = None, now: float = 0.0) -> None:
        self.config = config or IdleConfig()
        self._last_activity = now
        self._next_due = now
        self.idle = False
        self.idle_entries = 0
        self.processed = 0
        self.still_skipped = 0
        self._thumb: np.ndarray | None = None

    @property
    def interval(self) -> float:
        """Seconds between processed frames in the current mode."""
        return 1.0 / (self.config.idle_fps if self.idle else self.config.full_fps)

    def should_process(self, now: float) -> bool:
        """Whether a frame arriving at ``now`` should be processed (else dropped)."""
        return now >= self._next_due - 1e-6

    def report(self, now: float, detected: bool) -> float:
        """Record a frame processed at ``now`` (its capture or start time); return the seconds
        from ``now`` until the next frame is due."""
        self.processed += 1
        if detected:
            self._last_activity = now
            if self.idle:
                log.debug("idle mode off at %.2f s", now)
            self.idle = False
        elif not self.idle and now - self._last_activity >= self.config.idle_after_s:
            self.idle = True
            self.idle_entries += 1
            log.debug("idle mode on at %.2f s", now)
        self._next_due = now + self.interval
        return self.interval

    def is_still(self, frame: np.ndarray, now: float) -> bool:
        """With a motion threshold: whether ``frame`` (a due frame at ``now``) may be skipped
        because the scene has not changed since the last frame run while idle; a skipped frame
        counts as looked at (the next one is due an idle interval later). A frame that is run
        becomes the new reference. Outside idle mode every frame is run and nothing is
        computed (the first idle frame runs and becomes the reference)."""
        if self.config.motion_threshold is None:
            return False
        if not self.idle:
            self._thumb = None
            return False
        thumb = _thumbnail(frame)
        if self._thumb is not None and thumb.shape == self._thumb.shape:
            diff = float(np.mean(np.abs(thumb - self._thumb)))
            if diff < self.config.motion_threshold:
                self.still_skipped += 1
                self._next_due = now + self.interval
                return True
        self._thumb = thumb
        return False

    def sleep_for(self, now: float) -> float:
        """Seconds to wait from ``now`` until the next frame is due (0 when already due)."""
        return max(0.0, self._next_due - now)
