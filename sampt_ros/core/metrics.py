"""Evaluation metrics: DAVIS region J and boundary F, and PCK for point tracks.

J and F follow the official DAVIS toolkit (davisvideochallenge/davis2017-evaluation,
``davis2017/metrics.py``), which PyPI ``vos-benchmark`` 0.1.0 repeats per object:

* **J** (region similarity) is the IoU of the predicted and ground-truth masks; two empty masks
  score 1.
* **F** (boundary accuracy) compares one-pixel boundary maps. A pixel is on a mask's boundary
  when it differs from its right, lower or lower-right neighbour (the boundary sits half a
  pixel towards the origin; along the last row and column only the neighbour inside the image
  counts, the corner never). Each boundary is dilated by a disk of radius
  ``ceil(0.008 x image diagonal)`` pixels (8 at 854x480; ``x^2 + y^2 <= r^2``, as
  ``skimage.morphology.disk``); precision is the share of predicted boundary pixels within the
  dilated ground-truth boundary, recall the share of ground-truth boundary pixels within the
  dilated predicted boundary, and F their harmonic mean (0 when both are 0). Edge cases as the
  toolkit: no predicted boundary but a ground-truth one gives precision 1, recall 0 (F 0); the
  reverse precision 0, recall 1 (F 0); neither gives F 1.
* Per sequence (semi-supervised protocol), each object's J and F are averaged over the frames
  **excluding the first and the last**; the sequence's value is the mean over its objects;
  ``JF`` is the mean of J and F. Over a dataset the official figure averages all objects of all
  sequences (:func:`dataset_mean`).

The code is our own (numpy + OpenCV); ``test/test_metrics.py`` checks it against
``vos_benchmark`` value for value where that package is installed.

PCK (percentage of correct keypoints), as PIPS evaluates BADJA: a visible ground-truth point
counts as correct when the tracked point lies strictly within ``0.2 * sqrt(area)`` pixels of it,
``area`` being the pixel count of the object's ground-truth mask in that frame.

All values are fractions in 0..1 (the toolkits print percentages).
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import cv2
import numpy as np

#: The DAVIS boundary tolerance: a fraction of the image diagonal.
BOUNDARY_FRACTION = 0.008
#: PCK's threshold as a fraction of sqrt(mask area) (PIPS on BADJA).
PCK_FRACTION = 0.2


# --------------------------------------------------------------------------------------------
# Single frame, single object
# --------------------------------------------------------------------------------------------


def region_j(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J (IoU) of two ``HxW`` binary masks; 1.0 when both are empty."""
    p, g = _binary_pair(pred, gt)
    return _iou(p, g)


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUNDARY_FRACTION) -> float:
    """Boundary F-measure of two ``HxW`` binary masks, as the DAVIS toolkit's ``f_measure``.

    Args:
        pred, gt: ``HxW`` masks (bool, or any array whose non-zero entries are the object).
        bound_th: tolerance; below 1 a fraction of the image diagonal, else pixels (as DAVIS).
    """
    p, g = _binary_pair(pred, gt)
    return _f_measure(p, g, boundary_disk(p.shape, bound_th))


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """``HxW bool`` one-pixel boundary of a binary mask, as DAVIS' ``_seg2bmap`` at full size.

    A pixel is set when it differs from its right, lower or lower-right neighbour; the image is
    extended by repeating its last row and column, which gives exactly the toolkit's rules for
    the last row and column and leaves the bottom-right corner unset.
    """
    m = _as_binary(mask, "mask")
    return _boundary(m)


def boundary_radius(shape: Tuple[int, int], bound_th: float = BOUNDARY_FRACTION) -> int:
    """Dilation radius in pixels: ``ceil(bound_th * hypot(H, W))``, or ``bound_th`` if >= 1."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def boundary_disk(shape: Tuple[int, int], bound_th: float = BOUNDARY_FRACTION) -> np.ndarray:
    """The ``uint8`` disk structuring element for images of ``shape`` (``x^2 + y^2 <= r^2``)."""
    r = boundary_radius(shape, bound_th)
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


def _boundary(m: np.ndarray) -> np.ndarray:
    padded = np.pad(m, ((0, 1), (0, 1)), mode="edge")
    return (m != padded[:-1, 1:]) | (m != padded[1:, :-1]) | (m != padded[1:, 1:])


def _iou(p: np.ndarray, g: np.ndarray) -> float:
    union = int(np.count_nonzero(p | g))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(p & g)) / union


def _f_measure(p: np.ndarray, g: np.ndarray, disk: np.ndarray) -> float:
    pb, gb = _boundary(p), _boundary(g)
    n_pred, n_gt = int(np.count_nonzero(pb)), int(np.count_nonzero(gb))
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0  # precision 1 / recall 0, or the reverse: F = 0 either way
    pb8, gb8 = pb.view(np.uint8), gb.view(np.uint8)
    gt_dilated = cv2.dilate(gb8, disk)
    pred_dilated = cv2.dilate(pb8, disk)
    precision = int(np.count_nonzero(pb8 & gt_dilated)) / n_pred
    recall = int(np.count_nonzero(gb8 & pred_dilated)) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------------------------
# Sequences
# --------------------------------------------------------------------------------------------


class SequenceScorer:
    """DAVIS J and F of one video, fed frame by frame (semi-supervised protocol).

    ``add(pred, gt)`` takes ``HxW`` integer label maps (0 background, k object k; bool masks
    count as object 1) and scores every object right away, so no masks are kept.

    Objects: ``object_ids`` if given, else the ids in the FIRST ground-truth frame (the objects
    the tracker was prompted with). The official toolkit takes ``1..max`` of that frame: the
    same for DAVIS, whose ids are consecutive. Ids in later frames that are not objects are
    ignored, in the prediction as in the ground truth.

    With ``binary=True`` every non-zero label is object 1 in both maps: DAVIS 2016 annotations
    are 0/255 PNGs, while the engine labels its single object 1.

    :meth:`result` averages frames ``1 .. n-2`` when ``skip_first_and_last`` and ``n >= 3``.
    A sequence of 1 or 2 frames has no such frame: it then averages all its frames (and says
    so in ``"evaluated_frames"``); before any frame it returns NaN values.
    """

    def __init__(self, object_ids: Optional[Iterable[int]] = None, skip_first_and_last: bool = True,
                 binary: bool = False, bound_th: float = BOUNDARY_FRACTION) -> None:
        if object_ids is not None:
            ids = sorted({int(i) for i in object_ids})
            if any(i <= 0 for i in ids):
                raise ValueError(f"object ids must be positive integers, got {ids}")
            if not ids:
                raise ValueError("object_ids is empty")
            self._objects: Optional[List[int]] = ids
        else:
            self._objects = None
        if not bound_th > 0:
            raise ValueError(f"bound_th must be > 0, got {bound_th}")
        self.skip_first_and_last = bool(skip_first_and_last)
        self.binary = bool(binary)
        self.bound_th = float(bound_th)
        self._shape: Optional[Tuple[int, int]] = None
        self._disk: Optional[np.ndarray] = None
        self._j: List[np.ndarray] = []  # per frame: J per object (object order of self._objects)
        self._f: List[np.ndarray] = []

    @property
    def frames(self) -> int:
        """Frames added so far."""
        return len(self._j)

    @property
    def object_ids(self) -> List[int]:
        """The scored object ids (empty until the first frame when taken from it)."""
        return list(self._objects or [])

    def add(self, pred: np.ndarray, gt: np.ndarray) -> Tuple[float, float]:
        """Score one frame. Returns this frame's ``(J, F)`` averaged over the objects (NaN when
        there are no objects)."""
        p, g = self._label_map(pred, "pred"), self._label_map(gt, "gt")
        if p.shape != g.shape:
            raise ValueError(f"pred is {p.shape[1]}x{p.shape[0]} but gt is {g.shape[1]}x{g.shape[0]}")
        if self._shape is None:
            self._shape = p.shape
            self._disk = boundary_disk(p.shape, self.bound_th)
            if self._objects is None:
                ids = np.unique(g)
                self._objects = [int(i) for i in ids if i > 0]
        elif p.shape != self._shape:
            raise ValueError(f"frame {self.frames} is {p.shape[1]}x{p.shape[0]}, the sequence is "
                             f"{self._shape[1]}x{self._shape[0]}")
        j = np.empty(len(self._objects))
        f = np.empty(len(self._objects))
        for i, oid in enumerate(self._objects):
            pm, gm = p == oid, g == oid
            j[i] = _iou(pm, gm)
            f[i] = _f_measure(pm, gm, self._disk)
        self._j.append(j)
        self._f.append(f)
        if not len(j):
            return math.nan, math.nan
        return float(j.mean()), float(f.mean())

    def evaluated_range(self) -> Tuple[int, int]:
        """``[start, stop)`` of the frames :meth:`result` averages."""
        n = self.frames
        if self.skip_first_and_last and n >= 3:
            return 1, n - 1
        return 0, n

    def result(self) -> Dict[str, object]:
        """The sequence's scores, fractions in 0..1.

        Returns:
            ``{"J", "F", "JF"}``: means over objects of each object's mean over the evaluated
            frames; ``"frames"``: frames added; ``"evaluated_frames"``: how many were averaged;
            ``"per_object"``: ``{id: {"J", "F"}}``; ``"J_per_frame"``, ``"F_per_frame"``: every
            added frame's value averaged over objects (the excluded first/last included, for
            plots).
        """
        start, stop = self.evaluated_range()
        ids = self._objects or []
        out: Dict[str, object] = {
            "frames": self.frames,
            "evaluated_frames": stop - start,
            "J_per_frame": [float(v.mean()) if len(v) else math.nan for v in self._j],
            "F_per_frame": [float(v.mean()) if len(v) else math.nan for v in self._f],
        }
        if stop <= start or not ids:
            out.update(J=math.nan, F=math.nan, JF=math.nan, per_object={})
            return out
        j = np.stack(self._j[start:stop]).mean(axis=0)
        f = np.stack(self._f[start:stop]).mean(axis=0)
        out["per_object"] = {oid: {"J": float(j[i]), "F": float(f[i])} for i, oid in enumerate(ids)}
        out["J"], out["F"] = float(j.mean()), float(f.mean())
        out["JF"] = (out["J"] + out["F"]) / 2.0
        return out

    def _label_map(self, arr: np.ndarray, name: str) -> np.ndarray:
        a = _label_map(arr, name)
        return (a != 0).astype(np.uint8) if self.binary else a


def dataset_mean(results: Iterable[Mapping[str, object]]) -> Dict[str, float]:
    """The official dataset figure: J and F averaged over all objects of all sequences.

    Args:
        results: :meth:`SequenceScorer.result` dicts.

    Returns:
        ``{"J", "F", "JF", "objects"}`` (NaN values when there is no object).
    """
    js, fs = [], []
    for res in results:
        for scores in dict(res.get("per_object", {})).values():
            js.append(scores["J"])
            fs.append(scores["F"])
    if not js:
        return {"J": math.nan, "F": math.nan, "JF": math.nan, "objects": 0}
    j, f = float(np.mean(js)), float(np.mean(fs))
    return {"J": j, "F": f, "JF": (j + f) / 2.0, "objects": len(js)}


# --------------------------------------------------------------------------------------------
# Point tracking
# --------------------------------------------------------------------------------------------


def pck(pred_xy: np.ndarray, gt_xy: np.ndarray, visible: np.ndarray, threshold) -> float:
    """Fraction of visible ground-truth points tracked to within ``threshold`` pixels.

    Args:
        pred_xy: ``Nx2`` (x, y) tracked points (NaN counts as a miss).
        gt_xy: ``Nx2`` (x, y) ground truth.
        visible: ``N bool``; only visible points are scored.
        threshold: a float, or ``N`` floats (one per point, e.g. per frame), in pixels;
            a point is correct when its distance is strictly below it (as PIPS on BADJA).

    Returns:
        The fraction in 0..1, NaN when no point is visible.
    """
    pred = np.asarray(pred_xy, np.float64)
    gt = np.asarray(gt_xy, np.float64)
    vis = np.asarray(visible)
    if pred.ndim != 2 or pred.shape[1] != 2:
        raise ValueError(f"pred_xy must be Nx2, got shape {pred.shape}")
    if gt.shape != pred.shape:
        raise ValueError(f"gt_xy must have pred_xy's shape {pred.shape}, got {gt.shape}")
    if vis.shape != (len(pred),):
        raise ValueError(f"visible must have shape ({len(pred)},), got {vis.shape}")
    if vis.dtype != bool:
        raise ValueError(f"visible must be bool, got dtype {vis.dtype}")
    thr = np.asarray(threshold, np.float64)
    if thr.ndim not in (0, 1) or (thr.ndim == 1 and thr.shape != (len(pred),)):
        raise ValueError(f"threshold must be a number or one per point ({len(pred)}), got shape {thr.shape}")
    if np.any(~np.isfinite(thr)) or np.any(thr < 0):
        raise ValueError("threshold must be finite and >= 0")
    if not vis.any():
        return math.nan
    if np.any(~np.isfinite(gt[vis])):
        raise ValueError("gt_xy has NaN or infinite values at visible points")
    dist = np.hypot(*(pred - gt).T)
    thr = np.broadcast_to(thr, dist.shape)
    correct = dist[vis] < thr[vis]  # NaN distances compare False: a miss
    return float(np.count_nonzero(correct)) / int(np.count_nonzero(vis))


def pck_threshold(gt_mask: np.ndarray, fraction: float = PCK_FRACTION) -> float:
    """``fraction * sqrt(area)`` of an ``HxW`` ground-truth mask, in that mask's pixels."""
    m = _as_binary(gt_mask, "gt_mask")
    return float(fraction) * math.sqrt(int(np.count_nonzero(m)))


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _as_binary(mask: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(mask)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D HxW mask, got shape {a.shape}")
    if a.dtype == bool:
        return a
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be bool or numeric, got dtype {a.dtype}")
    return a != 0


def _binary_pair(pred: np.ndarray, gt: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    p, g = _as_binary(pred, "pred"), _as_binary(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred is {p.shape[1]}x{p.shape[0]} but gt is {g.shape[1]}x{g.shape[0]}")
    return p, g


# --------------------------------------------------------------------------------------------
# Re-acquisition: state timelines, disappearance/reappearance events, id swaps, false positives
# --------------------------------------------------------------------------------------------

#: An object is *absent* from a frame when its ground-truth visible area is below this fraction
#: of its typical visible area (the median of its non-zero areas over the sequence); a frame
#: with no pixel of it is always absent. 5 % keeps a sliver at the edge of a wall from counting
#: as a return.
ABSENT_FRACTION = 0.05

#: The IoU a predicted mask needs with a ground-truth mask to count as re-acquired, or to count
#: as matching another object's ground truth (id swap).
MATCH_IOU = 0.5
#: The state name used for frames in which no state was reported for an object (before its
#: prompt, or a frame without output in a replay).
NO_STATE = "NONE"
#: States in which the object claims no mask in the frame.
_NOT_CLAIMING = ("OCCLUDED", "LOST")


def absent_frames(areas, fraction: float = ABSENT_FRACTION) -> np.ndarray:
    """``N bool``: the frames in which an object with these ground-truth ``areas`` (``N``, pixels
    per frame) counts as absent: area 0, or below ``fraction`` x its typical area (the median of
    its non-zero areas)."""
    areas = np.asarray(areas, np.float64)
    nonzero = areas[areas > 0]
    typical = float(np.median(nonzero)) if nonzero.size else 0.0
    return (areas == 0) | (areas < fraction * typical)


def state_name(state) -> str:
    """Name of a state given as :class:`~sampt_ros.core.types.ObjectState`, its integer value,
    a name (any case) or None (``NONE``)."""
    from .types import ObjectState

    if state is None:
        return NO_STATE
    if isinstance(state, ObjectState):
        return state.name
    if isinstance(state, (int, np.integer)) and not isinstance(state, bool):
        try:
            return ObjectState(int(state)).name
        except ValueError:
            return f"STATE_{int(state)}"
    return str(state).upper()


def runs(values: Iterable[object]) -> List[Tuple[object, int, int]]:
    """Maximal runs of equal consecutive values: ``[(value, first_index, last_index), ...]``."""
    out: List[Tuple[object, int, int]] = []
    for i, v in enumerate(values):
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1], i)
        else:
            out.append((v, i, i))
    return out


class ReacquisitionScorer:
    """Per-object re-acquisition figures of one video, fed frame by frame.

    ``add(gt, pred, states)`` takes the frame's ground-truth and predicted ``HxW`` integer label
    maps (0 background, k object k; a bool mask counts as object 1) and the predicted state of
    each object (``{id: ObjectState | int | name}``; a missing id or ``states=None`` means no
    state was reported, ``NONE``). Only a small overlap table is kept per frame, no masks.

    Objects: ``object_ids`` if given, else every id that has a ground-truth pixel in some frame.

    Definitions (``n`` frames, object ``k``; all frames count, none is skipped):

    * **J(f)**: IoU of ``pred == k`` and ``gt == k`` in frame ``f`` (1 when both are empty).
    * **absent / present**: ``k`` is absent from frame ``f`` when its ground-truth area is 0 or
      below ``absent_fraction`` (:data:`ABSENT_FRACTION`) times its typical area (the median of
      its non-zero ground-truth areas over the video); present otherwise.
    * **timeline**: the runs of the predicted state, ``[(state, first, last), ...]``
      (``NONE`` where no state was reported); ``gt_timeline`` the runs of ``VISIBLE``/``ABSENT``.
    * **event**: a maximal run of absent frames ``[a, b]`` that has a present frame before it
      and one after it (the object disappears and reappears). ``reappeared = b + 1``; the
      event's *window* is ``[b + 1, e]``, ``e`` the last frame before the next absent frame (or
      ``n - 1``). ``J_after_return`` is the mean J over the window. The object is *re-acquired*
      at the first frame ``r`` of the window in which its state is ``TRACKING`` (or unreported,
      then its mask alone decides) and J(r) >= ``match_iou`` (:data:`MATCH_IOU`);
      ``frames_to_reacquire = r - reappeared`` (0: at once), both None when that never happens
      within the window. ``states_while_absent`` counts the predicted states over ``[a, b]``.
    * **left**: an absent run that reaches the last frame after a present frame: the object
      left for good (``left_at = a``); it is no event.
    * **id swap**: a frame in which ``k``'s predicted mask is not empty and has IoU >=
      ``match_iou`` with another object ``j``'s ground truth, higher than with its own; counted
      as events (onsets): a run of consecutive swapped frames with the same ``j`` is one swap.
    * **on another object**: a frame in which at least half of ``k``'s predicted mask lies on
      another object ``j``'s ground truth, more of it than on its own (a looser sign of an
      identity mix-up than an id swap: a small object's mask drifting onto a large one never
      reaches IoU 0.5 with it); ``on_other_frames`` counts them, ``on_other_runs`` lists
      ``(j, first, last)``.
    * **false positive** (false re-acquisition): a frame in which the ground truth has no pixel
      of ``k`` but the prediction has, and the state claims the mask (``TRACKING``, or none
      reported; ``OCCLUDED``/``LOST`` do not).
    * **final_state**: the state in the last frame; ``absent_at_end`` whether ``k`` is absent
      there.
    """

    def __init__(self, object_ids: Optional[Iterable[int]] = None, absent_fraction: float = ABSENT_FRACTION,
                 match_iou: float = MATCH_IOU) -> None:
        self._ids: Optional[List[int]] = None
        if object_ids is not None:
            ids = sorted({int(i) for i in object_ids})
            if any(i <= 0 for i in ids):
                raise ValueError(f"object ids must be positive integers, got {ids}")
            self._ids = ids
        if not 0.0 <= float(absent_fraction) < 1.0:
            raise ValueError(f"absent_fraction must be in 0..1, got {absent_fraction}")
        if not 0.0 < float(match_iou) <= 1.0:
            raise ValueError(f"match_iou must be in (0, 1], got {match_iou}")
        self.absent_fraction = float(absent_fraction)
        self.match_iou = float(match_iou)
        self._shape: Optional[Tuple[int, int]] = None
        # per frame, the non-zero cells of the overlap table: (pred labels, gt labels, pixel counts)
        self._conf: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._states: List[Dict[int, str]] = []

    @property
    def frames(self) -> int:
        return len(self._conf)

    def add(self, gt: np.ndarray, pred: np.ndarray, states: Optional[Mapping[int, object]] = None) -> None:
        """Add one frame: ground-truth and predicted label maps and the predicted states."""
        g, p = _label_map(gt, "gt"), _label_map(pred, "pred")
        if g.shape != p.shape:
            raise ValueError(f"pred is {p.shape[1]}x{p.shape[0]} but gt is {g.shape[1]}x{g.shape[0]}")
        if self._shape is None:
            self._shape = g.shape
        elif g.shape != self._shape:
            raise ValueError(f"frame {self.frames} is {g.shape[1]}x{g.shape[0]}, the video is "
                             f"{self._shape[1]}x{self._shape[0]}")
        size = int(max(int(g.max(initial=0)), int(p.max(initial=0)))) + 1
        keys = p.ravel().astype(np.int64) * size + g.ravel().astype(np.int64)
        if size <= 256:
            counts = np.bincount(keys, minlength=size * size)
            keys = np.nonzero(counts)[0]
            counts = counts[keys]
        else:
            keys, counts = np.unique(keys, return_counts=True)
        # the non-zero cells of the overlap table: (predicted label, ground-truth label, pixels)
        self._conf.append((keys // size, keys % size, counts.astype(np.int64)))
        self._states.append({int(k): state_name(v) for k, v in (states or {}).items()})

    def object_ids(self) -> List[int]:
        """The scored objects."""
        if self._ids is not None:
            return list(self._ids)
        ids = set()
        for _p, g, _c in self._conf:
            ids.update(int(i) for i in g if i > 0)
        return sorted(ids)

    # -- per-object arrays ------------------------------------------------------------------
    def _areas(self, oid: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per frame: ground-truth area, predicted area, their intersection."""
        gt = np.array([c[g == oid].sum() for p, g, c in self._conf], np.int64)
        pr = np.array([c[p == oid].sum() for p, g, c in self._conf], np.int64)
        inter = np.array([c[(p == oid) & (g == oid)].sum() for p, g, c in self._conf], np.int64)
        return gt, pr, inter

    @staticmethod
    def _iou(gt: np.ndarray, pr: np.ndarray, inter: np.ndarray) -> np.ndarray:
        union = gt + pr - inter
        return np.where(union > 0, inter / np.maximum(union, 1), 1.0)

    def result(self) -> Dict[str, object]:
        """``{"frames", "objects": {id: per-object dict}, "summary": digest}`` (see the class doc).

        Per object: ``J_all_frames`` (mean J over every frame), ``timeline``, ``gt_timeline``,
        ``first_visible``, ``events`` (each ``{"disappeared", "reappeared", "absent_frames",
        "window", "J_after_return", "reacquired_frame", "frames_to_reacquire",
        "states_while_absent", "false_positive_frames"}``), ``left_at``, ``id_swaps``,
        ``id_swap_runs`` (``[(other_id, first, last)]``), ``on_other_frames``, ``on_other_runs``,
        ``false_positive_frames``,
        ``false_positive_runs`` (``[(first, last)]``), ``final_state``, ``absent_at_end``.
        """
        n = self.frames
        ids = self.object_ids()
        areas = {oid: self._areas(oid) for oid in ids}
        j = {oid: self._iou(*areas[oid]) for oid in ids}
        objects: Dict[int, Dict[str, object]] = {}
        for oid in ids:
            gt, pr, _ = areas[oid]
            states = [s.get(oid, NO_STATE) for s in self._states]
            absent = absent_frames(gt, self.absent_fraction)
            claims = np.array([s not in _NOT_CLAIMING for s in states], bool)
            tracking = np.array([s in ("TRACKING", NO_STATE) for s in states], bool)
            fp = (gt == 0) & (pr > 0) & claims
            obj: Dict[str, object] = {
                "J_all_frames": float(j[oid].mean()) if n else math.nan,
                "timeline": [(str(v), a, b) for v, a, b in runs(states)],
                "gt_timeline": [("ABSENT" if v else "VISIBLE", a, b) for v, a, b in runs(absent.tolist())],
                "first_visible": int(np.argmax(~absent)) if (~absent).any() else None,
            }
            events, left_at = [], None
            gt_runs = runs(absent.tolist())
            for k, (is_absent, a, b) in enumerate(gt_runs):
                if not is_absent or k == 0:
                    continue  # present, or absent before the first appearance
                if b == n - 1:
                    left_at = a
                    continue
                stop = gt_runs[k + 1][2]  # the present run after it ends here
                window = np.arange(b + 1, stop + 1)
                ok = tracking[window] & (j[oid][window] >= self.match_iou) & (pr[window] > 0)
                r = int(window[np.argmax(ok)]) if ok.any() else None
                counts: Dict[str, int] = {}
                for s in states[a:b + 1]:
                    counts[s] = counts.get(s, 0) + 1
                events.append({
                    "disappeared": a, "reappeared": b + 1, "absent_frames": b + 1 - a,
                    "window": (b + 1, stop), "J_after_return": float(j[oid][window].mean()),
                    "reacquired_frame": r, "frames_to_reacquire": None if r is None else r - (b + 1),
                    "states_while_absent": counts, "false_positive_frames": int(fp[a:b + 1].sum()),
                })
            obj["events"] = events
            obj["left_at"] = left_at
            # id swaps
            swapped_with: List[Optional[int]] = []
            on_other: List[Optional[int]] = []
            for f in range(n):
                best, best_iou, most, most_px = None, 0.0, None, 0
                p, g, c = self._conf[f]
                if pr[f] > 0:
                    mine = p == oid
                    for other, inter in zip(g[mine].tolist(), c[mine].tolist()):
                        if other == oid or other not in areas:
                            continue
                        iou = inter / (int(pr[f]) + int(areas[other][0][f]) - inter)
                        if iou > best_iou:
                            best, best_iou = other, iou
                        if inter > most_px:
                            most, most_px = other, inter
                own = float(j[oid][f])
                swapped_with.append(best if best is not None and best_iou >= self.match_iou and best_iou > own
                                    else None)
                own_px = int(areas[oid][2][f])
                on_other.append(most if most is not None and most_px >= 0.5 * int(pr[f]) and most_px > own_px
                                else None)
            swap_runs = [(int(v), a, b) for v, a, b in runs(swapped_with) if v is not None]
            obj["id_swaps"] = len(swap_runs)
            obj["id_swap_runs"] = swap_runs
            obj["on_other_frames"] = sum(v is not None for v in on_other)
            obj["on_other_runs"] = [(int(v), a, b) for v, a, b in runs(on_other) if v is not None]
            obj["false_positive_frames"] = int(fp.sum())
            obj["false_positive_runs"] = [(a, b) for v, a, b in runs(fp.tolist()) if v]
            obj["final_state"] = states[-1] if n else NO_STATE
            obj["absent_at_end"] = bool(absent[-1]) if n else False
            objects[oid] = obj
        return {"frames": n, "objects": objects, "summary": reacquisition_digest(objects)}


def reacquisition_digest(objects: Mapping[int, Mapping[str, object]]) -> Dict[str, object]:
    """A video's (or a set's) re-acquisition figures from per-object results.

    ``objects``: ``{id: per-object dict}`` of :meth:`ReacquisitionScorer.result` (for several
    videos, any unique keys). Returns ``{"objects", "events", "reacquired",
    "mean_frames_to_reacquire", "J_after_return_mean", "J_after_return_min", "id_swaps",
    "on_other_frames", "false_positive_frames", "left", "left_final_states"}``: ``reacquired`` counts events whose
    object was re-acquired; the means are over those events (None when there is none); ``left``
    lists the objects that left for good, ``left_final_states`` their final states.
    """
    events = [e for o in objects.values() for e in o["events"]]
    back = [e["frames_to_reacquire"] for e in events if e["frames_to_reacquire"] is not None]
    j_after = [e["J_after_return"] for e in events]
    left = [k for k, o in objects.items() if o.get("left_at") is not None]
    return {
        "objects": len(objects),
        "events": len(events),
        "reacquired": len(back),
        "mean_frames_to_reacquire": float(np.mean(back)) if back else None,
        "J_after_return_mean": float(np.mean(j_after)) if j_after else None,
        "J_after_return_min": float(np.min(j_after)) if j_after else None,
        "id_swaps": int(sum(o["id_swaps"] for o in objects.values())),
        "on_other_frames": int(sum(o.get("on_other_frames", 0) for o in objects.values())),
        "false_positive_frames": int(sum(o["false_positive_frames"] for o in objects.values())),
        "left": left,
        "left_final_states": {k: objects[k]["final_state"] for k in left},
    }


def score_reacquisition(gt_maps: Iterable[np.ndarray], pred_maps: Iterable[np.ndarray],
                        states: Optional[Iterable[Optional[Mapping[int, object]]]] = None,
                        object_ids: Optional[Iterable[int]] = None, absent_fraction: float = ABSENT_FRACTION,
                        match_iou: float = MATCH_IOU) -> Dict[str, object]:
    """Re-acquisition figures of a whole video (see :class:`ReacquisitionScorer` for definitions).

    Args:
        gt_maps, pred_maps: per frame, ``HxW`` integer label maps (same number of frames).
        states: per frame, ``{object_id: state}`` (ObjectState, int or name) or None.
        object_ids: the objects to score (default: every id in the ground truth).
    """
    scorer = ReacquisitionScorer(object_ids, absent_fraction, match_iou)
    gts, preds = list(gt_maps), list(pred_maps)
    sts = list(states) if states is not None else [None] * len(gts)
    if not len(gts) == len(preds) == len(sts):
        raise ValueError(f"{len(gts)} ground-truth maps, {len(preds)} predictions and {len(sts)} state sets")
    for g, p, s in zip(gts, preds, sts):
        scorer.add(g, p, s)
    return scorer.result()


def object_scores(sequence_result: Mapping[str, object],
                  reacquisition_result: Optional[Mapping[str, object]] = None,
                  object_ids: Optional[Iterable[int]] = None) -> Dict[int, Dict[str, object]]:
    """Per object: its DAVIS ``J`` and ``F`` (from :meth:`SequenceScorer.result`) merged with its
    re-acquisition figures (from :meth:`ReacquisitionScorer.result`, when given).

    ``sampt-eval davis`` and the replay report both build their ``objects`` entries with it.
    """
    per = dict(sequence_result.get("per_object") or {})
    reacq = dict(reacquisition_result["objects"]) if reacquisition_result is not None else {}
    ids = sorted({int(i) for i in object_ids} if object_ids is not None else set(per) | set(reacq))
    out: Dict[int, Dict[str, object]] = {}
    for oid in ids:
        entry: Dict[str, object] = {
            "J": float(per[oid]["J"]) if oid in per else math.nan,
            "F": float(per[oid]["F"]) if oid in per else math.nan,
        }
        entry.update(reacq.get(oid, {}))
        out[oid] = entry
    return out


def format_timeline(object_id: int, obj: Mapping[str, object], max_runs: int = 12) -> str:
    """One line: the object's state runs and what happened at each return, e.g.
    ``object 1: TRACKING 0-57 | OCCLUDED 58-70 | TRACKING 71-149 (came back at 70, re-acquired
    after 1 frames, J after return 0.93)``."""
    tl = list(obj["timeline"])
    parts = [f"{s} {a}-{b}" for s, a, b in tl]
    if len(parts) > max_runs:
        keep = max(1, max_runs // 2)
        parts = parts[:keep] + [f"... {len(tl) - 2 * keep} more runs ..."] + parts[-keep:]
    notes = []
    for e in obj["events"]:
        how = ("not re-acquired" if e["reacquired_frame"] is None
               else f"re-acquired after {e['frames_to_reacquire']} frames")
        notes.append(f"came back at {e['reappeared']}, {how}, J after return {e['J_after_return']:.2f}")
    if obj.get("left_at") is not None:
        notes.append(f"left at {obj['left_at']}, never came back, final state {obj['final_state']}")
    if obj.get("id_swaps"):
        notes.append(f"{obj['id_swaps']} id swap(s)")
    if obj.get("on_other_frames"):
        notes.append(f"{obj['on_other_frames']} frame(s) mostly on another object")
    if obj.get("false_positive_frames"):
        notes.append(f"{obj['false_positive_frames']} false-positive frame(s)")
    return f"object {object_id}: " + " | ".join(parts) + (f" ({'; '.join(notes)})" if notes else "")


def _label_map(arr: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 2:
        raise ValueError(f"{name} must be an HxW label map, got shape {a.shape}")
    if a.dtype == bool:
        return a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels (or bool), got dtype {a.dtype}")
    if a.size and int(a.min()) < 0:
        raise ValueError(f"{name} has negative labels")
    if a.size and int(a.max()) > 65535:
        raise ValueError(f"{name} has labels above 65535")
    return a
