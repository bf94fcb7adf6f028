"""Tests of sampt_ros.core.sampling: query points from masks (K-Medoids, Shi-Tomasi, random, mixed)."""

import itertools
import time

import cv2
import numpy as np
import pytest

from sampt_ros.core import sampling
from sampt_ros.core.config import SamplingConfig
from sampt_ros.core.sampling import QuerySampler, kmedoids, kmedoids_cost, sample_points

METHODS = ("kmedoids", "shi_tomasi", "random", "mixed")


def _textured_image(h=120, w=160, seed=0):
    """HxWx3 uint8 RGB: smooth noise, so every region has corners of varied strength."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, h // 4), max(1, w // 4), 3), np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _disk_mask(h, w, cx, cy, r):
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _on_mask(points, mask):
    """Every point is the exact centre of a mask pixel."""
    xs, ys = points[:, 0], points[:, 1]
    assert np.all(xs == np.round(xs)) and np.all(ys == np.round(ys))
    xi, yi = xs.astype(int), ys.astype(int)
    assert np.all((xi >= 0) & (xi < mask.shape[1]) & (yi >= 0) & (yi < mask.shape[0]))
    return bool(np.all(mask[yi, xi]))


def _distinct(points):
    return len(np.unique(points, axis=0)) == len(points)


# ------------------------------------------------------------------------------------------
# sample_points
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [1, 8, 30])
def test_points_are_distinct_mask_pixels(method, n):
    mask = _disk_mask(120, 160, 70, 60, 30)
    pts = sample_points(mask, n, method, rng=3, image=_textured_image())
    assert pts.shape == (n, 2) and pts.dtype == np.float64
    assert _on_mask(pts, mask)
    assert _distinct(pts)


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_points_and_other_seed_differs(method):
    mask = _disk_mask(120, 160, 70, 60, 30)
    img = _textured_image()
    a = sample_points(mask, 12, method, rng=5, image=img)
    b = sample_points(mask, 12, method, rng=np.random.default_rng(5), image=img)
    np.testing.assert_array_equal(a, b)
    c = sample_points(mask, 12, method, rng=6, image=img)
    if method != "shi_tomasi":  # corners do not depend on the seed when there are enough
        assert not np.array_equal(a, c)


@pytest.mark.parametrize("method", METHODS)
def test_empty_mask_gives_no_points(method):
    pts = sample_points(np.zeros((20, 30), bool), 5, method, rng=0, image=_textured_image(20, 30))
    assert pts.shape == (0, 2)


@pytest.mark.parametrize("method", METHODS)
def test_tiny_mask_gives_each_pixel_once(method):
    mask = np.zeros((20, 30), bool)
    mask[4, 7] = mask[10, 2] = mask[15, 29] = True
    pts = sample_points(mask, 8, method, rng=0, image=_textured_image(20, 30))
    # fewer pixels than asked: all of them, in row-major order
    np.testing.assert_array_equal(pts, [[7, 4], [2, 10], [29, 15]])


@pytest.mark.parametrize("method", METHODS)
def test_thin_masks(method):
    img = _textured_image(60, 80)
    diagonal = np.eye(60, 80, dtype=bool)  # a 1-pixel diagonal line
    pts = sample_points(diagonal, 6, method, rng=1, image=img)
    assert pts.shape == (6, 2) and _on_mask(pts, diagonal) and _distinct(pts)
    row = np.zeros((1, 80), bool)
    row[0, 10:70] = True  # a one-row image
    pts = sample_points(row, 5, method, rng=1, image=img[:1])
    assert pts.shape == (5, 2) and _on_mask(pts, row) and _distinct(pts)


def test_n_zero_and_full_mask():
    mask = np.ones((10, 12), bool)
    assert sample_points(mask, 0, "kmedoids").shape == (0, 2)
    assert _on_mask(sample_points(mask, 4, "mixed", image=_textured_image(10, 12)), mask)


@pytest.mark.parametrize("method", METHODS)
def test_input_mask_and_image_are_not_modified(method):
    mask = np.ones((1, 10), bool)  # one row: the corner search clears its border rows
    img = _textured_image(1, 10)
    mask_before, img_before = mask.copy(), img.copy()
    sample_points(mask, 3, method, rng=0, image=img)
    np.testing.assert_array_equal(mask, mask_before)
    np.testing.assert_array_equal(img, img_before)


def test_non_bool_masks_are_accepted():
    mask = _disk_mask(40, 50, 20, 20, 8)
    a = sample_points(mask, 5, "kmedoids", rng=0)
    b = sample_points(mask.astype(np.uint8) * 255, 5, "kmedoids", rng=0)
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------
# K-Medoids
# ------------------------------------------------------------------------------------------


def test_kmedoids_returns_input_points():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(200, 2)) * 10
    med = kmedoids(pts, 5, rng=1)
    assert med.shape == (5, 2)
    assert all(np.any(np.all(pts == m, axis=1)) for m in med)
    assert _distinct(med)


def _brute_force_cost(pts, k):
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    return min(d[list(c)].min(axis=0).sum() for c in itertools.combinations(range(len(pts)), k))


@pytest.mark.parametrize("seed", range(4))
def test_kmedoids_is_near_the_exhaustive_optimum(seed):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 100, (3, 2))
    pts = np.round(np.concatenate([c + rng.normal(scale=8, size=(8, 2)) for c in centres]))
    pts = np.unique(pts, axis=0)
    best = _brute_force_cost(pts, 3)
    cost = kmedoids_cost(pts, kmedoids(pts, 3, rng=seed))
    assert cost <= best * 1.03 + 1e-6
    # a harder, unclustered case
    pts = np.unique(np.round(rng.uniform(0, 50, (22, 2))), axis=0)
    best = _brute_force_cost(pts, 4)
    assert kmedoids_cost(pts, kmedoids(pts, 4, rng=seed)) <= best * 1.05 + 1e-6


def _swap_search(pts, medoids):
    """PAM's swap phase (best improving medoid/non-medoid swap until none): a strong reference."""
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    med = [int(np.flatnonzero(np.all(pts == m, axis=1))[0]) for m in medoids]
    while True:
        current = d[med].min(axis=0).sum()
        best = (current - 1e-6, None, None)
        for j in range(len(med)):
            others = np.delete(d[med], j, axis=0).min(axis=0)
            cost = np.minimum(others[None, :], d).sum(axis=1)
            x = int(np.argmin(cost))
            if cost[x] < best[0]:
                best = (cost[x], j, x)
        if best[1] is None:
            return current
        med[best[1]] = best[2]


def test_kmedoids_coarse_then_refine_stays_near_a_swap_search():
    # 900 pixels of an irregular blob: more than 2 x 300 points, so the coarse stage runs.
    rng = np.random.default_rng(7)
    mask = _disk_mask(120, 160, 60, 60, 35) | _disk_mask(120, 160, 110, 80, 25)
    flat = np.flatnonzero(mask)
    flat = np.sort(rng.choice(flat, 900, replace=False))
    pts = np.stack([flat % 160, flat // 160], axis=1).astype(float)
    med = kmedoids(pts, 6, rng=0)
    ref = _swap_search(pts, med)
    assert kmedoids_cost(pts, med) <= ref * 1.05


def test_kmedoids_spreads_over_two_disjoint_blobs():
    mask = _disk_mask(100, 200, 40, 50, 20) | _disk_mask(100, 200, 160, 50, 20)
    for n in (2, 8):
        pts = sample_points(mask, n, "kmedoids", rng=0)
        left = np.count_nonzero(pts[:, 0] < 100)
        assert left == n // 2, (n, pts)  # equal blobs get equal shares


def test_kmedoids_points_are_spread_not_clumped():
    mask = np.zeros((100, 100), bool)
    mask[10:90, 10:90] = True
    pts = sample_points(mask, 4, "kmedoids", rng=0)
    # the optimal 4 medoids of a square are its quadrant centres (30 +- a few, 70 +- a few)
    quadrants = {(x < 50, y < 50) for x, y in pts}
    assert len(quadrants) == 4
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)) + np.eye(4) * 1e9
    assert d.min() > 30


def test_kmedoids_validation():
    with pytest.raises(ValueError, match="k must be"):
        kmedoids(np.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match="k must be"):
        kmedoids(np.zeros((3, 2)), 0)
    with pytest.raises(ValueError, match="Nx2"):
        kmedoids(np.zeros((3, 3)), 1)
    with pytest.raises(ValueError, match="NaN"):
        kmedoids(np.array([[0.0, np.nan]]), 1)
    with pytest.raises(ValueError, match="max_iter"):
        kmedoids(np.zeros((3, 2)), 1, max_iter=0)


# ------------------------------------------------------------------------------------------
# Shi-Tomasi and mixed
# ------------------------------------------------------------------------------------------


def test_shi_tomasi_picks_the_corners_of_the_image():
    # Four white squares on black: their 16 corners are the only corners in the mask.
    img = np.zeros((120, 160, 3), np.uint8)
    squares = [(30, 30), (30, 90), (75, 30), (75, 90)]
    corners = []
    for y, x in squares:
        img[y:y + 20, x:x + 20] = 255
        corners += [(x, y), (x + 19, y), (x, y + 19), (x + 19, y + 19)]
    mask = np.zeros((120, 160), bool)
    mask[10:110, 10:140] = True
    pts = sample_points(mask, 8, "shi_tomasi", rng=0, image=img)
    corners = np.array(corners, float)
    nearest = np.sqrt(((pts[:, None] - corners[None]) ** 2).sum(-1)).min(axis=1)
    assert pts.shape == (8, 2) and np.all(nearest <= 2.0)
    # random points on the same mask are mostly far from any corner
    rnd = sample_points(mask, 8, "random", rng=0, image=img)
    assert np.mean(np.sqrt(((rnd[:, None] - corners[None]) ** 2).sum(-1)).min(axis=1)) > 5


def _opencv_reference(region, grey, n):
    """cv2.goodFeaturesToTrack with SAM-PT's settings on the whole frame."""
    ys, xs = np.nonzero(region)
    diameter = np.hypot(xs.max() - xs.min(), ys.max() - ys.min())
    allowed = region.astype(np.uint8)
    for fraction in (0.06, 0.02, 0.01):
        size = int(diameter * fraction)
        if size <= 1:
            break
        eroded = cv2.erode(region.astype(np.uint8), np.ones((size, size), np.uint8))
        if cv2.countNonZero(eroded) >= 10:
            allowed = eroded
            break
    found = cv2.goodFeaturesToTrack(grey, n, 0.001, diameter / n, mask=allowed, blockSize=3, gradientSize=3)
    return np.rint(found.reshape(-1, 2))


@pytest.mark.parametrize("n", [5, 20])
def test_shi_tomasi_matches_opencv_on_object_sized_regions(n):
    img = _textured_image(240, 320, seed=2)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    mask = _disk_mask(240, 320, 150, 110, 70) & ~_disk_mask(240, 320, 180, 90, 25)
    ours = sample_points(mask, n, "shi_tomasi", rng=0, image=img)
    np.testing.assert_array_equal(ours, _opencv_reference(mask, grey, n))


def test_corner_response_in_strips_equals_opencv():
    grey = cv2.cvtColor(_textured_image(480, 854, seed=4), cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(sampling._min_eigenvalue(grey), cv2.cornerMinEigenVal(grey, 3, ksize=3))


def test_shi_tomasi_on_a_large_region_uses_half_resolution_and_stays_on_the_mask():
    img = _textured_image(480, 854, seed=1)
    background = ~_disk_mask(480, 854, 400, 240, 90)
    pts = sample_points(background, 24, "shi_tomasi", rng=0, image=img)
    assert pts.shape == (24, 2) and _on_mask(pts, background) and _distinct(pts)
    # corners keep away from the object: the background was eroded by 6% of its diameter
    dist_to_object = np.hypot(pts[:, 0] - 400, pts[:, 1] - 240) - 90
    assert dist_to_object.min() >= 0.06 * np.hypot(853, 479) / 2 - 2


def test_shi_tomasi_without_image_or_corners_falls_back_to_kmedoids():
    mask = _disk_mask(80, 100, 50, 40, 25)
    no_image = sample_points(mask, 6, "shi_tomasi", rng=4)
    np.testing.assert_array_equal(no_image, sample_points(mask, 6, "kmedoids", rng=4))
    # a flat image has no corners at all: the same fallback
    flat = np.full((80, 100, 3), 128, np.uint8)
    np.testing.assert_array_equal(sample_points(mask, 6, "shi_tomasi", rng=4, image=flat), no_image)


def test_shi_tomasi_tops_up_few_corners_with_spread_medoids():
    img = np.zeros((100, 100, 3), np.uint8)
    img[40:60, 40:60] = 255  # 4 corners only
    mask = np.ones((100, 100), bool)
    pts = sample_points(mask, 10, "shi_tomasi", rng=0, image=img)
    assert pts.shape == (10, 2) and _distinct(pts)
    corners = {(40, 40), (59, 40), (40, 59), (59, 59)}
    assert corners <= {tuple(p) for p in pts.astype(int)}
    # the fill keeps its distance from the corners (placed around them, not on them)
    fill = np.array([p for p in pts if tuple(p.astype(int)) not in corners])
    cs = np.array(sorted(corners), float)
    assert np.sqrt(((fill[:, None] - cs[None]) ** 2).sum(-1)).min() > 5


def test_mixed_is_kmedoids_plus_corners_plus_random():
    img = _textured_image(120, 160, seed=3)
    mask = _disk_mask(120, 160, 80, 60, 45)
    n = 24  # SAM-PT's split: 6 K-Medoids, 8 Shi-Tomasi, 10 random
    mixed = sample_points(mask, n, "mixed", rng=9, image=img)
    assert mixed.shape == (n, 2) and _distinct(mixed) and _on_mask(mixed, mask)
    np.testing.assert_array_equal(mixed[:6], sample_points(mask, 6, "kmedoids", rng=9))
    corners = sample_points(mask, 8, "shi_tomasi", rng=0, image=img)
    assert {tuple(p) for p in corners} <= {tuple(p) for p in mixed}
    # one point: SAM-PT's split gives a single random point
    np.testing.assert_array_equal(sample_points(mask, 1, "mixed", rng=9, image=img),
                                  sample_points(mask, 1, "random", rng=9))


# ------------------------------------------------------------------------------------------
# QuerySampler
# ------------------------------------------------------------------------------------------


def test_query_sampler_positives_then_negatives():
    cfg = SamplingConfig(positive_method="kmedoids", n_positive=8, negative_method="mixed", n_negative=12)
    sampler = QuerySampler(cfg)
    img = _textured_image()
    mask = _disk_mask(120, 160, 70, 60, 30)
    points, labels = sampler.sample(mask, img)
    assert points.shape == (20, 2) and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [1] * 8 + [0] * 12)
    assert _on_mask(points[:8], mask)
    assert _on_mask(points[8:], ~mask)
    np.testing.assert_array_equal(points[:8], sampler.sample_positive(mask, img))
    np.testing.assert_array_equal(points[8:], sampler.sample_negative(mask, img))


def test_query_sampler_is_deterministic_per_call():
    sampler = QuerySampler(SamplingConfig(n_positive=8, n_negative=72, seed=11))
    img = _textured_image()
    mask = _disk_mask(120, 160, 70, 60, 30)
    first = sampler.sample(mask, img)
    other = sampler.sample(_disk_mask(120, 160, 40, 40, 20), img)  # no state carried over
    again = sampler.sample(mask, img)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0][:8], other[0][:8])
    # a new sampler with the same config agrees; another seed does not
    np.testing.assert_array_equal(QuerySampler(SamplingConfig(n_positive=8, n_negative=72, seed=11)).sample(mask, img)[0], first[0])
    assert not np.array_equal(QuerySampler(SamplingConfig(n_positive=8, n_negative=72, seed=12)).sample(mask, img)[0], first[0])


def test_query_sampler_negative_override_keeps_positives():
    sampler = QuerySampler(SamplingConfig(n_positive=6, n_negative=1))
    mask = _disk_mask(120, 160, 70, 60, 30)
    pts1, lab1 = sampler.sample(mask)
    pts5, lab5 = sampler.sample(mask, n_negative=5)
    pts0, lab0 = sampler.sample(mask, n_negative=0)
    assert list(lab1).count(0) == 1 and list(lab5).count(0) == 5 and list(lab0).count(0) == 0
    np.testing.assert_array_equal(pts1[:6], pts5[:6])
    np.testing.assert_array_equal(pts1[:6], pts0)


def test_query_sampler_empty_and_full_masks():
    sampler = QuerySampler(SamplingConfig(n_positive=4, n_negative=3))
    pts, lab = sampler.sample(np.zeros((30, 40), bool))
    np.testing.assert_array_equal(lab, [0, 0, 0])  # no positives; negatives anywhere
    pts, lab = sampler.sample(np.ones((30, 40), bool))
    np.testing.assert_array_equal(lab, [1, 1, 1, 1])  # no background: no negatives


def test_query_sampler_negative_seed_is_accepted():
    pts, _ = QuerySampler(SamplingConfig(seed=-3)).sample(_disk_mask(50, 60, 30, 25, 10))
    assert len(pts) == 9


def test_validation_errors():
    sampler = QuerySampler(SamplingConfig())
    mask = np.zeros((30, 40), bool)
    with pytest.raises(ValueError, match="2-D"):
        sampler.sample(np.zeros((30, 40, 1), bool))
    with pytest.raises(ValueError, match="2-D"):
        sample_points(np.zeros(5, bool), 2)
    with pytest.raises(ValueError, match="40x30"):
        sampler.sample(mask, np.zeros((31, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="HxWx3"):
        sampler.sample(mask, np.zeros((30, 40, 4), np.uint8))
    with pytest.raises(ValueError, match="n_negative"):
        sampler.sample(mask, n_negative=-1)
    with pytest.raises(ValueError, match="integer"):
        sampler.sample(mask, n_negative=2.5)
    with pytest.raises(ValueError, match="n must be"):
        sample_points(mask, -2)
    with pytest.raises(ValueError, match="integer"):
        sample_points(mask, True)
    with pytest.raises(ValueError, match="method"):
        sample_points(mask, 2, "grid")
    with pytest.raises(ValueError, match="max_pixels"):
        sample_points(mask, 2, max_pixels=0)
    with pytest.raises(ValueError, match="empty"):
        sample_points(np.zeros((0, 4), bool), 2)
    with pytest.raises(ValueError, match="SamplingConfig"):
        QuerySampler({"n_positive": 3})
    with pytest.raises(ValueError, match="rng"):
        sample_points(mask, 2, rng="seed")


def test_sampling_speed_on_a_davis_sized_frame():
    """Loose guard against regressions (the machine is shared; the report gives real numbers)."""
    sampler = QuerySampler(SamplingConfig(n_positive=8, n_negative=72))
    img = _textured_image(480, 854, seed=5)
    mask = _disk_mask(480, 854, 420, 250, 110)
    sampler.sample(mask, img)
    times = []
    for _ in range(5):
        t = time.thread_time()
        sampler.sample(mask, img)
        times.append(time.thread_time() - t)
    assert np.median(times) < 0.25  # ~0.010 s on the build machine


def test_davis_first_frames(davis_root):
    """Real masks: points on the object, negatives on the background, same result twice."""
    import imageio.v3 as iio

    sampler = QuerySampler(SamplingConfig(n_positive=8, n_negative=72))
    for seq in ("blackswan", "dog"):
        img = iio.imread(davis_root / "JPEGImages" / "480p" / seq / "00000.jpg")
        mask = iio.imread(davis_root / "Annotations" / "480p" / seq / "00000.png") > 0
        points, labels = sampler.sample(mask, img)
        assert len(points) == 80 and _distinct(points)
        assert _on_mask(points[labels == 1], mask) and _on_mask(points[labels == 0], ~mask)
        np.testing.assert_array_equal(points, sampler.sample(mask, img)[0])
