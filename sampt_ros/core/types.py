"""Shared data types and the two pluggable interfaces of the online engine.

Conventions used everywhere in ``sampt_ros.core``:

* images are ``HxWx3 uint8`` RGB arrays;
* masks are ``HxW bool`` arrays of the image's size;
* points are ``Nx2 float`` arrays of ``(x, y)`` pixel coordinates (x to the right,
  y down, the centre of the top-left pixel at ``(0, 0)``);
* labels are ``N int`` arrays: ``1`` positive (on the object), ``0`` negative.

This module never imports ROS or torch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Dict, Hashable, List, Optional, Protocol, Tuple

import numpy as np

POSITIVE = 1
NEGATIVE = 0


class ObjectState(enum.IntEnum):
    """What the engine knows about an object in the newest frame.

    The integer values are part of the ROS message contract (``TrackedObject.state``).
    """

    TRACKING = 0  #: a non-empty mask was produced from visible positive points
    OCCLUDED = 1  #: no positive point is visible, so no mask was produced
    LOST = 2  #: the mask was empty when re-initialisation was due; the old points are kept


@dataclass
class TrackedPoints:
    """Positions of one point set in the newest frame.

    Attributes:
        points: ``Nx2 float`` (x, y) pixels.
        visible: ``N bool``, the tracker's visibility decision.
        visibility: ``N float`` in 0..1, the tracker's visibility score.
    """

    points: np.ndarray
    visible: np.ndarray
    visibility: np.ndarray


class PointTracker(Protocol):
    """An online, multi-track point tracker over a bounded buffer of recent frames.

    Frames are numbered by the tracker from 0 in the order they were pushed.
    Each track (one per object, keyed by any hashable) holds query points placed on
    one buffered frame; :meth:`track` returns every track's positions in the newest frame.
    """

    #: how many recent frames are kept; a track can start on any of them
    buffer_size: int

    def push_frame(self, image: np.ndarray) -> int:
        """Add a ``HxWx3 uint8`` RGB frame; compute its features once. Returns its index."""

    def has_frame(self, index: int) -> bool:
        """Whether frame ``index`` is still in the buffer."""

    def set_track(self, key: Hashable, points: np.ndarray, frame_index: int) -> None:
        """Start (or restart) track ``key`` from ``Nx2`` (x, y) points on a buffered frame.

        Raises ``KeyError`` if ``frame_index`` is no longer buffered and ``ValueError`` for
        malformed points.
        """

    def remove_track(self, key: Hashable) -> None:
        """Forget track ``key`` (no error if unknown)."""

    def track(self) -> Dict[Hashable, TrackedPoints]:
        """Positions of every track in the newest frame."""

    def reset(self) -> None:
        """Forget all frames and tracks."""


class Segmenter(Protocol):
    """Prompted segmentation: one image embedding per frame, many prompts against it."""

    #: how many times the per-frame image embedding was computed (for the benchmark)
    embeddings_computed: int
    #: whether :meth:`segment` uses ``prev_mask``; when False the engine skips computing it
    uses_prev_mask: bool

    def set_image(self, image: np.ndarray) -> None:
        """Compute the embedding of a ``HxWx3 uint8`` RGB image once."""

    def segment(
        self,
        points: np.ndarray,
        labels: np.ndarray,
        prev_mask: Optional[np.ndarray] = None,
    ) -> Tuple[np.ndarray, float]:
        """Segment one object in the current image.

        Args:
            points: ``Nx2 float`` (x, y) pixels, at least one positive.
            labels: ``N int``, 1 positive / 0 negative.
            prev_mask: ``HxW bool``, the object's previous mask moved by its points' motion,
                or ``None``. SAM ignores it; weight-free segmenters use it as a prior.

        Returns:
            ``(mask, score)``: ``HxW bool`` and a confidence in 0..1.
        """


@dataclass
class ObjectResult:
    """The engine's output for one object in one frame.

    Attributes:
        object_id: the caller's id for the object (a positive int).
        mask: ``HxW bool``.
        points: ``Nx2 float`` (x, y) pixels of all the object's tracked points.
        labels: ``N int``, 1 positive / 0 negative.
        visible: ``N bool``.
        score: mask confidence in 0..1 (0 when no mask was produced).
        state: :class:`ObjectState`.
    """

    object_id: int
    mask: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    visible: np.ndarray
    score: float
    state: ObjectState


@dataclass
class FrameResult:
    """The engine's output for one frame.

    Attributes:
        frame_index: the engine's index of the frame (0-based, in push order).
        objects: results keyed by object id, in ascending id order.
        timings: seconds spent per stage in this step (``tracker``, ``embedding``,
            ``decoder``, ``sampling``, ``prior``, ``total``).
        warnings: prompts dropped in this step, with the reason.
    """

    frame_index: int
    objects: Dict[int, ObjectResult] = field(default_factory=dict)
    timings: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    def label_image(self, shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
        """``HxW uint16`` label map: 0 background, k where object k's mask is set.

        Where masks overlap, the higher object id wins (deterministic).
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
