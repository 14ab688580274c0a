"""Resolution ladder and idle mode, driven by a fake clock (simulated frame times)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.errors import EdgeInferError
from edgeinfer.runtime.adapt import (
    IdleConfig,
    IdleController,
    LadderConfig,
    ResolutionLadder,
    rung_for_fps,
)


def _run(ladder: ResolutionLadder, seconds: float, fps_at: dict[int, float], noise: float = 0.0,
         seed: int = 0, t0: float = 0.0) -> float:
    """Simulate an unpaced loop: each frame takes 1 / fps_at[size] seconds (times a log-normal
    noise factor); returns the end time."""
    rng = np.random.default_rng(seed)
    t = t0
    while t < t0 + seconds:
        busy = float(np.exp(rng.normal(0.0, noise))) / fps_at[ladder.size]
        t += busy
        ladder.update(t, busy)
    return t


@pytest.mark.parametrize(("fps", "side"), [(30, 320), (20.5, 320), (20, 480), (11, 480),
                                           (10, 640), (2, 640)])
def test_threshold_table_is_the_briefs(fps, side) -> None:
    assert rung_for_fps(fps) == side
    assert ResolutionLadder(fps).size == side


def test_thresholds_and_rungs_are_configurable() -> None:
    cfg = LadderConfig(rungs=(256, 416), fps_thresholds=(5.0,))
    assert rung_for_fps(6, cfg) == 256 and rung_for_fps(5, cfg) == 416


@pytest.mark.parametrize("kwargs", [{"rungs": (640, 320), "fps_thresholds": (10.0,)},
                                    {"fps_thresholds": (10.0, 20.0)},
                                    {"fps_thresholds": (10.0,)},
                                    {"min_frames": 0}])
def test_bad_config_is_refused(kwargs) -> None:
    with pytest.raises(EdgeInferError):
        LadderConfig(**kwargs)


def test_steps_down_until_the_target_holds() -> None:
    ladder = ResolutionLadder(8.0, start=640)  # 8 fps would be 640, but 640 gives only 5 fps
    _run(ladder, 30, {640: 5.0, 480: 9.0, 320: 20.0})
    assert ladder.size == 480 and ladder.switches == 1


def test_steps_up_when_the_higher_rung_holds_the_target() -> None:
    ladder = ResolutionLadder(15.0, start=320)
    _run(ladder, 30, {640: 12.0, 480: 22.0, 320: 50.0})
    # 320 -> 480 (50 * (320/480)^2 = 22 >= 15 * 1.25); 480 stays (22 * 0.5625 = 12.4 < 18.75)
    assert ladder.size == 480 and ladder.switches == 1


def test_no_move_within_the_settle_time() -> None:
    ladder = ResolutionLadder(30.0, LadderConfig(settle_s=5.0), start=640)
    _run(ladder, 60, {640: 2.0, 480: 4.0, 320: 8.0})
    times = [t for t, _ in ladder.history]
    assert ladder.size == 320 and len(times) == 2
    assert times[1] - times[0] >= 5.0


def test_noisy_fps_near_a_boundary_does_not_oscillate() -> None:
    """480 sustains 23 fps against a target of 20 (down below 18), with 30% log-normal noise on
    every frame time: the ladder holds 480 for ten simulated minutes."""
    ladder = ResolutionLadder(20.0, start=480)
    _run(ladder, 600, {640: 12.0, 480: 23.0, 320: 48.0}, noise=0.3, seed=1)
    assert ladder.switches == 0, ladder.history


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_right_at_the_boundary_it_moves_at_most_once(seed) -> None:
    """480 sustains 21 fps (mean 20 with the noise) against 20: a noisy window pair may move it
    down, but the measured 480/320 ratio then keeps it from climbing back and forth."""
    ladder = ResolutionLadder(20.0, start=480)
    _run(ladder, 600, {640: 12.0, 480: 21.0, 320: 48.0}, noise=0.3, seed=seed)
    assert ladder.switches <= 1, ladder.history


def test_load_steps_move_it_down_and_back_up_once_each() -> None:
    ladder = ResolutionLadder(10.0, start=640)
    t = _run(ladder, 60, {640: 14.0, 480: 25.0, 320: 55.0}, noise=0.2)
    assert ladder.size == 640 and ladder.switches == 0
    t = _run(ladder, 60, {640: 7.0, 480: 12.5, 320: 27.0}, noise=0.2, t0=t)  # CPU shared
    assert ladder.size == 480 and ladder.switches == 1
    _run(ladder, 60, {640: 14.0, 480: 25.0, 320: 55.0}, noise=0.2, t0=t)  # load gone
    assert ladder.size == 640 and ladder.switches == 2


def test_a_wrong_step_up_is_not_retried() -> None:
    """The side-squared prior says 640 would give 11.25 fps from 20 at 480 (>= 8 * 1.25), but
    it gives 6: the ladder steps up once, back down, and stays (the measured ratio rules)."""
    ladder = ResolutionLadder(8.0, start=480)
    _run(ladder, 300, {640: 6.0, 480: 20.0, 320: 40.0}, noise=0.1)
    assert [s for _, s in ladder.history] == [640, 480]
    assert ladder.seen_fps[640] == pytest.approx(6.0, rel=0.1)


def _swinging_load(backoff: float) -> ResolutionLadder:
    """Other work starts and stops every 7 s: each step up to 640 is undone a few seconds on."""
    ladder = ResolutionLadder(10.0, LadderConfig(backoff=backoff), start=640)
    t = 0.0
    for k in range(40):
        busy = {640: 13.0, 480: 24.0, 320: 50.0} if k % 2 else {640: 6.0, 480: 11.0, 320: 24.0}
        t = _run(ladder, 7.0, busy, t0=t)
    return ladder


def test_up_hold_backs_off_when_a_step_up_is_undone() -> None:
    """Without back-off the ladder follows every swing (about 40 moves in 280 s); with it, the
    hold before a step up doubles each time one is undone, and the moves thin out."""
    assert _swinging_load(1.0).switches > 30
    ladder = _swinging_load(2.0)
    ups = [t for t, side in ladder.history if side == 640]
    gaps = np.diff(ups)
    assert len(ups) >= 3 and gaps[-1] > 2 * gaps[0], ladder.history
    assert ladder.switches < 20


def test_idle_entry_after_quiet_period_and_low_rate() -> None:
    ctl = IdleController(IdleConfig(idle_after_s=10.0, idle_fps=5.0, full_fps=30.0), now=0.0)
    t, times = 0.0, []
    while t < 20.0:
        times.append(t)
        t += ctl.report(t, detected=False)
    entered = next(i for i, x in enumerate(times) if x >= 10.0)
    assert ctl.idle_entries == 1
    gaps = np.diff(times)
    assert np.allclose(gaps[: entered], 1 / 30) and np.allclose(gaps[entered:], 1 / 5)
    assert 10.0 - 1e-9 <= times[entered] < 10.0 + 1 / 30


def test_first_detection_restores_full_rate_within_one_interval() -> None:
    ctl = IdleController(IdleConfig(idle_after_s=1.0), now=0.0)
    t = 0.0
    while not ctl.idle:
        t += ctl.report(t, detected=False)
    assert ctl.interval == pytest.approx(0.2)
    wait = ctl.report(t, detected=True)
    assert not ctl.idle and wait == pytest.approx(1 / 30)
    assert ctl.sleep_for(t + 0.01) == pytest.approx(1 / 30 - 0.01)
    assert ctl.sleep_for(t + 1.0) == 0.0


def test_camera_driven_loop_drops_frames_while_idle_and_sees_activity_fast() -> None:
    """Camera at 30 fps; a defect appears at 20.5 s: idle mode processes 5 frames a second,
    and the defect is seen within one idle interval (0.2 s), then every frame is processed."""
    ctl = IdleController(IdleConfig(idle_after_s=10.0, idle_fps=5.0, full_fps=30.0), now=0.0)
    processed, seen = [], None
    for k in range(30 * 25):
        t = k / 30
        if not ctl.should_process(t):
            continue
        processed.append(t)
        active = t >= 20.5
        ctl.report(t, detected=active)
        if active and seen is None:
            seen = t
    during_idle = [x for x in processed if 11.0 <= x < 20.0]
    assert 40 <= len(during_idle) <= 50  # 5 a second, not 30
    assert seen is not None and seen - 20.5 <= 0.2 + 1e-9
    after = [x for x in processed if x > seen]
    assert np.allclose(np.diff(after), 1 / 30)


def test_idle_config_is_checked() -> None:
    with pytest.raises(EdgeInferError):
        IdleConfig(idle_fps=40.0, full_fps=30.0)


def test_motion_gate_skips_a_still_scene_while_idle_and_runs_on_change() -> None:
    """Idle at 5 fps on a 30 fps camera with the motion gate: a still (noisy) scene is looked
    at 5 times a second but never run; a change runs the model at the next idle frame."""
    rng = np.random.default_rng(0)
    empty = rng.integers(60, 200, (360, 640, 3), dtype=np.uint8)

    def noisy(img: np.ndarray) -> np.ndarray:  # sensor noise, sigma 3 grey levels
        return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)

    busy = empty.copy()
    busy[100:200, 200:320] = 255  # something appears
    ctl = IdleController(IdleConfig(idle_after_s=1.0, idle_fps=5.0, full_fps=30.0,
                                    motion_threshold=4.0), now=0.0)
    ran, still, seen = [], 0, None
    for k in range(30 * 6):
        t = k / 30
        frame = noisy(busy if t >= 5.0 else empty)
        if not ctl.should_process(t):
            continue
        if ctl.is_still(frame, t):
            still += 1
            continue
        ran.append(t)
        detected = t >= 5.0
        ctl.report(t, detected)
        if detected and seen is None:
            seen = t
    idle_runs = [x for x in ran if 1.2 <= x < 5.0]
    assert len(idle_runs) <= 1  # the first idle frame only (its reference was the last busy one)
    assert 15 <= still <= 20 and ctl.still_skipped == still  # ~5 a second for 3.8 s
    assert seen is not None and seen - 5.0 <= 0.2 + 1e-9
    assert np.allclose(np.diff([x for x in ran if x > seen]), 1 / 30)


def test_without_threshold_the_gate_never_skips() -> None:
    ctl = IdleController(IdleConfig(idle_after_s=0.0), now=0.0)
    ctl.report(0.0, detected=False)
    frame = np.zeros((10, 10, 3), np.uint8)
    assert ctl.idle and not ctl.is_still(frame, 0.5) and not ctl.is_still(frame, 1.0)
    with pytest.raises(EdgeInferError, match="grey-level"):
        IdleConfig(motion_threshold=300)
