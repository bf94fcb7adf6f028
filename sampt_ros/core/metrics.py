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
        a = np.asarray(arr)
        if a.ndim != 2:
            raise ValueError(f"{name} must be an HxW label map, got shape {a.shape}")
        if a.dtype == bool:
            return a.astype(np.uint8)
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must hold integer labels (or bool), got dtype {a.dtype}")
        if self.binary:
            return (a != 0).astype(np.uint8)
        return a


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
