"""The online SAM-PT engine: one explicit state object that turns a frame stream into masks.

Per frame (:meth:`SamPtEngine.step`):

1. the frame is resized to the processing size (``engine.processing_long_side``; SAM-PT
   works at a long side of 1024) and pushed into the point tracker's buffer (its features
   computed once); the segmenter prepares it once (SAM: one image embedding);
2. every object's points are tracked to the frame and turned into prompts by SAM-PT's rules
   (:mod:`sampt_ros.core.prompting`: visibility, border, other objects' positives as
   negatives); the segmenter answers every object at once;
3. with an appearance memory (``reid.kind``), each mask is scored against what the object
   looked like (appearance, size): a mask that collapsed or drifted onto something else is
   not trusted and the object becomes OCCLUDED, then LOST after ``reid.lost_after`` frames;
   for those, the memory proposes candidate places, the segmenter segments them, and a
   candidate that matches the memory brings the object back with the **same id** (its query
   points re-sampled from the new mask);
4. the trusted masks are composed into one label image at the input size (the most
   confident object wins each pixel, as SAM-PT composes);
5. every ``engine.reinit_horizon`` frames an object's query points are re-sampled from its
   newest mask (SAM-PT-reinit variant A; with ``engine.reinit_resegment`` the frame is
   segmented again from the new points, as SAM-PT does); the memory learns from confident
   masks.

A mask prompt is the object's mask on its own frame (as SAM-PT's evaluation writes it).
A frame of another size than the previous ones (a camera reconfigured) keeps every object:
its last mask is carried to the new size and tracking restarts from it.

The engine is not thread-safe: one thread (the ROS node's worker, the evaluation loop)
owns it.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple

import cv2
import numpy as np

from . import prompting
from .config import Config
from .types import (
    POSITIVE,
    AppearanceMemory,
    FrameContext,
    FrameResult,
    ObjectResult,
    ObjectState,
    PointTracker,
    Segmenter,
    SegmentRequest,
    TrackedPoints,
    as_labels,
    as_points,
    as_rgb_image,
    mask_centroid,
)

_log = logging.getLogger(__name__)

#: the smallest frame side the engine accepts (trackers and segmenters need a few pixels)
MIN_SIDE = 8


@dataclass
class _Prompt:
    object_id: int
    frame_index: Optional[int]  # None: the next frame given to step()
    points: Optional[np.ndarray]  # Nx2 (x, y) px of the input image
    labels: Optional[np.ndarray]  # N
    mask: Optional[np.ndarray]  # HxW bool of the input image


@dataclass
class _Object:
    """The engine's state of one object (processing resolution)."""

    object_id: int
    labels: np.ndarray  # N int, fixed for the life of a track
    query_frame: int  # the frame the current queries sit on
    prompt_frame: int  # the frame of the last prompt
    prompt_mask: Optional[np.ndarray] = None  # a mask prompt, the object's mask on prompt_frame
    mask: Optional[np.ndarray] = None  # the last trusted mask
    mask_points: Optional[np.ndarray] = None  # the tracked points on the last trusted mask's frame
    area: float = 0.0  # remembered area of trusted masks (px, running mean)
    state: ObjectState = ObjectState.TRACKING
    missing: int = 0  # consecutive frames without a trusted mask
    streak: int = 0  # consecutive frames with a trusted mask
    learnt: int = -(10 ** 9)  # the frame the memory last learnt from it
    centre: Optional[Tuple[float, float]] = None  # (x, y) of the last trusted mask
    samples: int = 0  # query-point samplings so far (each draws its own random stream)
    reinit_failed: bool = False  # re-initialisation found no mask (reported LOST until a mask comes back)


@dataclass
class _Outcome:
    """One object's answer in the current frame (processing resolution)."""

    logits: Optional[np.ndarray]  # None: no mask
    seg_score: float = 0.0
    score: float = 0.0
    trusted: bool = False
    reacquired: bool = False
    _mask: Optional[np.ndarray] = None

    @property
    def mask(self) -> np.ndarray:
        """``logits > 0`` (computed once; the logits of an outcome are not replaced)."""
        if self._mask is None:
            self._mask = self.logits > 0
        return self._mask


def motion_prior(mask: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Move ``mask`` by the motion that takes points ``src`` to ``dst``.

    Args:
        mask: ``HxW bool``.
        src, dst: ``Nx2 float`` (x, y) pixels of the same points in the mask's frame and now.

    Returns:
        ``HxW bool``: the mask under a similarity transform fitted robustly to the point
        pairs (3+ pairs), a median translation (1-2 pairs), or unchanged (none).
    """
    if len(src) == 0:
        return mask
    m = None
    if len(src) >= 3:
        m, _ = cv2.estimateAffinePartial2D(
            src.astype(np.float32), dst.astype(np.float32), method=cv2.RANSAC,
            ransacReprojThreshold=3.0, maxIters=200, refineIters=5,
        )
    if m is None:
        d = np.median(dst - src, axis=0)
        m = np.array([[1.0, 0.0, d[0]], [0.0, 1.0, d[1]]])
    if np.allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-3):
        return mask
    h, w = mask.shape
    moved = cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    return moved.astype(bool)


def area_agreement(area: float, remembered: float, min_ratio: float, max_ratio: float) -> float:
    """0..1: how plausible a mask of ``area`` px is for an object remembered at ``remembered`` px.

    1 between ``min_ratio`` and ``max_ratio`` times the remembered area; falling linearly to 0
    below (a collapsed mask) and as ``max_ratio / ratio`` above (a mask that leaked).
    """
    if remembered <= 0.0:
        return 1.0
    ratio = area / remembered
    if ratio < min_ratio:
        return float(ratio / min_ratio) if min_ratio > 0 else 1.0
    if ratio > max_ratio:
        return float(max_ratio / ratio)
    return 1.0


class SamPtEngine:
    """Online SAM-PT over a stream of ``HxWx3 uint8`` RGB frames.

    Args:
        config: the validated :class:`~sampt_ros.core.config.Config`.
        tracker: a :class:`~sampt_ros.core.types.PointTracker`.
        segmenter: a :class:`~sampt_ros.core.types.Segmenter`.
        sampler: turns a mask into query points:
            ``sample(mask, image, stream=(object_id, k)) -> (Nx2 points, N labels)``.
        memory: an :class:`~sampt_ros.core.types.AppearanceMemory` (``reid.kind``), or None:
            then a mask is trusted whenever it is not empty and lost objects are not searched.
    """

    def __init__(self, config: Config, tracker: PointTracker, segmenter: Segmenter, sampler,
                 memory: Optional[AppearanceMemory] = None) -> None:
        self.config = config
        self.tracker = tracker
        self.segmenter = segmenter
        self.sampler = sampler
        self.memory = memory
        self._uses_prior = bool(getattr(segmenter, "uses_prior", False))
        self._objects: Dict[int, _Object] = {}
        self._pending: List[_Prompt] = []
        self._frames: Deque[Tuple[int, np.ndarray]] = collections.deque(maxlen=tracker.buffer_size)
        self._input_size: Optional[Tuple[int, int]] = None  # (H, W) of the input frames
        self._proc_size: Optional[Tuple[int, int]] = None  # (H, W) the components see
        self._search_cursor = 0
        self.last_frame_index = -1

    # ------------------------------------------------------------------ introspection
    @property
    def device(self) -> str:
        """Where the components run, e.g. ``cpu`` or ``cpu+cuda:0``."""
        devices = {str(getattr(self.tracker, "device", "cpu")), str(getattr(self.segmenter, "device", "cpu"))}
        return "+".join(sorted(devices))

    def stats(self) -> Dict[str, Dict[str, float]]:
        """Every component's work counters: ``{"tracker": {...}, "segmenter": {...}, "memory": {...}}``."""
        out = {"tracker": dict(self.tracker.stats()), "segmenter": dict(self.segmenter.stats())}
        if self.memory is not None:
            out["memory"] = dict(self.memory.stats())
        return out

    @property
    def object_ids(self) -> List[int]:
        """Ids of the objects being tracked plus those whose prompt waits for the next frame."""
        ids = set(self._objects) | {p.object_id for p in self._pending}
        return sorted(ids)

    def object_state(self, object_id: int) -> Optional[ObjectState]:
        """The object's state after the last step (None if unknown or not yet stepped)."""
        obj = self._objects.get(object_id)
        return None if obj is None else obj.state

    def has_frame(self, frame_index: int) -> bool:
        """Whether a prompt can still be placed on ``frame_index``."""
        return any(i == frame_index for i, _ in self._frames)

    def warmup(self, size: Tuple[int, int] = (480, 640), frames: int = 2, objects: int = 2) -> float:
        """Run ``frames`` synthetic frames of ``size`` (H, W) with ``objects`` objects, then :meth:`reset`.

        Pays the first-call costs (CUDA context, cuDNN autotuning, ``torch.compile``, lazy
        allocations) before the first real frame. Returns the seconds it took. Every object,
        prompt and buffered frame is forgotten afterwards (work counters keep counting).
        """
        t0 = time.perf_counter()
        h, w = size
        rng = np.random.default_rng(0)
        image = np.clip(rng.normal(128, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        self.reset()
        try:
            for k in range(max(1, objects)):
                mask = np.zeros((h, w), bool)
                cx = int(w * (k + 1) / (objects + 1))
                mask[h // 3: 2 * h // 3, max(cx - w // 10, 0): cx + w // 10] = True
                self.set_prompt(k + 1, mask=mask)
            for _ in range(max(1, frames)):
                self.step(np.roll(image, 3, axis=1))
        finally:
            self.reset()
        return time.perf_counter() - t0

    # ------------------------------------------------------------------ prompts
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
            points: ``Nx2 float`` (x, y) pixels of the input image, with ``labels`` (``N int``,
                1 positive / 0 negative) - at least one positive point; or
            mask: ``HxW bool`` of the object in the input image, turned into query points by
                the sampler (and published as the object's mask on that frame).
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
            if self._input_size is not None and _outside(pts, self._input_size).any():
                h, w = self._input_size
                raise ValueError(f"{int(_outside(pts, self._input_size).sum())} point(s) outside the {w}x{h} image")
            prompt = _Prompt(object_id, frame_index, pts, lbl, None)
        # a newer prompt for the same object replaces one still waiting
        self._pending = [p for p in self._pending if p.object_id != object_id] + [prompt]

    def remove_object(self, object_id: int) -> bool:
        """Forget an object (and any prompt of it still waiting). Returns whether it existed."""
        existed = object_id in self._objects or any(p.object_id == object_id for p in self._pending)
        self._pending = [p for p in self._pending if p.object_id != object_id]
        if self._objects.pop(object_id, None) is not None:
            self.tracker.remove_track(object_id)
            self.segmenter.remove_object(object_id)
            if self.memory is not None:
                self.memory.remove_object(object_id)
        return existed

    def reset(self) -> None:
        """Forget every object, prompt and buffered frame (and every component's stream state)."""
        self._objects.clear()
        self._pending.clear()
        self._frames.clear()
        self.tracker.reset()
        self.segmenter.reset()
        if self.memory is not None:
            self.memory.reset()
        self._input_size = None
        self._proc_size = None
        self.last_frame_index = -1

    # ------------------------------------------------------------------ the step
    def step(self, frame: np.ndarray) -> FrameResult:
        """Process one ``HxWx3 uint8`` RGB frame and return every object's result.

        Raises ``ValueError`` (and changes nothing) for a frame of the wrong type or one with
        a side below :data:`MIN_SIDE` pixels. A frame of a new size keeps the objects (see the
        module docstring) and says so in ``FrameResult.warnings``.
        """
        t_start = time.perf_counter()
        frame = as_rgb_image(frame, "frame", min_side=MIN_SIDE)
        timings = dict.fromkeys(("tracker", "embedding", "decoder", "sampling", "prior", "reid"), 0.0)
        warnings: List[str] = []
        resolution_change = None
        if self._input_size is not None and frame.shape[:2] != self._input_size:
            resolution_change = self._change_resolution(frame.shape[:2])
            warnings.append(resolution_change)
        if self._input_size is None:
            self._input_size = frame.shape[:2]
            self._proc_size = prompting.processing_size(self._input_size, self.config.engine.processing_long_side)
        proc = prompting.resize_long_side(frame, self.config.engine.processing_long_side)

        t = time.perf_counter()
        index = self.tracker.push_frame(proc)
        timings["tracker"] += time.perf_counter() - t
        self._frames.append((index, proc))
        self.last_frame_index = index
        warnings += self._apply_pending(index, timings)
        result = FrameResult(frame_index=index, timings=timings, warnings=warnings,
                             resolution_change=resolution_change)
        if not self._objects:
            # only the newest frame is ever segmented: no object, no embedding (a live camera
            # before the first click costs the tracker's features alone)
            timings["total"] = time.perf_counter() - t_start
            return result

        t = time.perf_counter()
        self.segmenter.set_image(proc)
        timings["embedding"] += time.perf_counter() - t
        t = time.perf_counter()
        tracks = self.tracker.track()
        timings["tracker"] += time.perf_counter() - t
        for oid in self._objects:  # an object without a track (lost across a resolution change) has no points
            tracks.setdefault(oid, TrackedPoints(np.zeros((0, 2)), np.zeros(0)))
        ctx = FrameContext(image=proc, features=self.segmenter.features() if self.memory is not None else None)

        outcomes, visible = self._segment_tracks(tracks, index, timings)
        self._judge(outcomes, ctx, timings)
        self._search(outcomes, tracks, visible, index, ctx, timings)
        self._reinit(outcomes, tracks, visible, index, proc, timings)
        masks = self._compose(outcomes)
        self._remember(outcomes, masks, tracks, ctx, timings)
        result.objects = self._results(outcomes, masks, tracks, visible)
        timings["total"] = time.perf_counter() - t_start
        return result

    # ------------------------------------------------------------------ stages
    def _segment_tracks(self, tracks: Dict[int, TrackedPoints], index: int, timings: Dict[str, float]):
        """Prompt every object from its tracked points; returns outcomes and visible points."""
        cfg = self.config.prompting
        searching = self.memory is not None
        # Points of an object LOST for a while carry no information about where it is now:
        # with a memory to find it again, it is neither prompted nor a source of negatives.
        active = [oid for oid, obj in self._objects.items()
                  if not (searching and obj.state == ObjectState.LOST and obj.query_frame != index)]
        requests, visible = prompting.build_requests(
            tracks, {oid: obj.labels for oid, obj in self._objects.items()}, self._proc_size, cfg,
            prompted=active, contributing=active)
        outcomes = {oid: _Outcome(None) for oid in self._objects}
        batch: List[SegmentRequest] = []
        for oid in sorted(requests):
            obj, req = self._objects[oid], requests[oid]
            if req is None:
                continue
            if self._uses_prior and obj.mask is not None:
                t = time.perf_counter()
                req.prior = self._moved_mask(obj, tracks[oid], visible[oid])
                timings["prior"] += time.perf_counter() - t
            batch.append(req)
        if batch:
            t = time.perf_counter()
            answers = self.segmenter.segment(batch)
            timings["decoder"] += time.perf_counter() - t
            for req, seg in zip(batch, answers):
                outcomes[req.object_id] = _Outcome(np.asarray(seg.logits, np.float32), seg_score=float(seg.score))
        for oid, obj in self._objects.items():
            if obj.prompt_mask is not None and obj.prompt_frame == index:
                # The prompt's mask is the object's mask on its own frame (as SAM-PT's evaluation
                # writes it); the segmenter still saw the prompt (stateful segmenters learn from it).
                outcomes[oid] = _Outcome(prompting.prompt_logits(obj.prompt_mask), seg_score=1.0, score=1.0,
                                         trusted=True)
        return outcomes, visible

    def _moved_mask(self, obj: _Object, tp: TrackedPoints, vis: np.ndarray) -> np.ndarray:
        """The object's last trusted mask moved by its points' motion since that frame."""
        src = obj.mask_points if obj.mask_points is not None else tp.points
        both = vis & np.all(np.isfinite(src), axis=1)
        return motion_prior(obj.mask, src[both], np.asarray(tp.points)[both])

    def _judge(self, outcomes: Dict[int, _Outcome], ctx: FrameContext, timings: Dict[str, float]) -> None:
        """Score every mask and decide which are trusted.

        Without a memory every non-empty mask is trusted. With one, a mask is trusted when its
        score reaches ``reid.min_score``; an object the memory has not learnt yet (a point
        prompt's first frame) is trusted on the segmenter's word.
        """
        t = time.perf_counter()
        for oid, out in outcomes.items():
            if out.trusted:  # a mask prompt on its own frame
                continue
            if out.logits is None or not out.mask.any():
                out.logits = None
                continue
            out.score = self._score(oid, out.mask, out.seg_score, ctx)
            out.trusted = (self.memory is None or not self.memory.knows(oid)
                           or out.score >= self.config.reid.min_score)
        timings["reid"] += time.perf_counter() - t

    def _score(self, oid: int, mask: np.ndarray, seg_score: float, ctx: FrameContext) -> float:
        """Segmenter confidence x agreement with the memory (appearance, size)."""
        if self.memory is None:
            return float(np.clip(seg_score, 0.0, 1.0))
        r = self.config.reid
        obj = self._objects[oid]
        size = area_agreement(float(np.count_nonzero(mask)), obj.area, r.min_area_ratio, r.max_area_ratio)
        appearance = self.memory.similarity(oid, ctx, mask) if self.memory.knows(oid) else 1.0
        return float(np.clip(seg_score, 0.0, 1.0) * appearance * size)

    def _search(self, outcomes: Dict[int, _Outcome], tracks: Dict[int, TrackedPoints],
                visible: Dict[int, np.ndarray], index: int, ctx: FrameContext, timings: Dict[str, float]) -> None:
        """Ask the memory where objects are: re-detection of untrusted ones, regrowth of shrunk ones.

        Untrusted objects (OCCLUDED, LOST) are searched in the whole frame; a trusted object whose
        mask is smaller than ``reid.regrow_ratio`` x its remembered area gets one candidate
        around its mask. Every candidate is segmented (one batched segmenter call, ``probe``
        requests), scored like any mask, and must not take pixels another trusted object holds.
        At most ``reid.objects_per_frame`` objects are searched per frame (lost ones first,
        round robin), which bounds the added cost.
        """
        if self.memory is None:
            return
        r = self.config.reid
        if index % r.search_every:
            return
        t = time.perf_counter()
        known = [oid for oid in sorted(outcomes) if self.memory.knows(oid) and self._objects[oid].area > 0]
        lost = [oid for oid in known if not outcomes[oid].trusted]
        shrunk = [oid for oid in known if outcomes[oid].trusted and outcomes[oid].seg_score < 1.0 and r.regrow_ratio > 0
                  and np.count_nonzero(outcomes[oid].mask) < r.regrow_ratio * self._objects[oid].area]
        if lost:
            start = self._search_cursor % len(lost)
            lost = lost[start:] + lost[:start]
        chosen = (lost + shrunk)[: r.objects_per_frame]
        if not chosen:
            timings["reid"] += time.perf_counter() - t
            return
        self._search_cursor += len([oid for oid in chosen if oid in lost])
        held = {oid: out.mask for oid, out in outcomes.items() if out.trusted}
        # what every other object holds with a trusted mask: not searched, and never taken
        others_held: Dict[int, np.ndarray] = {}
        for oid in chosen:
            others_held[oid] = np.zeros(self._proc_size, bool)
            for other, m in held.items():
                if other != oid:
                    others_held[oid] |= m
        negatives = self._trusted_positives(outcomes, tracks, visible)
        batch: List[SegmentRequest] = []
        for oid in chosen:
            exclude = others_held[oid]
            grow = oid in held
            cands = self.memory.candidates(oid, ctx, exclude, 1 if grow else r.candidates,
                                           around=held[oid] if grow else None)
            for cand in cands:
                neg = [p for o, p in negatives.items() if o != oid]
                pts = np.concatenate([cand.points] + neg, axis=0) if neg else cand.points
                lab = np.concatenate([cand.labels] + [np.zeros(len(p), np.int64) for p in neg]) if neg \
                    else cand.labels
                batch.append(SegmentRequest(oid, pts, lab, prior=cand.prior, probe=True))
        timings["reid"] += time.perf_counter() - t
        if not batch:
            return
        t = time.perf_counter()
        answers = self.segmenter.segment(batch)
        timings["decoder"] += time.perf_counter() - t
        t = time.perf_counter()
        best: Dict[int, Tuple[float, np.ndarray, float]] = {}
        for req, seg in zip(batch, answers):
            oid = req.object_id
            logits = np.asarray(seg.logits, np.float32)
            mask = logits > 0
            if not mask.any():
                continue
            # a region held by another object with a trusted mask is not taken from it
            taken = others_held[oid] & mask
            if taken.any():
                if np.count_nonzero(taken) > 0.5 * np.count_nonzero(mask):
                    continue
                logits = np.where(taken, np.float32(-np.inf), logits)
                mask = mask & ~taken
            score = self._score(oid, mask, float(seg.score), ctx)
            obj = self._objects[oid]
            if oid not in held and obj.centre is not None and r.search_radius > 0:
                # an object reappears near where it was last seen, the more so the shorter it was
                # hidden: a look-alike far away (a replay on a screen, a second car) is discounted
                cx, cy = mask_centroid(mask)
                reach = r.search_radius * np.sqrt(obj.area) * (1.0 + 0.2 * obj.missing)
                dist = np.hypot(cx - obj.centre[0], cy - obj.centre[1])
                score *= float(np.exp(-0.5 * (dist / reach) ** 2))
            if oid in held:
                # regrowth: the larger mask must keep most of the current one, stay within the
                # remembered size and score at least as well
                current = held[oid]
                keeps = np.count_nonzero(mask & current) >= 0.6 * np.count_nonzero(current)
                area = float(np.count_nonzero(mask))
                if not (keeps and np.count_nonzero(current) < area <= 1.3 * self._objects[oid].area
                        and score >= min(outcomes[oid].score, r.accept) and score >= r.min_score):
                    continue
            elif score < r.accept:
                continue
            if score > best.get(oid, (-1.0,))[0]:
                best[oid] = (score, logits, float(seg.score))
        for oid, (score, logits, seg_score) in best.items():
            outcomes[oid] = _Outcome(logits, seg_score=seg_score, score=score, trusted=True, reacquired=True)
        timings["reid"] += time.perf_counter() - t

    def _trusted_positives(self, outcomes: Dict[int, _Outcome], tracks: Dict[int, TrackedPoints],
                           visible: Dict[int, np.ndarray]):
        """Visible positive points of objects with a trusted mask (negatives for candidates)."""
        if not self.config.prompting.others_as_negatives:
            return {}
        out = {}
        for oid, o in outcomes.items():
            if o.trusted and oid in tracks:
                positive = self._objects[oid].labels == POSITIVE
                out[oid] = np.asarray(tracks[oid].points)[visible[oid] & positive]
        return out

    def _compose(self, outcomes: Dict[int, _Outcome]) -> Dict[int, np.ndarray]:
        """Trusted masks without overlaps at the processing size (``oid -> HxW bool``)."""
        trusted = [oid for oid, o in outcomes.items() if o.trusted and o.logits is not None]
        if len(trusted) <= 1:  # nothing overlaps
            empty = np.zeros(self._proc_size, bool)
            return {oid: (outcomes[oid].mask if oid in trusted else empty) for oid in outcomes}
        logits = {oid: (o.logits if o.trusted else None) for oid, o in outcomes.items()}
        labels = prompting.compose_labels(logits, self._proc_size, self.config.engine.overlap)
        return {oid: labels == oid for oid in outcomes}

    def _reinit(self, outcomes: Dict[int, _Outcome], tracks: Dict[int, TrackedPoints],
                visible: Dict[int, np.ndarray], index: int, frame: np.ndarray, timings: Dict[str, float]) -> None:
        """Variant A: every h frames re-sample the queries from the object's newest mask.

        The mask is the object's own (``logits > 0``, before overlaps are resolved, as SAM-PT
        samples it). Without a mask the old points are kept: without a memory the object is
        then LOST (SAM-PT's re-init fails there); with one it simply stays untrusted and is
        searched for. With ``engine.reinit_resegment`` the restarted objects are segmented again
        from their new points (``outcomes``, ``tracks`` and ``visible`` updated in place).
        """
        h = self.config.engine.reinit_horizon
        if h <= 0:
            return
        due = [oid for oid, obj in sorted(self._objects.items())
               if index - obj.query_frame >= h - 1 and not outcomes[oid].reacquired]
        restarted: List[int] = []
        for oid in due:
            obj, out = self._objects[oid], outcomes[oid]
            obj.query_frame = index  # the next attempt is one horizon later either way
            if not (out.trusted and out.logits is not None and out.mask.any()):
                if self.memory is None:
                    obj.reinit_failed = True
                continue
            if self._restart_track(obj, out.mask, index, frame, timings):
                restarted.append(oid)
        if not restarted or not self.config.engine.reinit_resegment:
            return
        # SAM-PT segments the re-initialisation frame again with the new points
        for oid in restarted:
            pts = self._objects[oid].mask_points
            tracks[oid] = TrackedPoints(pts, np.ones(len(pts)))
        cfg = self.config.prompting
        active = [oid for oid, out in outcomes.items() if out.trusted or oid in restarted]
        requests, vis = prompting.build_requests(
            {oid: tracks[oid] for oid in active}, {oid: self._objects[oid].labels for oid in active},
            self._proc_size, cfg, prompted=restarted)
        batch = [req for _, req in sorted(requests.items()) if req is not None]
        for oid in restarted:
            visible[oid] = vis[oid]
            if requests.get(oid) is None:
                outcomes[oid] = _Outcome(None)
        if batch:
            t = time.perf_counter()
            answers = self.segmenter.segment(batch)
            timings["decoder"] += time.perf_counter() - t
            for req, seg in zip(batch, answers):
                logits = np.asarray(seg.logits, np.float32)
                old = outcomes[req.object_id]
                if (logits > 0).any():
                    score = old.score if self.memory is not None else float(np.clip(seg.score, 0.0, 1.0))
                    outcomes[req.object_id] = _Outcome(logits, seg_score=float(seg.score), score=score, trusted=True)
                else:
                    outcomes[req.object_id] = _Outcome(None)

    def _restart_track(self, obj: _Object, mask: np.ndarray, index: int, frame: np.ndarray,
                       timings: Dict[str, float]) -> bool:
        """New query points for ``obj`` sampled from ``mask`` on frame ``index`` (re-init, re-detection)."""
        t = time.perf_counter()
        points, labels = self.sampler.sample(mask, frame, stream=(obj.object_id, obj.samples))
        obj.samples += 1
        timings["sampling"] += time.perf_counter() - t
        if not np.any(np.asarray(labels) == POSITIVE):
            obj.reinit_failed = True
            return False
        self.tracker.set_track(obj.object_id, points, index)
        obj.labels = np.asarray(labels, np.int64)
        obj.query_frame = index
        obj.mask_points = np.asarray(points, np.float64)
        obj.mask = mask
        obj.reinit_failed = False
        return True

    def _remember(self, outcomes: Dict[int, _Outcome], masks: Dict[int, np.ndarray], tracks: Dict[int, TrackedPoints],
                  ctx: FrameContext, timings: Dict[str, float]) -> None:
        """Update each object's state; the memory learns from confident masks."""
        t = time.perf_counter()
        r = self.config.reid
        index = self.last_frame_index
        for oid, out in outcomes.items():
            obj = self._objects[oid]
            mask = masks[oid]
            if out.trusted and mask.any():
                if out.reacquired:
                    # found again (or regrown) by a probe: restart from this mask; the segmenter's
                    # per-object state describes the mask it had before, so it is dropped
                    self._restart_track(obj, mask, index, ctx.image, timings)
                    self.segmenter.remove_object(oid)
                elif obj.query_frame != index or obj.mask_points is None:
                    obj.mask_points = np.asarray(tracks[oid].points, np.float64).copy()
                obj.mask = mask
                obj.missing = 0
                obj.streak = 0 if out.reacquired else obj.streak + 1
                obj.reinit_failed = False
                if self.memory is not None:  # where it was last seen, for the search's position prior
                    obj.centre = mask_centroid(mask)
                # size and appearance are learnt from confident masks only (a mediocre mask's size
                # would drift the remembered one); the appearance at most every learn_every frames
                confident = out.score >= r.update_score and obj.streak >= r.confirm_frames
                if self.memory is None or out.seg_score >= 1.0 or confident or not self.memory.knows(oid):
                    area = float(np.count_nonzero(mask))
                    obj.area = area if obj.area <= 0 or out.seg_score >= 1.0 else 0.9 * obj.area + 0.1 * area
                    due = out.seg_score >= 1.0 or index - obj.learnt >= r.learn_every
                    if self.memory is not None and (due or not self.memory.knows(oid)):
                        self.memory.observe(oid, ctx, mask)
                        obj.learnt = index
                obj.state = ObjectState.LOST if obj.reinit_failed else ObjectState.TRACKING
            else:
                obj.missing += 1
                obj.streak = 0
                lost = obj.missing > r.lost_after or obj.reinit_failed
                obj.state = ObjectState.LOST if lost else ObjectState.OCCLUDED
        timings["reid"] += time.perf_counter() - t

    def _results(self, outcomes: Dict[int, _Outcome], masks: Dict[int, np.ndarray], tracks: Dict[int, TrackedPoints],
                 visible: Dict[int, np.ndarray]) -> Dict[int, ObjectResult]:
        """Everything at the input size."""
        in_size, proc_size = self._input_size, self._proc_size
        if in_size != proc_size:
            logits = {oid: (prompting.resize_logits(o.logits, in_size) if o.trusted and o.logits is not None
                            else None) for oid, o in outcomes.items()}
            labels = prompting.compose_labels(logits, in_size, self.config.engine.overlap)
            out_masks = {oid: labels == oid for oid in outcomes}
        else:
            out_masks = masks
        results: Dict[int, ObjectResult] = {}
        for oid in sorted(outcomes):
            obj, out, tp = self._objects[oid], outcomes[oid], tracks[oid]
            mask = out_masks[oid]
            trusted = obj.state == ObjectState.TRACKING and mask.any()
            results[oid] = ObjectResult(
                object_id=oid,
                mask=mask if trusted else np.zeros(in_size, bool),
                points=prompting.scale_points(tp.points, proc_size, in_size).copy(),
                labels=obj.labels.copy(),
                visible=np.asarray(visible[oid], bool).copy(),
                visibility=np.clip(np.asarray(tp.visibility, np.float64), 0.0, 1.0).copy(),
                score=float(out.score) if trusted else 0.0,
                state=obj.state,
                reacquired=bool(out.reacquired and trusted),
            )
        return results

    # ------------------------------------------------------------------ internals
    def _check_size(self, shape: Tuple[int, int], what: str) -> None:
        if self._input_size is not None and tuple(shape) != tuple(self._input_size):
            raise ValueError(f"{what} is {shape[1]}x{shape[0]} but the frames are "
                             f"{self._input_size[1]}x{self._input_size[0]}")

    def _change_resolution(self, new_size: Tuple[int, int]) -> str:
        """A camera changed resolution: restart tracking at the new size, keeping every object.

        Each object with a mask is re-prompted with that mask scaled to the new size (its id
        and memory stay); an object without one keeps its memory and stays LOST until found.
        Buffered frames are dropped (prompts on them can no longer be placed).
        """
        old = self._input_size
        carried = []
        for oid, obj in sorted(self._objects.items()):
            pending = any(p.object_id == oid for p in self._pending)
            if obj.mask is not None and obj.mask.any() and not pending:
                mask_in = prompting.resize_mask(obj.mask, old) if self._proc_size != old else obj.mask
                self._pending.append(_Prompt(oid, None, None, None, prompting.resize_mask(mask_in, new_size)))
                carried.append(oid)
        for p in self._pending:
            if p.points is not None:
                p.points = prompting.scale_points(p.points, old, new_size)
            if p.mask is not None and p.mask.shape != tuple(new_size):
                p.mask = prompting.resize_mask(p.mask, new_size)
            p.frame_index = None
        lost = [oid for oid in self._objects if oid not in carried and
                not any(p.object_id == oid for p in self._pending)]
        areas = {oid: obj.area for oid, obj in self._objects.items()}
        scale = (new_size[0] * new_size[1]) / float(old[0] * old[1])
        self._frames.clear()
        self.tracker.reset()
        self.segmenter.reset()
        for oid in carried:
            del self._objects[oid]
        self._input_size = new_size
        self._proc_size = prompting.processing_size(new_size, self.config.engine.processing_long_side)
        for oid in lost:
            obj = self._objects[oid]
            obj.state, obj.mask, obj.mask_points = ObjectState.LOST, None, None
            obj.labels = np.zeros(0, np.int64)  # no track until it is found again
            obj.missing = max(obj.missing, self.config.reid.lost_after + 1)
            obj.area = areas[oid] * scale
            obj.query_frame = -1
        msg = (f"frame size changed from {old[1]}x{old[0]} to {new_size[1]}x{new_size[0]}: tracking restarts; "
               f"objects {carried} carried over" + (f", objects {sorted(lost)} stay lost" if lost else ""))
        _log.warning(msg)
        return msg

    def _image_of(self, index: int) -> np.ndarray:
        for i, img in self._frames:
            if i == index:
                return img
        raise KeyError(index)

    def _apply_pending(self, newest: int, timings: Dict[str, float]) -> List[str]:
        """Turn waiting prompts into tracks; a prompt that no longer fits is dropped with a warning."""
        warnings: List[str] = []
        pending, self._pending = self._pending, []
        in_size, proc_size = self._input_size, self._proc_size
        for p in pending:
            index = newest if p.frame_index is None else p.frame_index
            if not self.has_frame(index):
                warnings.append(f"object {p.object_id}: frame {index} left the buffer before the prompt was applied")
                continue
            old = self._objects.get(p.object_id)
            samples = old.samples if old is not None else 0
            prompt_mask = None
            if p.mask is not None:
                if p.mask.shape != tuple(in_size):
                    warnings.append(f"object {p.object_id}: mask is {p.mask.shape[1]}x{p.mask.shape[0]}, "
                                    f"frames are {in_size[1]}x{in_size[0]}")
                    continue
                prompt_mask = prompting.resize_mask(p.mask, proc_size)
                t = time.perf_counter()
                points, labels = self.sampler.sample(prompt_mask, self._image_of(index), stream=(p.object_id, samples))
                samples += 1
                timings["sampling"] += time.perf_counter() - t
                if not np.any(np.asarray(labels) == POSITIVE):
                    warnings.append(f"object {p.object_id}: the mask gave no query point")
                    continue
            else:
                if _outside(p.points, in_size).any():
                    warnings.append(f"object {p.object_id}: points outside the {in_size[1]}x{in_size[0]} image")
                    continue
                points = prompting.scale_points(p.points, in_size, proc_size)
                labels = p.labels
            labels = np.asarray(labels, np.int64)
            self.tracker.set_track(p.object_id, points, index)
            if old is not None:
                self.segmenter.remove_object(p.object_id)  # a new prompt: the old per-object state is stale
            obj = _Object(object_id=p.object_id, labels=labels, query_frame=index, prompt_frame=index,
                          prompt_mask=prompt_mask, mask=prompt_mask, mask_points=np.asarray(points, np.float64),
                          samples=samples)
            if prompt_mask is not None:
                obj.area = float(np.count_nonzero(prompt_mask))
            elif old is not None:
                obj.area = old.area  # the same object, prompted anew: what it looks like still holds
            self._objects[p.object_id] = obj
        for msg in warnings:
            _log.warning(msg)
        return warnings


def _outside(points: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``N bool``: points outside the pixel area of an image of ``size`` (H, W)."""
    h, w = size
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    return (pts[:, 0] < -0.5) | (pts[:, 1] < -0.5) | (pts[:, 0] > w - 0.5) | (pts[:, 1] > h - 0.5)
