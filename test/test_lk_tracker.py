"""LucasKanadeTracker: synthetic motion with known answers, occlusion, buffering, validation."""

import cv2
import numpy as np
import pytest

from sampt_ros.core.backends.lk import LkConfig
from sampt_ros.core.lk_tracker import LucasKanadeTracker
from sampt_ros.core.types import TrackedPoints

H, W = 240, 320


def texture(seed: int = 0, shape=(H, W)) -> np.ndarray:
    """``HxWx3 uint8`` smooth random texture: corners everywhere, LK converges."""
    rng = np.random.default_rng(seed)
    noise = (rng.random((*shape, 3)) * 255).astype(np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 0)


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``image`` translated by (dx, dy) pixels (content at p moves to p + (dx, dy))."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def grid_points(n: int = 4, lo=(60, 60), hi=(260, 180)) -> np.ndarray:
    xs, ys = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def test_recovers_a_known_translation_to_subpixel_accuracy():
    base = texture()
    tracker = LucasKanadeTracker(LkConfig(), window=8)
    pts = grid_points()
    f0 = tracker.push_frame(base)
    tracker.set_track("a", pts, f0)
    tracker.push_frame(shifted(base, 3.3, -2.1))
    out = tracker.track()["a"]
    assert isinstance(out, TrackedPoints)
    assert out.points.shape == (16, 2) and out.visibility.shape == (16,)
    assert out.visibility.dtype == np.float64 and np.all((out.visibility >= 0) & (out.visibility <= 1))
    err = np.abs(out.points - (pts + [3.3, -2.1]))
    assert err.max() < 0.5
    assert (out.visibility > 0.5).all()
    assert np.all(out.visibility > 0.5) and np.all(out.visibility <= 1.0)


def test_query_frame_is_newest_returns_the_queries_visible():
    tracker = LucasKanadeTracker(LkConfig(), window=4)
    tracker.push_frame(texture())
    pts = grid_points(3)
    tracker.set_track(7, pts, 0)
    out = tracker.track()[7]
    np.testing.assert_allclose(out.points, pts)
    assert (out.visibility > 0.5).all() and np.all(out.visibility == 1.0)


def test_occluding_patch_hides_points_and_they_are_carried_by_the_visible_ones():
    base = texture(1)
    pts = grid_points()
    tracker = LucasKanadeTracker(LkConfig(), window=8)
    tracker.set_track("obj", pts, tracker.push_frame(base))
    moved = shifted(base, 2.0, 1.0)
    # An occluder with its own, unrelated texture covers the left column of points.
    occluded = pts[:, 0] < 100
    moved[:, :110] = texture(99)[:, :110]
    tracker.push_frame(moved)
    out = tracker.track()["obj"]
    assert not (out.visibility > 0.5)[occluded].any()
    assert (out.visibility > 0.5)[~occluded].all()
    assert np.all(out.visibility[occluded] < 0.5)
    # Hidden points still follow the object (the visible points' motion), so they can come back.
    np.testing.assert_allclose(out.points[occluded], pts[occluded] + [2.0, 1.0], atol=0.5)

    # The occluder leaves: the carried points are found again where they belong.
    tracker.push_frame(shifted(base, 4.0, 2.0))
    back = tracker.track()["obj"]
    assert (back.visibility > 0.5).all()
    np.testing.assert_allclose(back.points, pts + [4.0, 2.0], atol=0.5)


def test_forward_backward_check_rejects_points_on_an_unrelated_frame():
    tracker = LucasKanadeTracker(LkConfig(fb_threshold=1.0), window=8)
    pts = grid_points()
    tracker.set_track(1, pts, tracker.push_frame(texture(2)))
    tracker.push_frame(texture(3))  # nothing in common with the first frame
    out = tracker.track()[1]
    assert (out.visibility > 0.5).mean() < 0.25


def test_track_set_on_an_earlier_buffered_frame_is_advanced_through_the_buffer():
    base = texture(4)
    tracker = LucasKanadeTracker(LkConfig(), window=8)
    shifts = [(0.0, 0.0), (2.5, 1.0), (5.0, 2.5), (7.0, 4.5)]
    for dx, dy in shifts:
        tracker.push_frame(shifted(base, dx, dy))
    pts = grid_points()
    # Queries placed on frame 1 (the second frame) after frame 3 arrived.
    tracker.set_track("late", pts + [2.5, 1.0], 1)
    tracker.set_track("now", pts + [7.0, 4.5], 3)
    out = tracker.track()
    np.testing.assert_allclose(out["late"].points, pts + [7.0, 4.5], atol=0.5)
    assert (out["late"].visibility > 0.5).all()
    np.testing.assert_allclose(out["now"].points, pts + [7.0, 4.5])


def test_frames_are_prepared_once_and_tracks_share_lk_calls():
    base = texture(5)
    tracker = LucasKanadeTracker(LkConfig(), window=8)
    f0 = tracker.push_frame(base)
    tracker.set_track("a", grid_points(3), f0)
    tracker.set_track("b", grid_points(2), f0)
    for k in range(1, 4):
        tracker.push_frame(shifted(base, k, 0))
        tracker.track()
    assert tracker.stats()["frames_prepared"] == 4
    # One forward and one backward call per frame pair, however many tracks there are.
    assert tracker.stats()["lk_calls"] == 2 * 3
    # Tracking again without a new frame costs nothing.
    tracker.track()
    assert tracker.stats()["lk_calls"] == 6


def test_ring_buffer_keeps_window_frames():
    tracker = LucasKanadeTracker(LkConfig(), window=3)
    for _ in range(5):
        tracker.push_frame(texture())
    assert [tracker.has_frame(i) for i in range(5)] == [False, False, True, True, True]
    with pytest.raises(KeyError):
        tracker.set_track("x", grid_points(2), 1)


def test_track_behind_the_buffer_continues_from_the_oldest_frame():
    base = texture(6)
    tracker = LucasKanadeTracker(LkConfig(), window=2)
    pts = grid_points(2)
    tracker.set_track("a", pts, tracker.push_frame(base))
    for k in range(1, 4):  # track() not called: frames 0 and 1 leave the buffer
        tracker.push_frame(shifted(base, 0, 0))
    out = tracker.track()["a"]
    np.testing.assert_allclose(out.points, pts, atol=0.5)


def test_remove_reset_and_empty_tracks():
    tracker = LucasKanadeTracker(LkConfig(), window=4)
    tracker.set_track("a", grid_points(2), tracker.push_frame(texture()))
    tracker.set_track("empty", np.zeros((0, 2)), 0)
    tracker.push_frame(texture())
    out = tracker.track()
    assert out["empty"].points.shape == (0, 2)
    tracker.remove_track("a")
    tracker.remove_track("never-existed")
    assert set(tracker.track()) == {"empty"}
    tracker.reset()
    assert tracker.track() == {} and not tracker.has_frame(0)
    assert tracker.push_frame(texture(2)) == 0


def test_validation_errors():
    with pytest.raises(ValueError):
        LucasKanadeTracker(LkConfig(), window=0)
    with pytest.raises(ValueError):
        LucasKanadeTracker("not a config")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LkConfig(win_size=4)
    with pytest.raises(ValueError):
        LkConfig(fb_threshold=0)
    tracker = LucasKanadeTracker(LkConfig(), window=4)
    with pytest.raises(ValueError):
        tracker.push_frame(np.zeros((H, W), np.uint8))  # grey
    with pytest.raises(ValueError):
        tracker.push_frame(np.zeros((H, W, 3), np.float32))
    tracker.push_frame(texture())
    with pytest.raises(ValueError):
        tracker.push_frame(texture(shape=(H // 2, W)))  # size changed
    with pytest.raises(KeyError):
        tracker.set_track("a", grid_points(2), 5)
    with pytest.raises(ValueError):
        tracker.set_track("a", np.zeros((3, 3)), 0)
    with pytest.raises(ValueError):
        tracker.set_track("a", [[np.nan, 1.0]], 0)
