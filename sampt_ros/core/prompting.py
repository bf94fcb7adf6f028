"""SAM-PT's rules between tracked points and masks, shared by every segmenter.

* :func:`build_requests`: tracked points -> one :class:`~sampt_ros.core.types.SegmentRequest`
  per object (SAM-PT's visibility threshold, its border rule, other objects' positive points
  as negatives, the empty-prompt rule);
* :func:`compose_labels`: per-object logits -> one label image (the most confident object
  wins each pixel, background at logit 0, as SAM-PT composes; or the higher id);
* :func:`resize_long_side`, :func:`scale_points`, :func:`resize_logits`, :func:`resize_mask`:
  moving frames, points, logits and masks between the input size and the processing size
  (SAM-PT resizes frames to a long side of 1024 before tracking and segmenting).

Everything here is numpy/OpenCV/Pillow: no torch, no ROS.
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Tuple

import cv2
import numpy as np

from .types import NEGATIVE, POSITIVE, SegmentRequest, TrackedPoints, mask_centroid

#: logit given to a mask prompt on its own frame (SAM-PT's evaluation overwrites the query frame so)
PROMPT_LOGIT = 1e8


# ------------------------------------------------------------------------------------------ prompts
def visible_points(tracked: TrackedPoints, image_size: Tuple[int, int], visibility_threshold: float,
                   border_margin: float) -> np.ndarray:
    """``N bool``: the points that take part in prompts.

    A point is visible when its visibility exceeds ``visibility_threshold`` and, with
    ``border_margin > 0``, it lies strictly inside the image by that fraction of the width and
    height (SAM-PT's out-of-frame rule: ``x/W < m``, ``y/H < m``, ``x/W > 1 - m`` or
    ``y/H > 1 - m`` is outside, whatever the tracker said). With ``border_margin == 0`` points
    outside the image are not visible and the caller clips the others into it.
    """
    h, w = image_size
    pts = np.asarray(tracked.points, np.float64).reshape(-1, 2)
    vis = np.asarray(tracked.visibility, np.float64).reshape(-1) > visibility_threshold
    vis &= np.all(np.isfinite(pts), axis=1)
    if border_margin > 0.0:
        fx, fy = pts[:, 0] / w, pts[:, 1] / h
        m = border_margin
        vis &= ~((fx < m) | (fy < m) | (fx > 1.0 - m) | (fy > 1.0 - m))
    else:
        vis &= (pts[:, 0] >= -0.5) & (pts[:, 0] <= w - 0.5) & (pts[:, 1] >= -0.5) & (pts[:, 1] <= h - 0.5)
    return vis


def build_requests(
    tracks: Mapping[int, TrackedPoints],
    labels: Mapping[int, np.ndarray],
    image_size: Tuple[int, int],
    rules,
    prompted: Optional[Iterable[int]] = None,
    contributing: Optional[Iterable[int]] = None,
) -> Tuple[Dict[int, Optional[SegmentRequest]], Dict[int, np.ndarray]]:
    """Turn every object's tracked points into its prompt, as SAM-PT does.

    Args:
        tracks: ``object_id -> TrackedPoints`` (points and visibility as the tracker reports them).
        labels: ``object_id -> N int`` labels of the object's points (1 positive, 0 negative).
        image_size: ``(H, W)`` of the image the points live in.
        rules: the ``prompting`` config section: ``visibility_threshold`` and ``border_margin``
            (see :func:`visible_points`); ``others_as_negatives``: append the other objects'
            visible positive points (ascending object id, each in point order) as negatives;
            ``max_borrowed_negatives``: at most this many of those, evenly spread over them
            (deterministic; SAM-PT's ``max_other_objects_positive_points`` draws them at random;
            0: all); ``require_own_positive``: no prompt for an object without a visible positive
            point of its own (SAM-PT prompts it anyway when any prompt point exists).
        prompted: the objects to prompt (default: all of ``tracks``).
        contributing: the objects whose positives serve as others' negatives (default: all).

    Returns:
        ``(requests, visible)``: ``object_id -> SegmentRequest`` (None when the prompt is empty:
        no SAM call, the mask is empty) for the prompted objects, and ``object_id -> N bool``
        visible points for every object of ``tracks``. A request lists the object's visible
        points in index order with their labels, then the borrowed negatives.
    """
    visibility_threshold, border_margin = rules.visibility_threshold, rules.border_margin
    h, w = image_size
    order = sorted(tracks)
    prompted = set(order if prompted is None else prompted)
    contributing = set(order if contributing is None else contributing)
    visible: Dict[int, np.ndarray] = {}
    points: Dict[int, np.ndarray] = {}
    for oid in order:
        tp = tracks[oid]
        vis = visible_points(tp, image_size, visibility_threshold, border_margin)
        pts = np.asarray(tp.points, np.float64).reshape(-1, 2)
        if border_margin <= 0.0:
            pts = np.clip(pts, 0.0, [w - 1.0, h - 1.0])  # visible points just past the edge stay usable
        visible[oid], points[oid] = vis, pts
    positives = {
        oid: points[oid][visible[oid] & (np.asarray(labels[oid]) == POSITIVE)]
        for oid in order if oid in contributing
    }
    requests: Dict[int, Optional[SegmentRequest]] = {}
    for oid in order:
        if oid not in prompted:
            continue
        lab = np.asarray(labels[oid], np.int64)
        own_pts, own_lab = points[oid][visible[oid]], lab[visible[oid]]
        borrowed = [positives[o] for o in order if o != oid and o in positives] if rules.others_as_negatives else []
        cap = rules.max_borrowed_negatives
        if cap > 0 and sum(len(b) for b in borrowed) > cap:
            every = np.concatenate(borrowed, axis=0)
            borrowed = [every[np.linspace(0, len(every) - 1, cap).round().astype(int)]]
        pts = np.concatenate([own_pts] + borrowed, axis=0) if borrowed else own_pts
        lbl = np.concatenate([own_lab] + [np.full(len(b), NEGATIVE, np.int64) for b in borrowed]) \
            if borrowed else own_lab
        if len(pts) == 0 or (rules.require_own_positive and not np.any(own_lab == POSITIVE)):
            requests[oid] = None
            continue
        requests[oid] = SegmentRequest(object_id=oid, points=pts, labels=lbl)
    return requests, visible


# ------------------------------------------------------------------------------------------ composition
def compose_labels(logits: Mapping[int, Optional[np.ndarray]], shape: Tuple[int, int], rule: str = "confidence"
                   ) -> np.ndarray:
    """``HxW uint16`` label image from per-object ``HxW`` logits (None: no mask).

    ``confidence``: a background channel of zeros before the objects (ascending id), each pixel
    takes the channel with the largest logit (the first on ties: background, then the lower id)
    - SAM-PT's softmax-argmax. ``id``: every object's ``logits > 0``, the higher id on top.
    """
    out = np.zeros(shape, np.uint16)
    if rule == "id":
        for oid in sorted(logits):
            lg = logits[oid]
            if lg is not None:
                out[lg > 0] = oid
        return out
    if rule != "confidence":
        raise ValueError(f"unknown overlap rule {rule!r} (confidence or id)")
    best = np.zeros(shape, np.float32)
    for oid in sorted(logits):
        lg = logits[oid]
        if lg is None:
            continue
        win = lg > best
        out[win] = oid
        np.copyto(best, lg, where=win)
    return out


def prompt_logits(mask: np.ndarray) -> np.ndarray:
    """``HxW float32`` logits that reproduce a given mask exactly (+/-:data:`PROMPT_LOGIT`)."""
    return np.where(mask, np.float32(PROMPT_LOGIT), np.float32(-PROMPT_LOGIT))


def empty_logits(shape: Tuple[int, int]) -> np.ndarray:
    """``HxW float32`` of ``-inf``: an emptied mask."""
    return np.full(shape, -np.inf, np.float32)


# ------------------------------------------------------------------------------------------ resolution
def processing_size(image_size: Tuple[int, int], long_side: int) -> Tuple[int, int]:
    """``(H, W)`` after resizing so the long side is ``long_side`` (0: unchanged).

    Rounds as segment-anything's ``ResizeLongestSide.get_preprocess_shape`` (SAM-PT's reader).
    """
    h, w = image_size
    if long_side <= 0:
        return h, w
    scale = long_side / float(max(h, w))
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """``HxWx3 uint8`` resized so its long side is ``long_side`` (0: returned as it is).

    Bilinear through Pillow, exactly as SAM-PT's video reader resizes frames (segment-anything's
    ``ResizeLongestSide.apply_image``).
    """
    size = processing_size(image.shape[:2], long_side)
    if size == image.shape[:2]:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def scale_points(points: np.ndarray, src_size: Tuple[int, int], dst_size: Tuple[int, int]) -> np.ndarray:
    """``Nx2`` (x, y) pixels of an image of ``src_size`` -> the same places in ``dst_size`` (pixel centres)."""
    if tuple(src_size) == tuple(dst_size):
        return np.asarray(points, np.float64)
    s = np.array([dst_size[1] / src_size[1], dst_size[0] / src_size[0]])
    return (np.asarray(points, np.float64) + 0.5) * s - 0.5


def resize_logits(logits: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``HxW float32`` logits bilinearly resized to ``size`` (``align_corners=False``, as SAM-PT's
    ``F.interpolate``); an emptied (all ``-inf``) map stays all ``-inf``."""
    if logits.shape == tuple(size):
        return logits
    if not np.isfinite(logits).any():
        return empty_logits(size)
    return cv2.resize(np.ascontiguousarray(logits, np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``HxW bool`` resized (nearest) to ``size``; a mask with pixels keeps at least one."""
    if mask.shape == tuple(size):
        return mask
    out = cv2.resize(mask.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0
    if mask.any() and not out.any():
        p = scale_points(np.array([mask_centroid(mask)]), mask.shape, size)[0]
        out[int(np.clip(round(p[1]), 0, size[0] - 1)), int(np.clip(round(p[0]), 0, size[1] - 1))] = True
    return out
