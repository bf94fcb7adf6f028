"""Overlay drawing for engine results (evaluation videos and the ROS node's debug image).

``draw_overlay`` tints each object's mask with a fixed per-id colour, outlines it, and draws
the object's tracked points: positive points as filled circles, negative points as crosses,
points the tracker reports occluded (not visible) in red whatever their object, plus a small
``id state score`` label per object. Everything is deterministic (no random colours) and uses
only numpy + OpenCV, so it runs wherever the core runs (no ROS, no torch).

Conventions: images ``HxWx3 uint8`` RGB; masks ``HxW bool``; points ``Nx2 float (x, y)`` pixels.
"""

from __future__ import annotations

import colorsys
from typing import Dict, Tuple

import cv2
import numpy as np

from .types import POSITIVE, FrameResult, ObjectState

#: colour of occluded points (the tracker's visible flag is False); no object colour is red
OCCLUDED_COLOR: Tuple[int, int, int] = (255, 0, 0)

# Hand-picked, well separated colours for the first ids. Pure reds are left out on purpose
# so an occluded (red) point never looks like a point of object 1.
_BASE_PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (0, 200, 255),    # 1 sky blue
    (60, 220, 60),    # 2 green
    (255, 200, 0),    # 3 amber
    (200, 80, 255),   # 4 violet
    (0, 230, 180),    # 5 teal
    (255, 120, 200),  # 6 pink
    (160, 255, 0),    # 7 lime
    (70, 110, 255),   # 8 blue
    (255, 150, 60),   # 9 orange
    (0, 160, 120),    # 10 dark teal
    (230, 230, 120),  # 11 sand
    (140, 60, 200),   # 12 purple
)

_STATE_NAMES: Dict[int, str] = {s.value: s.name for s in ObjectState}


def palette(object_id: int) -> Tuple[int, int, int]:
    """The fixed ``(r, g, b)`` colour (0..255 ints) of an object id.

    Ids 1..12 use a hand-picked table; larger ids step the hue by the golden angle, skipping
    reds (reserved for occluded points). Id 0 (background) is black. Deterministic.
    """
    oid = int(object_id)
    if oid < 0:
        raise ValueError(f"object_id must be >= 0, got {object_id}")
    if oid == 0:
        return (0, 0, 0)
    if oid <= len(_BASE_PALETTE):
        return _BASE_PALETTE[oid - 1]
    # Golden-angle hue steps stay well spread for any number of ids; map the hue into
    # [0.08, 0.92] so nothing lands on red.
    hue = 0.08 + 0.84 * ((oid * 0.6180339887498949) % 1.0)
    value = 1.0 if (oid // 3) % 2 == 0 else 0.8
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


def palette_array(n: int = 256) -> np.ndarray:
    """``n x 3 uint8`` palette table (row k = ``palette(k)``), e.g. for paletted PNG label maps."""
    return np.array([palette(k) for k in range(n)], dtype=np.uint8)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            "image must be an HxWx3 uint8 RGB array, got "
            + (f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__)
        )
    return image


def draw_overlay(
    image: np.ndarray,
    result: FrameResult,
    alpha: float = 0.5,
    draw_points: bool = True,
    draw_labels: bool = True,
) -> np.ndarray:
    """Draw a :class:`FrameResult` over its image.

    Args:
        image: ``HxWx3 uint8`` RGB, the frame the result belongs to (not modified).
        result: the engine's output for that frame; every mask must be ``HxW``.
        alpha: mask tint opacity in 0..1.
        draw_points: draw the tracked points (positive circles, negative crosses,
            occluded points in red).
        draw_labels: draw ``<id> <STATE> <score>`` near each object.

    Returns:
        A new ``HxWx3 uint8`` RGB image.

    Raises:
        ValueError: bad image, alpha out of range, or a mask of another size.
    """
    _check_image(image)
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    h, w = image.shape[:2]
    out = image.copy()
    objects = [result.objects[k] for k in sorted(result.objects)]

    masks = []
    for obj in objects:
        mask = np.asarray(obj.mask)
        if mask.shape != (h, w):
            raise ValueError(f"object {obj.object_id}: mask shape {mask.shape} does not match the image {(h, w)}")
        masks.append(mask.astype(bool, copy=False))

    # Tint: one label map + colour lookup, then one blend for all objects (cheaper than
    # blending each mask separately). The higher id wins on overlap, like label_image().
    if objects and alpha > 0:
        labels = np.zeros((h, w), np.uint8)
        lut = np.zeros((256, 1, 3), np.uint8)
        # uint8 slots: the engine caps objects at 255; any beyond that keep only their outline
        for slot, (obj, mask) in enumerate(zip(objects[:255], masks), start=1):
            labels[mask] = slot
            lut[slot, 0] = palette(obj.object_id)
        if labels.any():
            colour = cv2.LUT(cv2.merge([labels, labels, labels]), lut)
            blended = cv2.addWeighted(image, 1.0 - float(alpha), colour, float(alpha), 0.0)
            cv2.copyTo(blended, labels, out)  # only where some mask is set

    thickness = max(1, int(round(min(h, w) / 240)))
    radius = max(3, int(round(min(h, w) / 90)))
    for obj, mask in zip(objects, masks):
        colour = palette(obj.object_id)
        if mask.any():
            contours, _ = cv2.findContours(np.ascontiguousarray(mask).view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, colour, thickness, cv2.LINE_8)

    if draw_points:
        for obj in objects:
            _draw_points(out, obj, palette(obj.object_id), radius, thickness)

    if draw_labels:
        for slot, (obj, mask) in enumerate(zip(objects, masks)):
            _draw_label(out, obj, mask, palette(obj.object_id), slot)
    return out


def _draw_points(out: np.ndarray, obj, colour, radius: int, thickness: int) -> None:
    points = np.asarray(obj.points, dtype=np.float64).reshape(-1, 2)
    n = points.shape[0]
    labels = np.asarray(obj.labels).reshape(-1) if obj.labels is not None else np.ones(n, np.int64)
    visible = np.asarray(obj.visible).reshape(-1) if obj.visible is not None else np.ones(n, bool)
    if labels.shape[0] != n or visible.shape[0] != n:
        raise ValueError(
            f"object {obj.object_id}: {n} points but {labels.shape[0]} labels and {visible.shape[0]} visible flags"
        )
    h, w = out.shape[:2]
    for (x, y), label, vis in zip(points, labels, visible):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        # Clamp far-away points so OpenCV's int conversion cannot overflow; they are drawn
        # off-image (clipped) anyway.
        c = (int(round(min(max(x, -4 * w), 5 * w))), int(round(min(max(y, -4 * h), 5 * h))))
        fill = colour if bool(vis) else OCCLUDED_COLOR
        if int(label) == POSITIVE:
            cv2.circle(out, c, radius, fill, -1, cv2.LINE_AA)
            cv2.circle(out, c, radius, (255, 255, 255), 1, cv2.LINE_AA)
        else:
            size = 2 * radius + 2
            cv2.drawMarker(out, c, (255, 255, 255), cv2.MARKER_TILTED_CROSS, size, thickness + 2, cv2.LINE_AA)
            cv2.drawMarker(out, c, fill, cv2.MARKER_TILTED_CROSS, size, thickness, cv2.LINE_AA)


def _label_anchor(obj, mask: np.ndarray, slot: int, out_shape) -> Tuple[int, int]:
    """Top-left of the mask's bounding box, else the mean of the points, else a stacked corner slot."""
    h, w = out_shape[:2]
    if mask.any():
        x, y, _, _ = cv2.boundingRect(np.ascontiguousarray(mask).view(np.uint8))
        return x, max(y - 4, 14)
    pts = np.asarray(obj.points, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if pts.size:
        cx, cy = pts.mean(axis=0)
        if 0 <= cx < w and 0 <= cy < h:
            return int(cx), int(max(cy - 8, 14))
    return 4, 16 + 18 * slot


def _draw_label(out: np.ndarray, obj, mask: np.ndarray, colour, slot: int) -> None:
    state = _STATE_NAMES.get(int(obj.state), str(obj.state))
    text = f"{obj.object_id} {state} {float(obj.score):.2f}"
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    x, y = _label_anchor(obj, mask, slot, out.shape)
    x = int(min(max(x, 0), max(out.shape[1] - tw - 2, 0)))
    cv2.rectangle(out, (x, y - th - 3), (x + tw + 2, y + base - 1), (0, 0, 0), -1)
    cv2.putText(out, text, (x + 1, y - 1), font, scale, colour, thick, cv2.LINE_AA)


def label_map_to_rgb(labels: np.ndarray) -> np.ndarray:
    """``HxW`` integer label map -> ``HxWx3 uint8`` RGB with :func:`palette` colours."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be HxW, got shape {labels.shape}")
    top = int(labels.max()) if labels.size else 0
    return palette_array(top + 1)[labels]
