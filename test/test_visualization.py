"""draw_overlay / palette: colours, point styles, occlusion colour, validation, speed."""

import time

import numpy as np
import pytest

from sampt_ros.core.types import FrameResult, ObjectResult, ObjectState
from sampt_ros.core.visualization import (
    OCCLUDED_COLOR,
    draw_overlay,
    label_map_to_rgb,
    palette,
    palette_array,
)

H, W = 120, 160


def _obj(oid, mask, points=(), labels=None, visible=None, state=ObjectState.TRACKING, score=0.9):
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    n = len(pts)
    return ObjectResult(
        object_id=oid,
        mask=mask,
        points=pts,
        labels=np.ones(n, np.int64) if labels is None else np.asarray(labels, np.int64),
        visible=np.ones(n, bool) if visible is None else np.asarray(visible, bool),
        visibility=np.ones(n) if visible is None else np.asarray(visible, float),
        score=score,
        state=state,
    )


def _rect(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_palette_is_fixed_distinct_and_never_red():
    colours = [palette(k) for k in range(1, 200)]
    assert palette(0) == (0, 0, 0)
    assert palette(3) == palette(3)
    assert len(set(colours[:12])) == 12
    assert len(set(colours)) > 150  # distinct enough for many objects
    for c in colours:
        assert all(isinstance(v, int) and 0 <= v <= 255 for v in c)
        r, g, b = c
        assert not (r > 180 and g < 90 and b < 90), f"{c} looks like the occluded red"
    assert palette_array(4).shape == (4, 3) and tuple(palette_array(4)[2]) == palette(2)
    with pytest.raises(ValueError):
        palette(-1)


def test_mask_pixels_get_the_object_colour_and_background_is_untouched():
    img = np.full((H, W, 3), 100, np.uint8)
    res = FrameResult(0, {1: _obj(1, _rect(10, 10, 60, 60)), 2: _obj(2, _rect(90, 20, 150, 100))})
    out = draw_overlay(img, res, alpha=0.5, draw_points=False, draw_labels=False)
    assert out.shape == img.shape and out.dtype == np.uint8
    for oid, (y, x) in ((1, (35, 35)), (2, (60, 120))):
        expected = np.round(0.5 * 100 + 0.5 * np.array(palette(oid)))
        assert np.abs(out[y, x].astype(int) - expected).max() <= 1
    assert np.array_equal(out[110, 5], img[110, 5])  # far from any mask and contour
    assert np.array_equal(img, np.full((H, W, 3), 100, np.uint8))  # input not modified
    # the contour is drawn in the object's colour on the mask's edge
    assert tuple(out[10, 35]) == palette(1)
    # alpha 1 paints the mask's interior in pure object colour
    full = draw_overlay(img, res, alpha=1.0, draw_points=False, draw_labels=False)
    assert tuple(full[35, 35]) == palette(1)


def test_overlap_higher_id_wins_like_label_image():
    img = np.zeros((H, W, 3), np.uint8)
    res = FrameResult(0, {1: _obj(1, _rect(0, 0, 100, 100)), 5: _obj(5, _rect(50, 50, 150, 110))})
    out = draw_overlay(img, res, alpha=1.0, draw_points=False, draw_labels=False)
    assert tuple(out[75, 75]) == palette(5)
    assert tuple(out[25, 25]) == palette(1)
    assert res.label_image()[75, 75] == 5


def test_points_positive_circle_negative_cross_occluded_red():
    img = np.zeros((H, W, 3), np.uint8)
    empty = np.zeros((H, W), bool)
    pts = [(30, 30), (80, 30), (30, 90), (80, 90)]
    obj = _obj(3, empty, pts, labels=[1, 0, 1, 0], visible=[True, True, False, False])
    out = draw_overlay(img, FrameResult(0, {3: obj}), draw_labels=False)
    # visible positive: filled circle in the object's colour (centre pixel)
    assert tuple(out[30, 30]) == palette(3)
    # occluded positive: filled circle, red
    assert tuple(out[90, 30]) == OCCLUDED_COLOR
    # visible negative: a tilted cross -> centre and diagonals coloured, the axis points are not
    assert tuple(out[30, 80]) == palette(3)
    assert tuple(out[33, 83]) == palette(3)
    assert tuple(out[30, 83]) != palette(3)
    # occluded negative: red cross
    assert tuple(out[90, 80]) == OCCLUDED_COLOR
    assert tuple(out[93, 83]) == OCCLUDED_COLOR
    # a circle covers its axis neighbours, a cross does not: the shapes differ
    assert tuple(out[30, 31]) == palette(3)


def test_label_text_is_drawn_and_is_deterministic():
    img = np.zeros((H, W, 3), np.uint8)
    res = FrameResult(0, {1: _obj(1, _rect(40, 40, 120, 110), [(60, 60)], state=ObjectState.LOST, score=0.0)})
    a = draw_overlay(img, res)
    b = draw_overlay(img, res)
    assert np.array_equal(a, b)
    no_text = draw_overlay(img, res, draw_labels=False)
    diff = np.any(a != no_text, axis=2)
    ys, xs = np.nonzero(diff)
    assert diff.sum() > 50 and ys.max() < 45  # the label sits just above the mask's box


def test_objects_without_mask_or_points_and_odd_points_do_not_crash():
    img = np.zeros((H, W, 3), np.uint8)
    empty = np.zeros((H, W), bool)
    res = FrameResult(7, {
        1: _obj(1, empty, state=ObjectState.OCCLUDED, score=0.0),
        2: _obj(2, empty, [(-50, 10), (1e9, -1e9), (np.nan, 3)]),
        300: _obj(300, _rect(0, 0, 10, 10)),
    })
    out = draw_overlay(img, res)
    assert out.shape == img.shape
    assert np.array_equal(draw_overlay(img, FrameResult(0)), img)


def test_bad_inputs_raise_value_error():
    img = np.zeros((H, W, 3), np.uint8)
    res = FrameResult(0, {1: _obj(1, np.zeros((10, 10), bool))})
    with pytest.raises(ValueError, match="mask shape"):
        draw_overlay(img, res)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        draw_overlay(img.astype(np.float32), FrameResult(0))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        draw_overlay(img[..., 0], FrameResult(0))
    with pytest.raises(ValueError, match="alpha"):
        draw_overlay(img, FrameResult(0), alpha=1.5)
    bad = _obj(1, np.zeros((H, W), bool), [(1, 1), (2, 2)], labels=[1, 1], visible=[True])
    with pytest.raises(ValueError, match="visible"):
        draw_overlay(img, FrameResult(0, {1: bad}))


def test_label_map_to_rgb():
    labels = np.array([[0, 1], [2, 1]], np.uint16)
    rgb = label_map_to_rgb(labels)
    assert rgb.shape == (2, 2, 3) and tuple(rgb[0, 0]) == (0, 0, 0) and tuple(rgb[1, 0]) == palette(2)


def test_fast_enough_at_davis_size():
    """A few ms at 854x480 with three objects (generous bound: the test machine is shared)."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (480, 854, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:480, :854]
    objs = {}
    for k in range(1, 4):
        mask = (xx - 200 * k) ** 2 + (yy - 240) ** 2 < 90 ** 2
        visible = rng.random(9) > 0.3
        objs[k] = ObjectResult(k, mask, rng.uniform(0, 480, (9, 2)), np.r_[np.ones(8, int), 0],
                               visible, visible.astype(float), 0.8, ObjectState.TRACKING)
    res = FrameResult(0, objs)
    draw_overlay(img, res)
    times = []
    for _ in range(15):
        t = time.perf_counter()
        draw_overlay(img, res)
        times.append(time.perf_counter() - t)
    assert np.median(times) < 0.05, f"median {1000 * np.median(times):.1f} ms"
