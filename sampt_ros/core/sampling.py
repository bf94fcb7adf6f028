"""Query points sampled from a mask: K-Medoids, Shi-Tomasi corners, random, or a mix.

SAM-PT (Rajič et al. 2023) starts, and with re-initialisation restarts, every object's point
tracks from points sampled on its mask. Positive points come from the object's mask, negative
points from the background (``~mask``). The methods, as the paper ablates them:

* ``kmedoids`` - cluster centres that are mask pixels (K-Medoids on a random subsample of at
  most ``max_pixels`` mask pixels); they spread over the whole object, the best positives;
* ``shi_tomasi`` - Shi-Tomasi corners of the grey image under the mask (eroded so corners sit
  away from the mask's edge), easy to track; when there are too few corners, or no image, the
  missing points are K-Medoids centres placed around the corners found;
* ``random`` - distinct mask pixels drawn uniformly;
* ``mixed`` - as SAM-PT splits ``n`` points: ``n // 4`` K-Medoids, ``n // 3`` Shi-Tomasi and the
  rest random (so one point is a random pixel). Unlike SAM-PT, the three parts never repeat a
  pixel: random points are drawn from the pixels not yet taken.

Conventions: masks are ``HxW bool``; images ``HxWx3 uint8`` RGB (``HxW`` grey also accepted);
points are ``Nx2 float64`` ``(x, y)`` pixels, the centre of the top-left pixel at ``(0, 0)``, so
every sampled point is exactly the centre of one mask pixel. A mask with fewer pixels than the
number of points asked for gives each of its pixels once, in row-major order (so fewer points);
an empty mask gives a ``(0, 2)`` array.

Everything is seeded: :class:`QuerySampler` derives a fresh generator from ``SamplingConfig.seed``
and the call's ``stream`` (the engine passes the object id and how many times it sampled that
object), so a call is repeatable while objects and re-samplings do not share random points.

Only numpy and OpenCV are used (no torch; the GPL ``kmedoids`` package is not used).
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .config import SamplingConfig
from .types import NEGATIVE, POSITIVE, as_points

METHODS = ("kmedoids", "shi_tomasi", "random", "mixed")

RngLike = Union[np.random.Generator, int, None]

# Shi-Tomasi settings as SAM-PT uses them: a very low quality level (any corner-like texture
# counts) and corners at least (mask diameter / n) apart so they spread over the object.
_CORNER_QUALITY = 0.001
_CORNER_BLOCK = 3
# The mask is eroded by these fractions of its diameter, the first that leaves enough pixels
# wins, so corners on the object's outline (which often belong to the background) are avoided.
_EROSION_FRACTIONS = (0.06, 0.02, 0.01)
_MIN_ERODED_PIXELS = 10
# Pixels kept around a cropped region so erosion and the corner response there equal the
# full-image result (the 3x3 Sobel + 3x3 block window reach 2 px; erosion reaches half its size).
_CROP_MARGIN = 4
# Rows per strip of the corner response (see _min_eigenvalue) and candidates per spacing check.
_STRIP_PIXELS = 40_000
_SPREAD_BLOCK = 64
# Crops (bounding box + margin) larger than this are searched for corners at half resolution.
_FULL_RES_PIXELS = 160_000


# --------------------------------------------------------------------------------------------
# K-Medoids
# --------------------------------------------------------------------------------------------


def kmedoids(points: np.ndarray, k: int, rng: RngLike = None, max_iter: int = 50) -> np.ndarray:
    """K-Medoids by alternating (Voronoi) iteration from a greedy k-medoids++ seeding.

    The objective is the sum of Euclidean distances from every point to its nearest medoid.
    Seeding picks the first medoid at random and each next one, out of ``2 + ln k`` candidates
    drawn with probability proportional to their distance from the medoids so far, as the one
    that lowers the objective most (greedy k-means++, with distances instead of squared
    distances because the objective is not squared). Then two steps alternate: assign every
    point to its nearest medoid; move every medoid to the member of its cluster with the least
    total distance to the other members. It stops when no medoid moves, when a round lowers the
    objective by less than 0.5%, or after ``max_iter`` rounds. Inputs of at most 200 points
    are then finished with PAM's swap search (best single medoid swap while one helps).

    Inputs of more than ``2 * max(300, 16 k)`` points are first solved twice on random subsets
    of ``max(300, 16 k)`` points and the better solution is refined on all points; there the
    update step scores the members nearest each medoid rather than all members. Distances are
    computed in float32 (exact for pixel coordinates).

    Args:
        points: ``Mx2`` float coordinates (any 2-D points; ``(x, y)`` pixels here).
        k: number of medoids, ``1 <= k <= M``.
        rng: a ``numpy.random.Generator``, an int seed, or ``None`` (seed 0).
        max_iter: most alternating rounds (``>= 1``).

    Returns:
        ``kx2 float64``: the medoids, each one a row of ``points``.

    Raises:
        ValueError: for malformed points, non-finite values, or ``k`` / ``max_iter`` out of range.
    """
    pts = as_points(points, "points")
    k = _as_count(k, "k")
    if not 1 <= k <= len(pts):
        raise ValueError(f"k must be in 1..{len(pts)} (the number of points), got {k}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    index = _kmedoids_index(pts, k, _as_rng(rng), int(max_iter))
    return pts[index].copy()


def kmedoids_cost(points: np.ndarray, medoids: np.ndarray) -> float:
    """The K-Medoids objective: sum over ``points`` (``Mx2``) of the distance to the nearest of
    ``medoids`` (``kx2``)."""
    pts = as_points(points, "points")
    med = as_points(medoids, "medoids")
    if len(pts) == 0:
        return 0.0
    if len(med) == 0:
        raise ValueError("medoids is empty")
    return float(_distances(pts, med).min(axis=1).sum(dtype=np.float64))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``len(a) x len(b)`` Euclidean distances in float32 (pixel coordinates are small integers,
    exact in float32)."""
    a = a.astype(np.float32, copy=False)
    b = b.astype(np.float32, copy=False)
    dx = a[:, 0, None] - b[None, :, 0]
    dy = a[:, 1, None] - b[None, :, 1]
    return cv2.magnitude(dx, dy) if dx.size else np.zeros(dx.shape, np.float32)


# K-Medoids on more than 2x this many points runs first on random coarse subsets of
# max(_COARSE_MIN, _COARSE_PER_CLUSTER * k) points, _COARSE_RESTARTS times; the best coarse
# solution is then refined on all points. On DAVIS masks and backgrounds (1,500-pixel
# subsamples, k = 8 or 18) this lands 2.6% (mean; 6% worst seen) above the best of three PAM
# swap searches, in 4-5 ms on the (shared) build machine.
_COARSE_PER_CLUSTER = 16
_COARSE_MIN = 300
_COARSE_RESTARTS = 2
# Most candidate x member distances computed per medoid update (bounds one iteration's time);
# below it every member of every cluster is a candidate (exact Voronoi iteration).
_UPDATE_BUDGET = 60_000
# Voronoi iteration stops once a round lowers the objective by less than this fraction (its
# last rounds shuffle single medoids for small gains; stopping here halves the rounds).
_REL_TOL = 5e-3
# Inputs up to this many points are finished with PAM swaps (too slow for the coarse subsets).
_SWAP_MAX_POINTS = 200


def _seed_medoids(pts: np.ndarray, k: int, rng: np.random.Generator,
                  nearest: Optional[np.ndarray]) -> np.ndarray:
    """Greedy k-medoids++ seeding; ``nearest`` is each point's distance to fixed centres or None."""
    m = len(pts)
    chosen = []
    if nearest is None:
        first = int(rng.integers(m))
        chosen.append(first)
        nearest = _distances(pts, pts[first:first + 1])[:, 0]
    n_trials = 2 + int(math.log(k))
    while len(chosen) < k:
        cumulative = np.cumsum(nearest, dtype=np.float64)
        if cumulative[-1] <= 0.0:
            # Every point already sits on a centre (duplicate points): take unused ones in order.
            unused = np.setdiff1d(np.arange(m), np.asarray(chosen, np.int64), assume_unique=True)
            chosen.extend(unused[: k - len(chosen)].tolist())
            break
        # side="right" never lands on a zero-weight point (one already on a centre).
        candidates = np.searchsorted(cumulative, rng.random(n_trials) * cumulative[-1], side="right")
        cand_dist = np.minimum(nearest[None, :], _distances(pts[np.minimum(candidates, m - 1)], pts))
        best = int(np.argmin(cand_dist.sum(axis=1, dtype=np.float64)))
        chosen.append(int(min(candidates[best], m - 1)))
        nearest = cand_dist[best]
    return np.asarray(chosen, np.int64)


def _kmedoids_index(pts: np.ndarray, k: int, rng: np.random.Generator, max_iter: int,
                    fixed: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices into ``pts`` (``Mx2``) of ``k`` medoids; ``fixed`` (``Fx2``) are extra centres that
    stay put (points nearest to them belong to no free cluster), used to place medoids around
    corners already chosen."""
    m = len(pts)
    if k >= m:
        return np.arange(m)
    pts = pts.astype(np.float32, copy=False)
    fixed = None if fixed is None or not len(fixed) else fixed.astype(np.float32)
    fixed_dist = None if fixed is None else _distances(pts, fixed).min(axis=1)
    coarse_size = max(_COARSE_MIN, _COARSE_PER_CLUSTER * k)
    if m <= 2 * coarse_size:
        medoids = _alternate(pts, _seed_medoids(pts, k, rng, fixed_dist), max_iter, fixed_dist)
        if m <= _SWAP_MAX_POINTS:
            medoids = _swap_polish(pts, medoids, fixed_dist, max_swaps=max_iter)
        return medoids
    # Cheap coarse solutions, each on its own random subset; the best, scored on all points,
    # is refined on all points, which then takes only a few full-size rounds. Restarts make
    # the bad local optima of Voronoi iteration rarer.
    best, best_cost = None, np.inf
    for _ in range(_COARSE_RESTARTS):
        coarse = np.sort(rng.choice(m, size=coarse_size, replace=False))
        start = coarse[_kmedoids_index(pts[coarse], k, rng, max_iter, fixed)]
        nearest = _distances(pts, pts[start]).min(axis=1)
        if fixed_dist is not None:
            nearest = np.minimum(nearest, fixed_dist)
        cost = float(nearest.sum(dtype=np.float64))
        if cost < best_cost:
            best, best_cost = start, cost
    return _alternate(pts, best, max_iter, fixed_dist)


def _swap_polish(pts: np.ndarray, medoids: np.ndarray, fixed_dist: Optional[np.ndarray],
                 max_swaps: int) -> np.ndarray:
    """PAM's swap phase from ``medoids``: apply the best medoid/non-medoid swap while one
    lowers the objective by more than 0.01%.

    Voronoi iteration stalls in poor local optima on small or evenly spread inputs (6% above
    the optimum on average for 22 uniform points, k=4); swaps reach PAM's quality. Every swap
    is scored at once from each point's nearest and second-nearest centre (the FastPAM1
    decomposition, Schubert & Rousseeuw 2019): removing medoid j and adding candidate x
    changes the objective by
    ``sum_i min(d(x,i) - d1(i), 0) + sum_{i in cluster j} max(min(d(x,i), d2(i)) - d1(i), 0)``.
    """
    m, k = len(pts), len(medoids)
    dist = _distances(pts, pts)  # m x m
    medoids = medoids.copy()
    cols = np.arange(m)
    for _ in range(max_swaps):
        centres = dist[medoids]
        if fixed_dist is not None:
            centres = np.vstack([centres, fixed_dist[None, :]])  # fixed centres: never removed
        if len(centres) > 1:
            two = np.argpartition(centres, 1, axis=0)[:2]
            first = np.where(centres[two[0], cols] <= centres[two[1], cols], two[0], two[1])
            second = np.where(first == two[0], two[1], two[0])
            d1, d2 = centres[first, cols], centres[second, cols]
        else:
            first = np.zeros(m, np.int64)
            d1, d2 = centres[0], np.full(m, np.inf, np.float32)
        objective = float(d1.sum(dtype=np.float64))
        shared = np.minimum(dist - d1[None, :], 0.0).sum(axis=1, dtype=np.float64)  # per x
        extra = np.maximum(np.minimum(dist, d2[None, :]) - d1[None, :], 0.0)  # x by i
        # Per medoid j: the sum of extra over its cluster (the points whose nearest is j).
        order = np.argsort(first, kind="stable")
        counts = np.bincount(first, minlength=len(centres))[:k]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        per_medoid = np.zeros((m, k))
        nonempty = counts > 0
        if nonempty.any():
            sums = np.add.reduceat(extra[:, order], starts[nonempty], axis=1, dtype=np.float64)
            per_medoid[:, nonempty] = sums
        change = shared[:, None] + per_medoid
        change[medoids] = np.inf  # a medoid is no candidate
        x, j = np.unravel_index(int(np.argmin(change)), change.shape)
        if not change[x, j] < -1e-4 * max(objective, 1e-12):
            break
        medoids[j] = x
    return medoids


def _alternate(pts: np.ndarray, medoids: np.ndarray, max_iter: int,
               fixed_dist: Optional[np.ndarray]) -> np.ndarray:
    """Voronoi iteration from ``medoids`` (indices into float32 ``pts``) until no medoid moves,
    a round gains less than ``_REL_TOL``, or ``max_iter`` rounds. ``fixed_dist``: each point's
    distance to the fixed centres, or None."""
    k = len(medoids)
    previous = np.inf
    for _ in range(max_iter):
        dist = _distances(pts, pts[medoids])
        assign = np.argmin(dist, axis=1)
        nearest = dist.min(axis=1)
        if fixed_dist is not None:
            # Ties go to the free medoid, so a medoid always belongs to its own cluster.
            assign[fixed_dist < nearest] = k
            nearest = np.minimum(nearest, fixed_dist)
        objective = float(nearest.sum(dtype=np.float64))
        if objective > previous * (1.0 - _REL_TOL):
            break
        previous = objective
        updated = _update_medoids(pts, assign, medoids)
        if np.array_equal(updated, medoids):
            break
        medoids = updated
    return medoids


def _update_medoids(pts: np.ndarray, assign: np.ndarray, medoids: np.ndarray) -> np.ndarray:
    """Move every medoid to the best candidate member of its cluster, all clusters at once.

    Clusters are laid out as a padded ``k x L`` table of members. Candidates are all members
    when ``k * L * L`` fits the budget, else the members nearest the current medoid (a local
    search step: the objective is convex in the plane, so the best member is near the medoid
    once the medoid is roughly placed, which the coarse stage ensures). A medoid moves only on a
    strict improvement, so the objective never increases and the iteration ends.
    """
    k = len(medoids)
    order = np.argsort(assign, kind="stable")
    grouped = assign[order]
    inside = grouped < k  # points owned by a fixed centre are in no cluster
    order, grouped = order[inside], grouped[inside]
    rank = np.arange(len(order)) - np.searchsorted(grouped, grouped)
    width = int(rank.max()) + 1
    table = np.full((k, width), -1, np.int64)
    table[grouped, rank] = order
    valid = table >= 0
    mem_xy = pts[np.maximum(table, 0)]  # k x L x 2 float32 (padding: point 0)
    n_cand = int(min(width, max(16, _UPDATE_BUDGET // (k * width))))
    if n_cand < width:
        to_medoid = _pairwise(pts[medoids, None, :], mem_xy)[:, 0, :]
        to_medoid[~valid] = np.inf
        pick = np.argpartition(to_medoid, n_cand - 1, axis=1)[:, :n_cand]
        cand = np.concatenate([medoids[:, None], np.take_along_axis(table, pick, axis=1)], axis=1)
    else:
        cand = np.concatenate([medoids[:, None], table], axis=1)  # column 0: the current medoid
    cand_xy = pts[np.maximum(cand, 0)]
    # einsum's own loops, not BLAS: the sums (and so near-tie decisions) must not depend on
    # the BLAS build or its thread count, or the sampler would not be reproducible.
    cost = np.einsum("kcl,kl->kc", _pairwise(cand_xy, mem_xy), valid.astype(np.float32))
    cost[cand < 0] = np.inf
    best = np.argmin(cost, axis=1)  # the first minimum: the current medoid wins ties
    rows = np.arange(k)
    current = cost[:, 0]
    move = cost[rows, best] < current - 1e-5 * np.maximum(1.0, current)
    return np.where(move, cand[rows, best], medoids)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched distances: ``a`` (k x P x 2), ``b`` (k x Q x 2) float32 -> k x P x Q."""
    dx = a[:, :, None, 0] - b[:, None, :, 0]
    dy = a[:, :, None, 1] - b[:, None, :, 1]
    k = dx.shape[0]
    return cv2.magnitude(dx.reshape(k, -1), dy.reshape(k, -1)).reshape(dx.shape)


# --------------------------------------------------------------------------------------------
# Point sampling from a mask
# --------------------------------------------------------------------------------------------


def sample_points(
    mask: np.ndarray,
    n: int,
    method: str = "kmedoids",
    rng: RngLike = None,
    image: Optional[np.ndarray] = None,
    max_pixels: int = 1500,
) -> np.ndarray:
    """Sample ``n`` distinct points on the pixels of ``mask``.

    Args:
        mask: ``HxW bool`` (any array whose non-zero entries mark the region).
        n: number of points (``>= 0``).
        method: ``kmedoids``, ``shi_tomasi``, ``random`` or ``mixed`` (see the module docstring).
        rng: a ``numpy.random.Generator``, an int seed, or ``None`` (seed 0).
        image: ``HxWx3 uint8`` RGB (or ``HxW`` grey) of the mask's frame; needed for Shi-Tomasi
            corners. Without it ``shi_tomasi`` falls back to K-Medoids.
        max_pixels: K-Medoids runs on a random subsample of at most this many mask pixels (at
            least ``n``).

    Returns:
        ``Nx2 float64`` ``(x, y)`` pixel centres of mask pixels, no two equal. ``N == n`` unless
        the mask has fewer than ``n`` pixels, in which case every mask pixel is returned once
        (row-major order); an empty mask gives ``(0, 2)``.

    Raises:
        ValueError: malformed mask or image, shape mismatch, bad ``n``, ``method`` or ``max_pixels``.
    """
    region = _as_mask(mask)
    grey = _as_grey(image, region.shape)
    n = _as_count(n, "n")
    _check_method(method)
    max_pixels = _as_count(max_pixels, "max_pixels")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    return _sample(region, n, method, _as_rng(rng), grey, max_pixels)


def _sample(region: np.ndarray, n: int, method: str, rng: np.random.Generator,
            grey: Optional[np.ndarray], max_pixels: int) -> np.ndarray:
    """:func:`sample_points` on validated inputs (``grey`` is ``HxW`` or None)."""
    flat = np.flatnonzero(region)
    width = region.shape[1]
    if n == 0 or flat.size == 0:
        return np.zeros((0, 2), np.float64)
    if flat.size <= n:
        return _flat_to_xy(flat, width)
    if method == "random":
        return _flat_to_xy(_random_pixels(flat, n, rng), width)
    if method == "kmedoids":
        return _flat_to_xy(_kmedoid_pixels(flat, width, n, rng, max_pixels), width)
    if method == "shi_tomasi":
        return _flat_to_xy(_corner_pixels(region, flat, grey, n, rng, max_pixels), width)
    # mixed: SAM-PT's split of n into K-Medoids, Shi-Tomasi and random points.
    n_kmedoids, n_corners = n // 4, n // 3
    taken = np.zeros(0, np.int64)
    if n_kmedoids:
        taken = _kmedoid_pixels(flat, width, n_kmedoids, rng, max_pixels)
    if n_corners:
        corners = _corner_pixels(region, flat, grey, n_corners, rng, max_pixels)
        taken = _unique_in_order(np.concatenate([taken, corners]))
    extra = _random_pixels(flat, n - len(taken), rng, exclude=taken)
    return _flat_to_xy(np.concatenate([taken, extra]), width)


def _random_pixels(flat: np.ndarray, n: int, rng: np.random.Generator,
                   exclude: Optional[np.ndarray] = None) -> np.ndarray:
    """``n`` distinct entries of ``flat`` drawn uniformly, none in ``exclude`` (fewer if
    ``flat`` runs out)."""
    n_excl = 0 if exclude is None else len(exclude)
    draw = min(n + n_excl, len(flat))
    if n <= 0 or draw <= 0:
        return np.zeros(0, np.int64)
    # Drawing n + |exclude| distinct pixels and dropping the excluded ones is uniform over the
    # rest, and avoids building the (possibly 400k-pixel) set difference.
    picked = flat[rng.choice(len(flat), size=draw, replace=False)]
    if n_excl:
        picked = picked[~np.isin(picked, exclude)]
    return picked[:n]


def _kmedoid_pixels(flat: np.ndarray, width: int, n: int, rng: np.random.Generator,
                    max_pixels: int, fixed: Optional[np.ndarray] = None) -> np.ndarray:
    """Flat indices of ``n`` K-Medoids centres of a random subsample of the pixels ``flat``
    (at most ``max(max_pixels, n)`` of them); ``fixed`` are flat indices of centres that are
    already taken: the medoids are placed around them and never on them."""
    size = max(max_pixels, n)
    if len(flat) > size:
        sub = np.sort(_random_pixels(flat, size, rng, exclude=fixed))
    else:
        sub = flat if fixed is None else flat[~np.isin(flat, fixed)]
    if len(sub) <= n:
        return sub
    fixed_xy = None if fixed is None or not len(fixed) else _flat_to_xy(fixed, width)
    index = _kmedoids_index(_flat_to_xy(sub, width), n, rng, 50, fixed_xy)
    return sub[index]


def _corner_pixels(region: np.ndarray, flat: np.ndarray, grey: Optional[np.ndarray], n: int,
                   rng: np.random.Generator, max_pixels: int) -> np.ndarray:
    """Flat indices of ``n`` distinct pixels: Shi-Tomasi corners, topped up with K-Medoids."""
    width = region.shape[1]
    corners = _shi_tomasi(region, flat, grey, n) if grey is not None else np.zeros(0, np.int64)
    if len(corners) >= n:
        return corners[:n]
    # Too few corners: place the missing points as medoids around the corners found.
    fill = _kmedoid_pixels(flat, width, n - len(corners), rng, max_pixels,
                           corners if corners.size else None)
    return np.concatenate([corners, fill])


def _shi_tomasi(region: np.ndarray, flat: np.ndarray, grey: np.ndarray, n: int) -> np.ndarray:
    """Flat indices of up to ``n`` Shi-Tomasi corners on the eroded region, strongest first.

    The selection is ``cv2.goodFeaturesToTrack``'s (minimum eigenvalue over a 3x3 block,
    3x3 Sobel; keep 3x3 local maxima above ``quality x`` the strongest response under the mask;
    take them strongest first, skipping any closer than ``min_distance`` to one taken), with
    ``min_distance = mask diameter / n`` as in SAM-PT, and gives the same corners on regions up
    to ``_FULL_RES_PIXELS``. It runs on a crop around the region, with the response computed in
    strips (OpenCV's own call costs ~9 ms on a whole 854x480 frame here). Larger regions (the
    background, for negatives) are searched at half resolution, ~4x cheaper: each corner found
    there becomes the top-left full-resolution pixel of its 2x2 block, whose four pixels are all
    in the eroded region. Corners that coarse are as good for PIPS, which tracks at stride 4.
    """
    h, w = region.shape
    ys = np.divmod(flat[[0, -1]], w)[0]  # row-major: the first and last pixel give the rows
    y0, y1 = int(ys[0]), int(ys[1])
    cols = np.any(region[y0:y1 + 1], axis=0)
    x0, x1 = int(np.argmax(cols)), int(w - 1 - np.argmax(cols[::-1]))
    diameter = math.hypot(x1 - x0, y1 - y0)
    # Work on the bounding box plus a margin: the same result as on the whole image, cheaper.
    margin = _CROP_MARGIN + int(diameter * _EROSION_FRACTIONS[0])
    top, bottom = max(0, y0 - margin), min(h, y1 + 1 + margin)
    left, right = max(0, x0 - margin), min(w, x1 + 1 + margin)
    crop = np.ascontiguousarray(region[top:bottom, left:right]).view(np.uint8)
    allowed = crop
    for fraction in _EROSION_FRACTIONS:
        size = int(diameter * fraction)
        if size <= 1:
            break  # a 1x1 kernel does not erode
        # cv2.erode treats the outside of the image as set, like SAM-PT's call on the full frame.
        candidate = cv2.erode(crop, np.ones((size, size), np.uint8))
        if cv2.countNonZero(candidate) >= _MIN_ERODED_PIXELS:
            allowed = candidate
            break
    grey_crop = grey[top:bottom, left:right]
    scale = 1
    if allowed.size > _FULL_RES_PIXELS:
        scale = 2
        ch, cw = allowed.shape[0] // 2, allowed.shape[1] // 2
        a = allowed[:2 * ch, :2 * cw]
        allowed = np.minimum(np.minimum(a[0::2, 0::2], a[0::2, 1::2]), np.minimum(a[1::2, 0::2], a[1::2, 1::2]))
        grey_crop = cv2.resize(grey_crop[:2 * ch, :2 * cw], (cw, ch), interpolation=cv2.INTER_AREA)
    allowed = allowed.astype(np.uint8)  # a copy: ``crop`` may share the caller's mask
    # As OpenCV, never take a pixel on the outermost rows and columns (of the image; elsewhere
    # the crop's outer ring lies in the margin, outside the region, anyway).
    allowed[[0, -1], :] = 0
    allowed[:, [0, -1]] = 0
    response = _min_eigenvalue(np.ascontiguousarray(grey_crop))
    if not cv2.countNonZero(allowed):
        return np.zeros(0, np.int64)
    strongest = cv2.minMaxLoc(response, allowed)[1]
    peaks = response > strongest * _CORNER_QUALITY
    peaks &= response == cv2.dilate(response, None)
    peaks &= allowed.view(bool)
    cy, cx = np.nonzero(peaks)
    if cy.size == 0:
        return np.zeros(0, np.int64)
    strength = response[cy, cx]
    min_distance = diameter / n / scale
    picked = None
    # Usually the strongest few hundred peaks hold all n corners: sort those first and fall
    # back to all peaks only when spacing rejects too many.
    shortlist = max(16 * n, 256)
    if len(strength) > shortlist:
        # The peaks at least as strong as the shortlist's weakest are a prefix of the full
        # order (ties included), so a greedy pass that fills up inside it is the same pass.
        cut = strength[np.argpartition(-strength, shortlist - 1)[shortlist - 1]]
        prefix = np.flatnonzero(strength >= cut)
        picked = _select_corners(cx[prefix], cy[prefix], strength[prefix], n, min_distance)
    if picked is None or len(picked) < n:
        picked = _select_corners(cx, cy, strength, n, min_distance)
    return (picked[:, 1] * scale + top) * w + picked[:, 0] * scale + left


def _select_corners(cx: np.ndarray, cy: np.ndarray, strength: np.ndarray, n: int,
                    min_distance: float) -> np.ndarray:
    """``Kx2 int`` (x, y) of up to ``n`` peaks, strongest first (ties in row-major order, the
    order of ``cx, cy``), spaced by ``min_distance``."""
    order = np.argsort(-strength, kind="stable")
    xy = np.stack([cx[order], cy[order]], axis=1).astype(np.int64)
    return xy[_greedy_spread(xy.astype(np.float64), n, min_distance)]


def _min_eigenvalue(grey: np.ndarray) -> np.ndarray:
    """``cv2.cornerMinEigenVal(grey, 3, ksize=3)``, computed in overlapping strips of rows.

    The values are identical (each output pixel reads at most 2 rows away; strips overlap by
    4), but small strips keep OpenCV's intermediate buffers in cache: 1.5 ms instead of 5.8 ms
    for 854x480 on the build machines.
    """
    h, w = grey.shape
    rows = max(16, _STRIP_PIXELS // max(w, 1))
    if h <= rows + 8:
        return cv2.cornerMinEigenVal(grey, _CORNER_BLOCK, ksize=_CORNER_BLOCK)
    out = np.empty(grey.shape, np.float32)
    pad = 4
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        a, b = max(0, r0 - pad), min(h, r1 + pad)
        strip = cv2.cornerMinEigenVal(grey[a:b], _CORNER_BLOCK, ksize=_CORNER_BLOCK)
        out[r0:r1] = strip[r0 - a:r1 - a]
    return out


def _greedy_spread(xy: np.ndarray, n: int, min_distance: float) -> np.ndarray:
    """Indices of up to ``n`` rows of ``xy`` (in order of preference) taken greedily, skipping
    any row closer than ``min_distance`` to a row already taken (OpenCV's rule: distance <
    min_distance rejects; below 1 px no spacing is enforced)."""
    if min_distance < 1.0:
        return np.arange(min(n, len(xy)))
    limit = min_distance * min_distance
    taken = np.zeros((0, 2))
    chosen = []
    # Candidates in blocks: one vectorised check against the points taken so far removes most;
    # the rest are taken in order, each blocking its close neighbours in the block.
    for start in range(0, len(xy), _SPREAD_BLOCK):
        block = xy[start:start + _SPREAD_BLOCK]
        blocked = np.zeros(len(block), bool)
        if len(taken):
            blocked |= ((block[:, None, :] - taken[None, :, :]) ** 2).sum(axis=2).min(axis=1) < limit
        close = ((block[:, None, :] - block[None, :, :]) ** 2).sum(axis=2) < limit
        accepted = []
        for i in np.flatnonzero(~blocked).tolist():
            if blocked[i]:
                continue
            accepted.append(i)
            chosen.append(start + i)
            if len(chosen) == n:
                return np.asarray(chosen, np.int64)
            blocked |= close[i]
        if accepted:
            taken = np.concatenate([taken, block[accepted]])
    return np.asarray(chosen, np.int64)


def _unique_in_order(values: np.ndarray) -> np.ndarray:
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]


def _flat_to_xy(flat: np.ndarray, width: int) -> np.ndarray:
    ys, xs = np.divmod(np.asarray(flat, np.int64), width)
    return np.stack([xs, ys], axis=1).astype(np.float64)


# --------------------------------------------------------------------------------------------
# The sampler the engine uses
# --------------------------------------------------------------------------------------------


class QuerySampler:
    """Positive and negative query points for one object's mask, as configured.

    Positives: ``cfg.n_positive`` points by ``cfg.positive_method`` on the mask. Negatives:
    ``cfg.n_negative`` points by ``cfg.negative_method`` on the background ``~mask``.

    Deterministic: every call seeds fresh generators from ``cfg.seed`` (one stream for
    positives, another for negatives, so changing the number of negatives leaves the positives
    alone); nothing is kept between calls, so it is safe to share between objects and threads.

    Example::

        sampler = QuerySampler(SamplingConfig(n_positive=8, n_negative=72))
        points, labels = sampler.sample(mask, image)   # Nx2 float (x, y), N int (1 pos, 0 neg)
    """

    def __init__(self, cfg: Optional[SamplingConfig] = None) -> None:
        if cfg is None:
            cfg = SamplingConfig()
        if not isinstance(cfg, SamplingConfig):
            raise ValueError(f"QuerySampler needs a SamplingConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        # SeedSequence takes non-negative integers only: fold negative seeds into 64 bits.
        self._seed = int(cfg.seed) & 0xFFFF_FFFF_FFFF_FFFF

    def _rng(self, kind: int, stream: Sequence[int] = ()) -> np.random.Generator:
        return np.random.default_rng([self._seed, kind, *(int(s) & 0xFFFF_FFFF for s in stream)])

    def sample_positive(self, mask: np.ndarray, image: Optional[np.ndarray] = None,
                        stream: Sequence[int] = ()) -> np.ndarray:
        """``Nx2 float64`` (x, y) positive points on ``mask`` (``HxW bool``); N <= n_positive."""
        region = _as_mask(mask)
        return self._positive(region, _as_grey(image, region.shape), stream)

    def sample_negative(self, mask: np.ndarray, image: Optional[np.ndarray] = None,
                        n: Optional[int] = None, stream: Sequence[int] = ()) -> np.ndarray:
        """``Nx2 float64`` (x, y) negative points on ``~mask``; ``n`` overrides ``cfg.n_negative``."""
        region = _as_mask(mask)
        return self._negative(region, _as_grey(image, region.shape), self._n_negative(n), stream)

    def sample(self, mask: np.ndarray, image: Optional[np.ndarray] = None,
               n_negative: Optional[int] = None, stream: Sequence[int] = ()) -> Tuple[np.ndarray, np.ndarray]:
        """Query points for one object.

        Args:
            mask: ``HxW bool`` of the object.
            image: ``HxWx3 uint8`` RGB of the mask's frame (or ``HxW`` grey); used by Shi-Tomasi
                and mixed sampling, which fall back to K-Medoids without it.
            n_negative: overrides ``cfg.n_negative`` for this call (``>= 0``).
            stream: integers naming this draw (the engine passes ``(object_id, k)`` for the
                object's k-th sampling), so that every object and every re-sampling draws its
                own random points while the same call stays repeatable.

        Returns:
            ``(points, labels)``: ``Nx2 float64`` (x, y) pixels, positives first, then
            negatives; ``N int64`` labels, 1 positive / 0 negative. An empty mask gives no
            positives (the caller decides what that means); a full mask gives no negatives.
        """
        region = _as_mask(mask)
        grey = _as_grey(image, region.shape)
        n_neg = self._n_negative(n_negative)
        positives = self._positive(region, grey, stream)
        negatives = self._negative(region, grey, n_neg, stream)
        points = np.concatenate([positives, negatives], axis=0)
        labels = np.concatenate([
            np.full(len(positives), POSITIVE, np.int64),
            np.full(len(negatives), NEGATIVE, np.int64),
        ])
        return points, labels

    def _positive(self, region: np.ndarray, grey: Optional[np.ndarray], stream: Sequence[int]) -> np.ndarray:
        cfg = self.cfg
        return _sample(region, cfg.n_positive, cfg.positive_method, self._rng(1, stream), grey, cfg.max_pixels)

    def _negative(self, region: np.ndarray, grey: Optional[np.ndarray], n: int, stream: Sequence[int]) -> np.ndarray:
        cfg = self.cfg
        return _sample(~region, n, cfg.negative_method, self._rng(2, stream), grey, cfg.max_pixels)

    def _n_negative(self, n: Optional[int]) -> int:
        return self.cfg.n_negative if n is None else _as_count(n, "n_negative")


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _as_mask(mask) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be a 2-D HxW array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"mask must not be empty, got shape {arr.shape}")
    if arr.dtype != bool:
        if not (np.issubdtype(arr.dtype, np.number)):
            raise ValueError(f"mask must be bool or numeric, got dtype {arr.dtype}")
        arr = arr != 0
    return np.ascontiguousarray(arr)


def _as_grey(image, shape: Tuple[int, int]) -> Optional[np.ndarray]:
    """``HxW`` uint8/float32 grey image from ``HxWx3`` RGB or ``HxW`` grey, or None."""
    if image is None:
        return None
    img = np.asarray(image)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"image must be HxWx3 RGB or HxW grey, got shape {img.shape}")
    if img.shape[:2] != tuple(shape):
        raise ValueError(f"image is {img.shape[1]}x{img.shape[0]} but the mask is {shape[1]}x{shape[0]}")
    if img.dtype != np.uint8:
        if not np.issubdtype(img.dtype, np.number) or np.issubdtype(img.dtype, np.complexfloating):
            raise ValueError(f"image must be uint8 (or real float), got dtype {img.dtype}")
        img = img.astype(np.float32)
    if img.ndim == 3:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(img)


def _as_count(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {n!r}")
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return int(n)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")


def _as_rng(rng: RngLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, bool) or not isinstance(rng, numbers.Integral):
        raise ValueError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")
    return np.random.default_rng(int(rng) & 0xFFFF_FFFF_FFFF_FFFF)
