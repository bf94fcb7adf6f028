"""The online SAM-PT engine: one explicit state object that turns a frame stream into masks.

Per frame (:meth:`SamPtEngine.step`): the frame goes into the point tracker's buffer (its
features computed once), the segmenter computes the frame's image embedding once, every
object's points are tracked to the frame, and each object is segmented from its visible
points (its negatives and the other objects' positives acting as negatives). Every
``reinit_horizon`` frames an object's query points are re-sampled from its newest mask
(SAM-PT-reinit variant A); an empty mask at that moment keeps the old points and marks the
object LOST.

The engine is not thread-safe: one thread (the ROS node's worker, the evaluation loop)
owns it.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

from .config import Config
from .types import (
    NEGATIVE,
    POSITIVE,
    FrameResult,
    ObjectResult,
    ObjectState,
    PointTracker,
    Segmenter,
    TrackedPoints,
    as_labels,
    as_points,
    as_rgb_image,
)

_log = logging.getLogger(__name__)


@dataclass
class _Prompt:
    object_id: int
    frame_index: Optional[int]  # None: the next frame given to step()
    points: Optional[np.ndarray]  # Nx2 (x, y) px
    labels: Optional[np.ndarray]  # N
    mask: Optional[np.ndarray]  # HxW bool


@dataclass
class _Object:
    object_id: int
    labels: np.ndarray  # N int, fixed for the life of a track
    query_frame: int  # the frame the current queries sit on
    prev_points: np.ndarray  # Nx2, positions in the previous processed frame
    prev_mask: Optional[np.ndarray] = None  # HxW bool, mask in the previous processed frame
    lost: bool = False
    history: List[str] = field(default_factory=list)


def motion_prior(mask: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Move ``mask`` by the motion that takes points ``src`` to ``dst``.

    Args:
        mask: ``HxW bool``.
        src, dst: ``Nx2 float`` (x, y) pixels of the same points in the mask's frame and now.

    Returns:
        ``HxW bool``: the mask under a similarity transform fitted robustly to the point
        pairs (3+ pairs), a median translation (1-2 pairs), or unchanged (none).
    """
    import cv2

    if len(src) == 0:
        return mask
    if len(src) >= 3:
        m, inliers = cv2.estimateAffinePartial2D(
            src.astype(np.float32), dst.astype(np.float32), method=cv2.RANSAC,
            ransacReprojThreshold=3.0, maxIters=200, refineIters=5,
        )
    else:
        m = None
    if m is None:
        d = np.median(dst - src, axis=0)
        m = np.array([[1.0, 0.0, d[0]], [0.0, 1.0, d[1]]])
    if np.allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-3):
        return mask
    h, w = mask.shape
    moved = cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    return moved.astype(bool)


class SamPtEngine:
    """Online SAM-PT over a stream of ``HxWx3 uint8`` RGB frames.

    Args:
        config: the validated :class:`~sampt_ros.core.config.Config`.
        tracker: a :class:`~sampt_ros.core.types.PointTracker` (PIPS or Lucas-Kanade).
        segmenter: a :class:`~sampt_ros.core.types.Segmenter` (SAM or the weight-free one).
        sampler: turns a mask into query points: ``sample(mask, image) -> (Nx2 points, N labels)``.
    """

    def __init__(self, config: Config, tracker: PointTracker, segmenter: Segmenter, sampler) -> None:
        self.config = config
        self.tracker = tracker
        self.segmenter = segmenter
        self.sampler = sampler
        self._uses_prior = bool(getattr(segmenter, "uses_prev_mask", True))
        self._objects: Dict[int, _Object] = {}
        self._pending: List[_Prompt] = []
        self._frames: Deque[Tuple[int, np.ndarray]] = collections.deque(maxlen=tracker.buffer_size)
        self._shape: Optional[Tuple[int, int]] = None
        self.last_frame_index = -1

    # ------------------------------------------------------------------ prompts
    @property
    def object_ids(self) -> List[int]:
        """Ids of the objects being tracked plus those whose prompt waits for the next frame."""
        ids = set(self._objects) | {p.object_id for p in self._pending}
        return sorted(ids)

    def has_frame(self, frame_index: int) -> bool:
        """Whether a prompt can still be placed on ``frame_index``."""
        return any(i == frame_index for i, _ in self._frames)

    def set_prompt(
        self,
        object_id: int,
        points=None,
        labels=None,
        mask: Optional[np.ndarray] = None,
        frame_index: Optional[int] = None,
    ) -> None:
        """Add object ``object_id`` or replace its prompt.

        Args:
            object_id: a positive int; an unknown id creates the object.
            points: ``Nx2 float`` (x, y) pixels, with ``labels`` (``N int``, 1 positive /
                0 negative) — at least one positive point; or
            mask: ``HxW bool`` of the object, turned into points by the query sampler.
            frame_index: the frame the prompt belongs to: ``None`` for the next frame given
                to :meth:`step`, or an earlier frame still in the buffer.

        The prompt takes effect at the next :meth:`step`. Raises ``ValueError`` for a
        malformed prompt and ``KeyError`` for a frame no longer buffered; neither changes
        any state.
        """
        if isinstance(object_id, bool) or not isinstance(object_id, (int, np.integer)) or object_id < 1:
            raise ValueError(f"object_id must be a positive integer, got {object_id!r}")
        object_id = int(object_id)
        known = set(self.object_ids)
        if object_id not in known and len(known) >= self.config.engine.max_objects:
            raise ValueError(f"too many objects: engine.max_objects is {self.config.engine.max_objects}")
        if frame_index is not None:
            frame_index = int(frame_index)
            if not self.has_frame(frame_index):
                buffered = [i for i, _ in self._frames]
                raise KeyError(f"frame {frame_index} is not in the buffer (buffered: {buffered})")
        if (points is None) == (mask is None):
            raise ValueError("give either points (with labels) or a mask")
        if mask is not None:
            mask = np.asarray(mask)
            if mask.ndim != 2:
                raise ValueError(f"mask must be HxW, got shape {mask.shape}")
            mask = mask.astype(bool)
            if not mask.any():
                raise ValueError("mask is empty: nothing to track")
            self._check_size(mask.shape, "mask")
            prompt = _Prompt(object_id, frame_index, None, None, mask)
        else:
            pts = as_points(points)
            if len(pts) == 0:
                raise ValueError("prompt has no points")
            lbl = as_labels(labels if labels is not None else np.ones(len(pts), np.int64), len(pts))
            if not np.any(lbl == POSITIVE):
                raise ValueError("prompt needs at least one positive point")
            if self._shape is not None:
                h, w = self._shape
                if np.any(pts < -0.5) or np.any(pts[:, 0] > w - 0.5) or np.any(pts[:, 1] > h - 0.5):
                    raise ValueError(f"points outside the {w}x{h} image: {pts.tolist()}")
            prompt = _Prompt(object_id, frame_index, pts, lbl, None)
        # a newer prompt for the same object replaces one still waiting
        self._pending = [p for p in self._pending if p.object_id != object_id] + [prompt]

    def remove_object(self, object_id: int) -> bool:
        """Forget an object (and any prompt of it still waiting). Returns whether it existed."""
        existed = object_id in self._objects or any(p.object_id == object_id for p in self._pending)
        self._pending = [p for p in self._pending if p.object_id != object_id]
        if self._objects.pop(object_id, None) is not None:
            self.tracker.remove_track(object_id)
        return existed

    def reset(self) -> None:
        """Forget every object, prompt and buffered frame."""
        self._objects.clear()
        self._pending.clear()
        self._frames.clear()
        self.tracker.reset()
        self._shape = None
        self.last_frame_index = -1

    # ------------------------------------------------------------------ the step
    def step(self, frame: np.ndarray) -> FrameResult:
        """Process one ``HxWx3 uint8`` RGB frame and return every object's result.

        Raises ``ValueError`` (and changes nothing) for a frame of the wrong type or shape,
        including a size different from the frames before it (call :meth:`reset` first).
        """
        t_start = time.perf_counter()
        frame = self._check_frame(frame)
        timings = dict.fromkeys(("tracker", "embedding", "decoder", "sampling", "prior"), 0.0)

        t = time.perf_counter()
        index = self.tracker.push_frame(frame)
        timings["tracker"] += time.perf_counter() - t
        self._frames.append((index, frame))
        self._shape = frame.shape[:2]
        self.last_frame_index = index
        warnings = self._apply_pending(index, timings)

        result = FrameResult(frame_index=index, timings=timings, warnings=warnings)
        if not self._objects:
            # only the newest frame is ever segmented: no object, no embedding (a live camera
            # before the first click costs the tracker's features alone)
            timings["total"] = time.perf_counter() - t_start
            return result

        t = time.perf_counter()
        self.segmenter.set_image(frame)
        timings["embedding"] += time.perf_counter() - t

        t = time.perf_counter()
        tracked = self.tracker.track()
        timings["tracker"] += time.perf_counter() - t

        for oid in sorted(self._objects):
            result.objects[oid] = self._segment_object(self._objects[oid], tracked, index, timings)
        for oid in sorted(self._objects):
            self._maybe_reinit(self._objects[oid], result.objects[oid], index, frame, timings)
        timings["total"] = time.perf_counter() - t_start
        return result

    # ------------------------------------------------------------------ internals
    def _check_size(self, shape: Tuple[int, int], what: str) -> None:
        if self._shape is not None and tuple(shape) != tuple(self._shape):
            raise ValueError(f"{what} is {shape[1]}x{shape[0]} but the frames are {self._shape[1]}x{self._shape[0]}")

    def _check_frame(self, frame: np.ndarray) -> np.ndarray:
        frame = as_rgb_image(frame, "frame", min_side=8)
        if self._shape is not None and frame.shape[:2] != self._shape:
            raise ValueError(
                f"frame size changed from {self._shape[1]}x{self._shape[0]} to "
                f"{frame.shape[1]}x{frame.shape[0]}; reset the engine first"
            )
        return frame

    def _image_of(self, index: int) -> np.ndarray:
        for i, img in self._frames:
            if i == index:
                return img
        raise KeyError(index)

    def _apply_pending(self, newest: int, timings: Dict[str, float]) -> List[str]:
        """Turn waiting prompts into tracks; a prompt that no longer fits is dropped with a warning."""
        warnings: List[str] = []
        pending, self._pending = self._pending, []
        h, w = self._shape
        for p in pending:
            index = newest if p.frame_index is None else p.frame_index
            if not self.has_frame(index):
                warnings.append(f"object {p.object_id}: frame {index} left the buffer before the prompt was applied")
                continue
            prior = None
            if p.mask is not None:
                if p.mask.shape != (h, w):
                    warnings.append(f"object {p.object_id}: mask is {p.mask.shape[1]}x{p.mask.shape[0]}, frames are {w}x{h}")
                    continue
                t = time.perf_counter()
                points, labels = self.sampler.sample(p.mask, self._image_of(index))
                timings["sampling"] += time.perf_counter() - t
                prior = p.mask
            else:
                points, labels = p.points, p.labels
                if np.any(points < -0.5) or np.any(points[:, 0] > w - 0.5) or np.any(points[:, 1] > h - 0.5):
                    warnings.append(f"object {p.object_id}: points outside the {w}x{h} image")
                    continue
            labels = np.asarray(labels, np.int64)
            self.tracker.set_track(p.object_id, points, index)
            self._objects[p.object_id] = _Object(
                object_id=p.object_id, labels=labels, query_frame=index,
                prev_points=np.asarray(points, np.float64), prev_mask=prior,
            )
        for msg in warnings:
            _log.warning(msg)
        return warnings

    def _segment_object(self, obj: _Object, tracked: Dict[int, TrackedPoints], index: int,
                        timings: Dict[str, float]) -> ObjectResult:
        tp = tracked[obj.object_id]
        pos = tp.visible & (obj.labels == POSITIVE)
        mask = np.zeros(self._shape, bool)
        score = 0.0
        if pos.any():
            others = [
                tracked[o].points[tracked[o].visible & (self._objects[o].labels == POSITIVE)]
                for o in sorted(self._objects) if o != obj.object_id
            ]
            own = tp.points[tp.visible]
            points = np.concatenate([own] + others, axis=0)
            labels = np.concatenate(
                [obj.labels[tp.visible]] + [np.full(len(o), NEGATIVE, np.int64) for o in others]
            )
            # trackers may carry a visible point just past the border; prompts must lie inside
            h, w = self._shape
            points = np.clip(points, 0.0, [w - 1.0, h - 1.0])
            prior = None
            if self._uses_prior and obj.prev_mask is not None:
                t = time.perf_counter()
                both = tp.visible
                prior = motion_prior(obj.prev_mask, obj.prev_points[both], tp.points[both])
                timings["prior"] += time.perf_counter() - t
            t = time.perf_counter()
            mask, score = self.segmenter.segment(points, labels, prior)
            timings["decoder"] += time.perf_counter() - t
            mask = np.asarray(mask, bool)
        if mask.any():
            obj.lost = False
            state = ObjectState.TRACKING
        else:
            state = ObjectState.LOST if obj.lost else ObjectState.OCCLUDED
        obj.prev_points = tp.points.copy()
        obj.prev_mask = mask if mask.any() else obj.prev_mask
        return ObjectResult(
            object_id=obj.object_id, mask=mask, points=tp.points.copy(), labels=obj.labels.copy(),
            visible=tp.visible.copy(), score=float(score), state=state,
        )

    def _maybe_reinit(self, obj: _Object, res: ObjectResult, index: int, frame: np.ndarray,
                      timings: Dict[str, float]) -> None:
        """Variant A: every h frames re-sample the queries from the newest mask."""
        h = self.config.engine.reinit_horizon
        if h <= 0 or index - obj.query_frame < h - 1:
            return
        obj.query_frame = index  # the next attempt is one horizon later either way
        if not res.mask.any():
            obj.lost = True
            res.state = ObjectState.LOST
            return
        t = time.perf_counter()
        points, labels = self.sampler.sample(res.mask, frame)
        timings["sampling"] += time.perf_counter() - t
        if not np.any(np.asarray(labels) == POSITIVE):
            obj.lost = True
            res.state = ObjectState.LOST
            return
        self.tracker.set_track(obj.object_id, points, index)
        obj.labels = np.asarray(labels, np.int64)
        obj.prev_points = np.asarray(points, np.float64)
