"""Pinhole geometry for the node's 3-D outputs (ROS-free, numpy only).

Conventions: image points are ``Nx2 float`` (x, y) pixels of the colour image (x right, y down,
the centre of the top-left pixel at (0, 0)); depth maps are ``HxW float32`` metres with NaN
where the depth is unknown; 3-D points are ``Nx3 float`` (X, Y, Z) metres in the optical
camera frame (X right, Y down, Z forward), NaN where the depth is unknown.

The depth image must be registered to the colour image (same viewpoint, as
``depth_registered`` topics are); it may have another resolution, in which case pixel
coordinates are scaled. ``K`` belongs to the ``camera_info`` size and is scaled likewise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from sampt_ros.core.types import mask_centroid  # the one centroid helper (also imported from here)


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of a ``width x height`` calibration (sensor_msgs/CameraInfo ``K``)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        vals = (self.fx, self.fy, self.cx, self.cy)
        if not all(np.isfinite(v) for v in vals):
            raise ValueError(f"camera intrinsics must be finite, got fx={self.fx} fy={self.fy} cx={self.cx} cy={self.cy}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"camera intrinsics need fx > 0 and fy > 0, got fx={self.fx} fy={self.fy}")
        if self.width < 0 or self.height < 0:
            raise ValueError(f"calibration size must be >= 0, got {self.width}x{self.height}")

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int) -> "Intrinsics":
        """From a row-major 3x3 ``K`` (9 numbers) and the calibration size."""
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise ValueError(f"K must have 9 entries, got {k.size}")
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(width), int(height))

    def scaled_to(self, width: int, height: int) -> "Intrinsics":
        """The same camera at another image size (a calibration size of 0 means "same size")."""
        if self.width <= 0 or self.height <= 0 or (self.width == width and self.height == height):
            return self
        sx, sy = width / self.width, height / self.height
        # pixel centres: u' + 0.5 = (u + 0.5) * s
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                          int(width), int(height))


def sample_depth(points: np.ndarray, depth: np.ndarray, image_size: Tuple[int, int], radius: int = 1) -> np.ndarray:
    """Depth (metres) under each image point: the median of the valid depths in a small window.

    Args:
        points: ``Nx2 float`` (x, y) pixels of the colour image.
        depth: ``HxW float32`` metres, NaN where unknown.
        image_size: ``(width, height)`` of the colour image.
        radius: half-size of the window (1 = 3x3), which bridges single-pixel holes.

    Returns:
        ``N float`` metres, NaN where no valid depth is near the point or it lies outside.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    out = np.full(len(pts), np.nan)
    if len(pts) == 0:
        return out
    dh, dw = depth.shape[:2]
    w, h = image_size
    u = np.round((pts[:, 0] + 0.5) * dw / w - 0.5).astype(np.int64)
    v = np.round((pts[:, 1] + 0.5) * dh / h - 0.5).astype(np.int64)
    for i, (ui, vi) in enumerate(zip(u, v)):
        if not (0 <= ui < dw and 0 <= vi < dh) or not np.all(np.isfinite(pts[i])):
            continue
        win = depth[max(0, vi - radius): vi + radius + 1, max(0, ui - radius): ui + radius + 1]
        valid = win[np.isfinite(win)]
        if valid.size:
            out[i] = float(np.median(valid))
    return out


def back_project(points: np.ndarray, z: np.ndarray, intrinsics: Intrinsics, image_size: Tuple[int, int]) -> np.ndarray:
    """``Nx2`` image points with depths ``N`` (metres) -> ``Nx3`` camera-frame points (NaN where z is)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    k = intrinsics.scaled_to(*image_size)
    x = (pts[:, 0] - k.cx) * z / k.fx
    y = (pts[:, 1] - k.cy) * z / k.fy
    return np.stack([x, y, z], axis=1)


def mask_depth(mask: np.ndarray, depth: np.ndarray, max_samples: int = 4000) -> float:
    """Median valid depth (metres) over an ``HxW bool`` mask; NaN if none.

    The mask may have another size than the depth map (it is resampled by nearest neighbour);
    at most ``max_samples`` mask pixels are looked at (evenly strided) to bound the cost.
    """
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return float("nan")
    if xs.size > max_samples:
        step = int(np.ceil(xs.size / max_samples))
        xs, ys = xs[::step], ys[::step]
    h, w = mask.shape
    dh, dw = depth.shape[:2]
    if (dh, dw) != (h, w):
        xs = np.clip(((xs + 0.5) * dw / w).astype(np.int64), 0, dw - 1)
        ys = np.clip(((ys + 0.5) * dh / h).astype(np.int64), 0, dh - 1)
    vals = depth[ys, xs]
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if vals.size else float("nan")


def object_geometry(
    points: np.ndarray, mask: np.ndarray, depth: Optional[np.ndarray], intrinsics: Optional[Intrinsics]
) -> Tuple[Tuple[float, float], Optional[np.ndarray], Optional[np.ndarray]]:
    """Centroid and 3-D positions of one object.

    Args:
        points: ``Nx2`` (x, y) pixels of the object's tracked points.
        mask: ``HxW bool`` of the colour image.
        depth, intrinsics: the registered depth (``float32`` metres, NaN unknown) and the
            camera; ``None`` when depth is not used.

    Returns:
        ``((cx, cy), points_3d Nx3 | None, centroid_3d (3,) | None)``. The 3-D centroid is the
        centroid pixel's ray at the median depth of the mask: robust to holes and edges, and
        defined even for non-convex masks whose 2-D centroid lies off the object.
    """
    centroid = mask_centroid(mask)
    if depth is None or intrinsics is None:
        return centroid, None, None
    h, w = mask.shape
    z = sample_depth(points, depth, (w, h))
    pts3 = back_project(points, z, intrinsics, (w, h))
    zc = mask_depth(mask, depth)
    c3 = back_project(np.array([centroid]), np.array([zc]), intrinsics, (w, h))[0]
    return centroid, pts3, c3
