"""Shared data types and the protocols of the engine's pluggable components.

Conventions used everywhere in ``sampt_ros.core``:

* images are ``HxWx3 uint8`` RGB arrays;
* masks are ``HxW bool`` arrays of the image's size;
* logits are ``HxW float32`` arrays of the image's size: ``> 0`` inside the mask, ``-inf``
  everywhere when a segmenter emptied the mask;
* points are ``Nx2 float`` arrays of ``(x, y)`` pixel coordinates (x to the right,
  y down, the centre of the top-left pixel at ``(0, 0)``);
* labels are ``N int`` arrays: ``1`` positive (on the object), ``0`` negative;
* visibility is ``N float`` in 0..1, a tracker's confidence that a point is visible.

Components (registered in :mod:`sampt_ros.core.registry`, built from the config):

* :class:`PointTracker` carries each object's query points from frame to frame;
* :class:`Segmenter` turns prompts into per-object logits, all objects of a frame at once;
* :class:`AppearanceMemory` remembers what each object looks like, scores masks against
  that, and proposes where a lost object might be.

Every component has ``reset()`` (forget every per-stream state), a ``device`` (where it runs)
and ``stats()`` (its work counters); per-object state is keyed by the object id the engine
passes in. This module never imports ROS or torch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

POSITIVE = 1
NEGATIVE = 0


class ObjectState(enum.IntEnum):
    """What the engine knows about an object in the newest frame.

    The integer values are part of the ROS message contract (``TrackedObject.state``).
    """

    TRACKING = 0  #: a trusted mask was produced in this frame
    OCCLUDED = 1  #: no trusted mask in this frame (hidden, out of view, or the mask did not match the object)
    LOST = 2  #: no trusted mask for longer than ``reid.lost_after`` frames (or re-initialisation found none)


# ------------------------------------------------------------------------------------------ tracker
@dataclass
class TrackedPoints:
    """Positions of one object's points in the newest frame, as the tracker reports them.

    Attributes:
        points: ``Nx2 float`` (x, y) pixels; a point that left the image may lie outside it.
        visibility: ``N float`` in 0..1, the tracker's confidence that each point is visible
            (the engine's prompting rules decide what counts as visible).
    """

    points: np.ndarray
    visibility: np.ndarray


class PointTracker(Protocol):
    """An online, multi-object point tracker over a bounded buffer of recent frames.

    Frames are numbered by the tracker from 0 in the order they were pushed. Each object's
    track holds query points placed on one buffered frame; :meth:`track` returns every
    track's positions in the newest frame.
    """

    #: how many recent frames are kept; a track can start on any of them
    buffer_size: int

    @property
    def device(self) -> str:
        """Where the tracker computes (``cpu``, ``cuda:0``)."""

    def push_frame(self, image: np.ndarray) -> int:
        """Add a ``HxWx3 uint8`` RGB frame; compute its features once. Returns its index."""

    def has_frame(self, index: int) -> bool:
        """Whether frame ``index`` is still in the buffer."""

    def set_track(self, object_id: int, points: np.ndarray, frame_index: int) -> None:
        """Start (or restart) object ``object_id``'s track from ``Nx2`` (x, y) points on a buffered frame.

        Raises ``KeyError`` if ``frame_index`` is no longer buffered and ``ValueError`` for
        malformed points; neither changes any state.
        """

    def remove_track(self, object_id: int) -> None:
        """Forget object ``object_id``'s track (no error if unknown)."""

    def track(self) -> Dict[int, TrackedPoints]:
        """Positions of every track in the newest frame."""

    def reset(self) -> None:
        """Forget all frames and tracks (frame numbering restarts at 0)."""

    def stats(self) -> Dict[str, float]:
        """Work counters since construction (e.g. ``frames_prepared``, ``network_calls``)."""


# ------------------------------------------------------------------------------------------ segmenter
@dataclass
class SegmentRequest:
    """What the segmenter is asked for one object in the current image.

    Attributes:
        object_id: the object (a segmenter may keep per-object state under it).
        points: ``Nx2 float`` (x, y) pixels of the current image: the object's visible points,
            then the negatives borrowed from other objects.
        labels: ``N int``: 1 positive / 0 negative.
        prior: ``HxW bool`` or None: where the object probably is now (its last trusted mask
            moved by its points' motion, or a re-detection candidate's region). Segmenters
            with ``uses_prior`` use it; SAM ignores it.
        probe: a hypothesis (a re-detection candidate), not the object's own track: the
            segmenter must not update its per-object state from it.
    """

    object_id: int
    points: np.ndarray
    labels: np.ndarray
    prior: Optional[np.ndarray] = None
    probe: bool = False


@dataclass
class Segmentation:
    """A segmenter's answer for one request.

    Attributes:
        logits: ``HxW float32`` at the current image's size: ``> 0`` inside the mask;
            ``-inf`` everywhere when the segmenter emptied it (e.g. SAM-PT's IoU cut-off).
        score: the segmenter's own confidence in 0..1 (SAM: its predicted IoU, clipped).
        predicted_iou: the SAM family's raw IoU prediction of the last pass (None for others).
    """

    logits: np.ndarray
    score: float
    predicted_iou: Optional[float] = None

    @property
    def mask(self) -> np.ndarray:
        """``HxW bool``: ``logits > 0``."""
        return self.logits > 0


@dataclass
class FeatureMap:
    """Per-frame appearance features for re-identification, computed by the segmenter anyway.

    Attributes:
        features: ``C x h x w`` array (numpy, or a torch tensor on the segmenter's device).
        image_size: ``(H, W)`` of the image the features describe.
        valid_size: ``(h_valid, w_valid)``: the grid cells that cover the image (SAM pads its
            input to a square, so the image covers only the top-left part of the grid).
    """

    features: Any
    image_size: Tuple[int, int]
    valid_size: Tuple[int, int]


class Segmenter(Protocol):
    """Prompted segmentation: one image preparation per frame, every object's prompts against it."""

    #: whether :attr:`SegmentRequest.prior` is used; when False the engine skips computing it
    uses_prior: bool

    @property
    def device(self) -> str:
        """Where the segmenter computes (``cpu``, ``cuda:0``)."""

    def set_image(self, image: np.ndarray) -> None:
        """Prepare a ``HxWx3 uint8`` RGB image once (SAM: its image embedding)."""

    def segment(self, requests: Sequence[SegmentRequest]) -> List[Segmentation]:
        """Segment every request in the current image (one answer per request, in order).

        Requests with no point are not sent. A segmenter answers all requests of a frame
        together, so it can batch them.
        """

    def features(self) -> Optional[FeatureMap]:
        """The current image's appearance features (SAM: the image embedding), or None."""

    def remove_object(self, object_id: int) -> None:
        """Forget per-object state of ``object_id`` (no error if unknown)."""

    def reset(self) -> None:
        """Forget the current image and every per-object and per-stream state."""

    def stats(self) -> Dict[str, float]:
        """Work counters since construction (``embeddings_computed``, ``decoder_calls``, ...)."""


# ------------------------------------------------------------------------------------------ memory
@dataclass
class FrameContext:
    """What an appearance memory may read from the current frame.

    Attributes:
        image: ``HxWx3 uint8`` RGB at the processing resolution.
        features: the segmenter's :class:`FeatureMap` of this image, or None.
        cache: per-frame scratch space the memory may fill (e.g. a quantised colour image),
            dropped after the frame.
    """

    image: np.ndarray
    features: Optional[FeatureMap] = None
    cache: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Candidate:
    """A place where a lost object might be, and how to prompt the segmenter there.

    Attributes:
        points: ``Nx2 float`` (x, y) pixels; labels: ``N int`` (at least one positive).
        prior: ``HxW bool`` or None: the candidate region (for segmenters that use a prior).
    """

    points: np.ndarray
    labels: np.ndarray
    prior: Optional[np.ndarray]


class AppearanceMemory(Protocol):
    """Per-object appearance memory with a bounded number of entries per object."""

    def observe(self, object_id: int, ctx: FrameContext, mask: np.ndarray) -> None:
        """Learn object ``object_id`` from a trusted ``HxW bool`` mask in this frame."""

    def similarity(self, object_id: int, ctx: FrameContext, mask: np.ndarray) -> float:
        """How well a mask in this frame matches what the object looks like, 0..1 (1 without memory)."""

    def candidates(self, object_id: int, ctx: FrameContext, exclude: np.ndarray, n: int,
                   around: Optional[np.ndarray] = None) -> List[Candidate]:
        """Up to ``n`` places where the object might be, outside the ``HxW bool`` ``exclude`` region.

        With ``around`` (``HxW bool``: the object's current, too small mask) the search stays next
        to that mask and proposes the whole object it belongs to (regrowing it).
        """

    def knows(self, object_id: int) -> bool:
        """Whether the object has at least one entry."""

    def remove_object(self, object_id: int) -> None:
        """Forget an object."""

    def reset(self) -> None:
        """Forget every object."""

    def stats(self) -> Dict[str, float]:
        """Counters and sizes (``entries``, ``bytes``, ``searches``)."""


# ------------------------------------------------------------------------------------------ results
@dataclass
class ObjectResult:
    """The engine's output for one object in one frame (input-image resolution).

    Attributes:
        object_id: the caller's id for the object (a positive int).
        mask: ``HxW bool`` (empty unless ``state`` is TRACKING).
        points: ``Nx2 float`` (x, y) pixels of all the object's tracked points.
        labels: ``N int``, 1 positive / 0 negative.
        visible: ``N bool``: the points that took part in the prompt (visibility and border rules).
        visibility: ``N float`` in 0..1: the tracker's visibility score of each point.
        score: confidence in 0..1: the segmenter's confidence times the agreement with the
            object's memory (0 when no trusted mask).
        state: :class:`ObjectState`.
        reacquired: whether the object was found again by re-detection in this frame.
    """

    object_id: int
    mask: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    visible: np.ndarray
    visibility: np.ndarray
    score: float
    state: ObjectState
    reacquired: bool = False


@dataclass
class FrameResult:
    """The engine's output for one frame.

    Attributes:
        frame_index: the engine's index of the frame (0-based, in push order).
        objects: results keyed by object id, in ascending id order.
        timings: seconds spent per stage in this step (``tracker``, ``embedding``,
            ``decoder``, ``sampling``, ``prior``, ``reid``, ``total``).
        warnings: what the caller should know about this step (prompts dropped, a
            resolution change), one line each.
        resolution_change: the warning that reports a new frame size (objects carried over),
            or None; every other warning is a prompt the engine dropped.
    """

    frame_index: int
    objects: Dict[int, ObjectResult] = field(default_factory=dict)
    timings: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    resolution_change: Optional[str] = None

    def label_image(self, shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
        """``HxW uint16`` label map: 0 background, k where object k's mask is set.

        The engine's masks never overlap (it resolves overlaps when it composes them).
        """
        if shape is None:
            if not self.objects:
                raise ValueError("label_image() needs a shape when there are no objects")
            shape = next(iter(self.objects.values())).mask.shape
        out = np.zeros(shape, np.uint16)
        for oid in sorted(self.objects):
            out[self.objects[oid].mask] = oid
        return out


def as_rgb_image(image, name: str = "image", min_side: int = 1) -> np.ndarray:
    """Validate an ``HxWx3 uint8`` RGB image (at least ``min_side`` pixels each way); returns it contiguous."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be an HxWx3 uint8 RGB array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name} must be an HxWx3 uint8 RGB array, got {image.dtype} {image.shape}")
    if image.shape[0] < min_side or image.shape[1] < min_side:
        raise ValueError(f"{name} is too small: {image.shape[1]}x{image.shape[0]} (at least {min_side} px each way)")
    return np.ascontiguousarray(image)


def mask_centroid(mask: np.ndarray) -> Tuple[float, float]:
    """``(x, y)`` pixel centroid of an ``HxW bool`` mask; ``(NaN, NaN)`` when it is empty.

    From the row and column sums (no coordinate arrays: cheap enough for every frame)."""
    cols = np.count_nonzero(mask, axis=0)
    n = int(cols.sum())
    if n == 0:
        return float("nan"), float("nan")
    rows = np.count_nonzero(mask, axis=1)
    return float(cols @ np.arange(cols.size)) / n, float(rows @ np.arange(rows.size)) / n


def as_points(points, name: str = "points") -> np.ndarray:
    """Validate and convert to an ``Nx2 float64`` array of finite values."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape Nx2 (x, y), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def as_labels(labels, n: int, name: str = "labels") -> np.ndarray:
    """Validate and convert labels to an ``N int64`` array of 0/1 matching ``n`` points."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have one entry per point ({n}), got shape {arr.shape}")
    if arr.size and not np.all(np.isin(arr, (NEGATIVE, POSITIVE))):
        raise ValueError(f"{name} must be 1 (positive) or 0 (negative), got {np.unique(arr).tolist()}")
    return arr.astype(np.int64)
