"""Realistic re-acquisition test sequences composited from real footage, with exact ground truth.

The way an outside evaluator tests re-acquisition: real objects pasted over real moving-camera
footage, hidden behind an opaque wall, driven out of the view and back, crossed by another object.

* **Background**: the frames of one sequence of a DAVIS-layout root (real, moving camera), in
  order, played ping-pong (forward, backward, ...) when it is shorter than the scenario.
* **Objects**: cut out of *other* sequences of the same root with their ground-truth masks,
  frame by frame (the object keeps its real articulation and appearance changes): the largest
  connected region of the mask, cropped to its bounding box, scaled to a chosen height (a
  fraction of the frame height; the scale follows the object's own size slowly, so a zoom or an
  approach in the source video does not make it fill the frame) and pasted with its centroid on
  a keyframed path (``(t, x, y)`` as :class:`~sampt_ros.tools.synthetic.ObjectSpec`'s) that has
  nothing to do with where it was in its source video. Only source frames where the mask is a
  single, reasonably compact region are used (see :data:`USABLE`); the object plays the longest
  run of such frames, ping-pong.
* **Occluders**: an opaque wall (a :class:`~sampt_ros.tools.synthetic.WallSpec` rectangle taller
  than the frame, textured with a crop of a frame of yet another sequence), static or slowly
  moving, drawn in front of everything.

Scenarios (:data:`KINDS`), 100-150 frames each (drawn from the seed), every object fully visible
in frame 0 (where ``sampt-eval davis`` prompts it):

* ``wall``: object 1 passes completely behind the wall for 15-25 frames and comes out on the
  other side.
* ``exit``: object 1 drives out of the view through a side edge, stays out for ~25 frames
  (22-28), and comes back in through the same edge at another height.
* ``cross``: object 2 (larger, in front) and object 1 (smaller, behind) cross in opposite
  directions; object 1 is fully covered for 5-12 frames.
* ``gone``: object 1 leaves through a side edge at 30-45 % of the sequence and never comes back;
  object 2 stays fully in view on the other half the whole time.

The event lengths are planned on the exact masks that are shown (a short search over the speed or
the time spent outside) and then measured on the rendered label maps; nominal lengths scale with
``n_frames`` when a shorter sequence is asked for (e.g. 40 frames in the tests).

Ground truth is exact: every layer is composited with hard (binary) coverage, so label ``k`` marks
exactly the pixels of the final image drawn from object ``k``'s cut-out (its visible part after
the wall, nearer objects and the frame's edge). Everything is a function of the root's files, the
kind, the chosen sources, the size, the length and the seed. Sequences are written in the
DAVIS-2017 layout with :func:`~sampt_ros.tools.synthetic.write_davis` (paletted label PNGs), and
``OUT/composite.json`` records per sequence its sources, paths and exact events.

Example::

    python -m sampt_ros.tools.composite ../shared/data/davis2016-train /tmp/composite_train --variants 3
    sampt-eval davis /tmp/composite_train --config cpu --out /tmp/composite_train_eval

DAVIS terms: the output is derived from DAVIS frames; keep it outside the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .cli import size_argument
from .eval import EvalError, list_sequences, load_sequence, read_label_map, read_rgb
from ..core.metrics import ABSENT_FRACTION, absent_frames, runs as value_runs
from .synthetic import (
    NOMINAL_SIZE,
    ObjectFrameStats,
    SyntheticSpec,
    WallSpec,
    _check_keyframes,
    _interp,
    _SceneBase,
    write_davis,
)

#: The scenario kinds, in the order they are generated.
KINDS: Tuple[str, ...] = ("wall", "exit", "cross", "gone")

#: When a source frame's mask can be cut out: its largest 8-connected region is at least
#: ``min_area`` of the frame and ``min_main`` of the mask, its solidity (area / convex hull area)
#: at least ``min_solidity``, and at most ``max_border`` (x the bounding box's half-perimeter) of
#: its pixels lie on the frame's edge (an object cut by the edge would show the cut). A source
#: object needs a run of at least ``min_run`` such frames, with gaps of at most ``max_gap``.
USABLE = {"min_area": 0.003, "min_main": 0.9, "min_solidity": 0.35, "max_border": 0.05,
          "min_run": 15, "max_gap": 2}

#: Nominal event lengths (frames at the scenario's nominal length, drawn in these ranges).
WALL_HIDDEN = (15, 25)
EXIT_OUT = (22, 28)
CROSS_HIDDEN = (5, 12)
#: The nominal length of every scenario is drawn in this range (frames).
LENGTH = (100, 150)
#: Wall height in fractions of the frame height: taller than the frame, nothing passes over it.
WALL_HEIGHT = 1.1
_MARGIN = 0.015  # fraction of the frame width kept free between an object and the frame's edge


# ============================================================================ sources
@dataclass(frozen=True)
class SourceObject:
    """An object of a source sequence that can be cut out.

    Attributes:
        sequence: the source sequence's name; ``object_id`` its label there (1 for DAVIS 2016).
        frames: the usable run of source frame indices (consecutive up to small gaps).
        heights, widths: the largest region's bounding box (source px), per run frame.
        areas: its area (source px), per run frame.
        core: median over the run of (largest inscribed circle radius / bounding-box height):
            how solid the object is (a large core can hide another object behind it).
        frame_size: the source frames' ``(width, height)``.
        usable_fraction: the share of the sequence's frames that are usable (any run).
    """

    sequence: str
    object_id: int
    frames: Tuple[int, ...]
    heights: Tuple[int, ...]
    widths: Tuple[int, ...]
    areas: Tuple[int, ...]
    core: float
    frame_size: Tuple[int, int]
    usable_fraction: float

    @property
    def key(self) -> str:
        return self.sequence if self.object_id == 1 else f"{self.sequence}#{self.object_id}"


@dataclass(frozen=True)
class SequenceInfo:
    """A source sequence: its length, frame size and the objects that can be cut out of it
    (``rejected``: the others with the reason)."""

    name: str
    n_frames: int
    frame_size: Tuple[int, int]
    objects: Tuple[SourceObject, ...]
    rejected: Tuple[Tuple[int, str], ...] = ()


def _main_region(labels: np.ndarray, object_id: int) -> Optional[Tuple[np.ndarray, Tuple[int, int, int, int], float]]:
    """The largest 8-connected region of ``labels == object_id``: ``(mask, (x, y, w, h), share)``
    (``share``: its part of the object's pixels), or None when the object is absent."""
    m = (labels == object_id).astype(np.uint8)
    total = int(np.count_nonzero(m))
    if total == 0:
        return None
    bx, by, bw, bh = cv2.boundingRect(m)
    n, lab, st, _ = cv2.connectedComponentsWithStats(m[by:by + bh, bx:bx + bw], connectivity=8)
    k = 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in st[k, :5])
    mask = np.zeros(labels.shape, bool)
    mask[by:by + bh, bx:bx + bw] = lab == k
    return mask, (x + bx, y + by, w, h), area / total


def _frame_quality(labels: np.ndarray, object_id: int) -> Tuple[Optional[dict], str]:
    """A source frame's cut-out figures (or None and why not)."""
    reg = _main_region(labels, object_id)
    if reg is None:
        return None, "empty"
    mask, (x, y, w, h), share = reg
    hh, ww = labels.shape
    area = int(np.count_nonzero(mask))
    if area < USABLE["min_area"] * hh * ww:
        return None, "tiny"
    if share < USABLE["min_main"]:
        return None, "split"
    crop = mask[y:y + h, x:x + w].astype(np.uint8)
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.contourArea(cv2.convexHull(np.vstack(contours)))
    if area < USABLE["min_solidity"] * max(hull, 1.0):
        return None, "not compact"
    border = int(mask[0].sum() + mask[-1].sum() + mask[:, 0].sum() + mask[:, -1].sum())
    if border > USABLE["max_border"] * (w + h):
        return None, "cut by the edge"
    core = float(cv2.distanceTransform(np.pad(crop, 1), cv2.DIST_L2, 5).max())
    return {"h": h, "w": w, "area": area, "core": core / h}, "ok"


def _longest_run(indices: Sequence[int], max_gap: int) -> List[int]:
    best: List[int] = []
    cur: List[int] = []
    for i in indices:
        if cur and i - cur[-1] > max_gap + 1:
            cur = []
        cur.append(i)
        if len(cur) > len(best):
            best = list(cur)
    return best


@lru_cache(maxsize=256)
def _analyse(root: str, name: str) -> SequenceInfo:
    seq = load_sequence(root, name)
    per_id: Dict[int, Dict[int, dict]] = {}
    why: Dict[int, Dict[str, int]] = {}
    size = None
    for i, ann in enumerate(seq.annotations):
        if ann is None:
            continue
        labels = read_label_map(ann)
        size = (labels.shape[1], labels.shape[0])
        for oid in (int(v) for v in np.flatnonzero(np.bincount(labels.ravel())) if v != 0):
            q, reason = _frame_quality(labels, oid)
            per_id.setdefault(oid, {})
            why.setdefault(oid, {})
            if q is None:
                why[oid][reason] = why[oid].get(reason, 0) + 1
            else:
                per_id[oid][i] = q
    n = len(seq.frames)
    objects, rejected = [], []
    for oid in sorted(per_id):
        good = per_id[oid]
        run = _longest_run(sorted(good), USABLE["max_gap"])
        if len(run) < USABLE["min_run"]:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(why[oid].items()))
            rejected.append((oid, f"longest usable run {len(run)} < {USABLE['min_run']} frames ({reasons})"))
            continue
        objects.append(SourceObject(
            name, oid, tuple(run), tuple(good[i]["h"] for i in run), tuple(good[i]["w"] for i in run),
            tuple(good[i]["area"] for i in run), float(np.median([good[i]["core"] for i in run])),
            size, len(good) / n))
    return SequenceInfo(name, n, size or (0, 0), tuple(objects), tuple(rejected))


def analyse_root(root, sequences: Optional[Sequence[str]] = None) -> Dict[str, SequenceInfo]:
    """Every (or the named) sequence of a DAVIS-layout root with its usable objects (cached)."""
    names = list(sequences) if sequences else list_sequences(root)
    root = str(Path(root).resolve())
    return {n: _analyse(root, n) for n in sorted(names)}


# ============================================================================ scenario description
@dataclass(frozen=True)
class PastedObject:
    """One pasted object of a :class:`CompositeScenario`.

    Attributes:
        object_id: its label in the output (1..255).
        sequence, source_id: where it is cut from (sequence name, label there).
        frames: per output frame, the source frame shown.
        height: its median bounding-box height, as a fraction of the output frame height.
        path: keyframes ``(t, x, y)`` of its mask's centroid (fractions of the frame; outside
            0..1 is outside the view), linear in between (as ``ObjectSpec.path``).
        z: drawing order; higher is in front (the wall is at 100).
    """

    object_id: int
    sequence: str
    source_id: int
    frames: Tuple[int, ...]
    height: float
    path: Tuple[Tuple[float, float, float], ...]
    z: int = 0

    def __post_init__(self) -> None:
        if not 1 <= int(self.object_id) <= 255:
            raise ValueError(f"object_id must be in 1..255, got {self.object_id}")
        if not 0.01 <= float(self.height) <= 1.0:
            raise ValueError(f"height must be in 0.01..1 of the frame, got {self.height}")
        object.__setattr__(self, "path", _check_keyframes(self.path, f"object {self.object_id}"))


@dataclass(frozen=True)
class CompositeWall:
    """An opaque wall: ``spec`` (geometry, as synthetic's walls) textured with a crop of frame
    ``frame`` of ``sequence``, starting at ``crop_x`` (fraction of the source frame's width)."""

    spec: WallSpec
    sequence: str
    frame: int
    crop_x: float


@dataclass(frozen=True)
class CompositeScenario:
    """What to render: the background's frame per output frame, the objects and the walls."""

    name: str
    kind: str
    description: str
    background: str
    background_frames: Tuple[int, ...]
    objects: Tuple[PastedObject, ...]
    walls: Tuple[CompositeWall, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        n = len(self.background_frames)
        if n < 3:
            raise ValueError("a scenario needs at least 3 frames")
        ids = [o.object_id for o in self.objects]
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"scenario {self.name!r}: object ids must be distinct and not empty: {ids}")
        for o in self.objects:
            if len(o.frames) != n:
                raise ValueError(f"object {o.object_id}: {len(o.frames)} source frames for {n} frames")

    @property
    def n_frames(self) -> int:
        return len(self.background_frames)

    @property
    def object_ids(self) -> List[int]:
        return sorted(o.object_id for o in self.objects)

    def sources(self) -> Dict[str, object]:
        return {"background": self.background,
                "objects": {o.object_id: (o.sequence if o.source_id == 1 else f"{o.sequence}#{o.source_id}")
                            for o in self.objects},
                "wall": [w.sequence for w in self.walls]}


# ============================================================================ rendering
def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre-crop ``image`` to the aspect ``width:height`` and resize it to that size."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    aspect = width / height
    if w / h > aspect:
        cw = max(1, int(round(h * aspect)))
        x0 = (w - cw) // 2
        image = image[:, x0:x0 + cw]
    else:
        ch = max(1, int(round(w / aspect)))
        y0 = (h - ch) // 2
        image = image[y0:y0 + ch]
    interp = cv2.INTER_AREA if image.shape[1] > width else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def _pingpong(length: int, count: int, offset: int) -> List[int]:
    """``count`` indices into ``0..length-1`` played forward and backward from ``offset``."""
    if length <= 1:
        return [0] * count
    period = 2 * (length - 1)
    out = []
    for i in range(count):
        j = (offset + i) % period
        out.append(j if j < length else period - j)
    return out


@dataclass
class Sprite:
    """A cut-out at its output size: ``rgb`` (hxwx3 uint8), ``cover`` (hxw bool) and its
    centroid ``(cx, cy)`` in sprite pixels."""

    rgb: np.ndarray
    cover: np.ndarray
    cx: float
    cy: float

    @property
    def extents(self) -> Tuple[float, float, float, float]:
        """Distances from the centroid to the left, right, top and bottom edges (px)."""
        h, w = self.cover.shape
        return self.cx, w - self.cx, self.cy, h - self.cy


def _run_scales(src: SourceObject, height: float, frame_height: int) -> Dict[int, float]:
    """Per run frame, the scale (output px per source px) that gives the object a median
    bounding-box height of ``height`` x ``frame_height``: it follows the object's size (square
    root of its area) smoothed over +-6 frames, so a zoom or an approach in the source video is
    undone while the object's articulation is kept."""
    logs = np.log(np.sqrt(np.asarray(src.areas, np.float64)))
    k = 6
    smooth = np.array([logs[max(0, i - k):i + k + 1].mean() for i in range(len(logs))])
    rel = np.exp(-smooth)
    c = height * frame_height / float(np.median(rel * np.asarray(src.heights, np.float64)))
    return {f: float(c * r) for f, r in zip(src.frames, rel)}


class SpriteBank:
    """Cut-outs of source objects at their output scale, made on first use and kept."""

    def __init__(self, root) -> None:
        self.root = str(Path(root).resolve())
        self._seqs: Dict[str, object] = {}
        self._sprites: Dict[Tuple[str, int, int, float], Sprite] = {}
        self._walls: Dict[Tuple, np.ndarray] = {}

    def sequence(self, name: str):
        if name not in self._seqs:
            self._seqs[name] = load_sequence(self.root, name)
        return self._seqs[name]

    def frame(self, name: str, index: int) -> np.ndarray:
        return read_rgb(self.sequence(name).frames[index])

    def sprite(self, sequence: str, object_id: int, index: int, scale: float) -> Sprite:
        key = (sequence, object_id, index, round(scale, 9))
        sp = self._sprites.get(key)
        if sp is None:
            sp = self._sprites[key] = self._cut(sequence, object_id, index, scale)
        return sp

    def _cut(self, sequence: str, object_id: int, index: int, scale: float) -> Sprite:
        seq = self.sequence(sequence)
        labels = read_label_map(seq.annotations[index])
        reg = _main_region(labels, object_id)
        if reg is None:
            raise EvalError(f"{sequence} frame {index}: object {object_id} is absent")
        mask, (x, y, w, h), _ = reg
        rgb = read_rgb(seq.frames[index])
        if rgb.shape[:2] != labels.shape:
            raise EvalError(f"{sequence} frame {index}: image and annotation sizes differ")
        pad = 2
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x1, y1 = min(labels.shape[1], x + w + pad), min(labels.shape[0], y + h + pad)
        m = mask[y0:y1, x0:x1].astype(np.float32)
        c = rgb[y0:y1, x0:x1].astype(np.float32)
        ow, oh = max(1, int(round((x1 - x0) * scale))), max(1, int(round((y1 - y0) * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        ms = cv2.resize(m, (ow, oh), interpolation=interp)
        # colours from the object's pixels only (no halo of its source background at the edge)
        cs = cv2.resize(c * m[..., None], (ow, oh), interpolation=interp)
        cover = ms >= 0.5
        if not cover.any():  # a sliver: keep its most covered pixel
            cover = ms >= ms.max()
        col = cs / np.maximum(ms, 1e-6)[..., None]
        col = np.clip(np.round(col), 0, 255).astype(np.uint8)
        col[~cover] = 0
        ys, xs = np.nonzero(cover)
        yb0, yb1, xb0, xb1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        cover, col = cover[yb0:yb1, xb0:xb1], col[yb0:yb1, xb0:xb1]
        ys, xs = np.nonzero(cover)
        return Sprite(np.ascontiguousarray(col), np.ascontiguousarray(cover), float(xs.mean()), float(ys.mean()))

    def wall_texture(self, wall: CompositeWall, width: int, height: int) -> np.ndarray:
        key = (wall.sequence, wall.frame, wall.crop_x, width, height)
        tex = self._walls.get(key)
        if tex is None:
            src = self.frame(wall.sequence, wall.frame)
            sh, sw = src.shape[:2]
            cw = min(sw, max(1, int(round(sh * width / height))))
            x0 = int(round(wall.crop_x * (sw - cw)))
            crop = src[:, x0:x0 + cw]
            interp = cv2.INTER_AREA if cw > width else cv2.INTER_LINEAR
            tex = self._walls[key] = cv2.resize(crop, (width, height), interpolation=interp)
        return tex


@dataclass
class Layer:
    """One drawn layer of a frame: ``kind`` ``"object"`` (``key`` = its id) or ``"wall"`` (``key``
    = its index); ``(x0, y0)`` the top-left corner of ``cover`` in frame pixels (may lie outside
    the frame); ``rgb`` its pixels (same shape as ``cover``, x3)."""

    kind: str
    key: int
    x0: int
    y0: int
    cover: np.ndarray
    rgb: Optional[np.ndarray] = None


def _absent(stats: Sequence[ObjectFrameStats], fraction: float = ABSENT_FRACTION) -> List[Tuple[int, int]]:
    """The runs ``(first, last)`` of frames in which an object counts as absent for the scorer."""
    absent = absent_frames([s.visible for s in stats], fraction)
    return [(a, b) for v, a, b in value_runs(absent.tolist()) if v]


class CompositeScene(_SceneBase):
    """Renders a :class:`CompositeScenario` from the files of ``root`` at ``size``.

    ``frame(i) -> (image HxWx3 uint8 RGB, labels HxW uint8)``; ``render(i)`` adds per object its
    :class:`~sampt_ros.tools.synthetic.ObjectFrameStats`; ``phases()``, ``describe()`` as
    synthetic scenes. ``flat`` (``{object id: (r, g, b)}``) paints each object in one colour (a
    check that the labels are exactly the drawn pixels).
    """

    def __init__(self, scenario: CompositeScenario, root, size: Optional[Tuple[int, int]] = None,
                 bank: Optional[SpriteBank] = None, flat: Optional[Dict[int, Tuple[int, int, int]]] = None) -> None:
        w, h = size or NOMINAL_SIZE
        self.scenario = scenario
        self.spec = SyntheticSpec(width=w, height=h, n_frames=scenario.n_frames, seed=scenario.seed,
                                  name=scenario.name)
        self.root = str(Path(root).resolve())
        self.bank = bank or SpriteBank(self.root)
        self.flat = flat
        self._stats = None
        infos = {}
        self._scales: Dict[int, Dict[int, float]] = {}
        for o in scenario.objects:
            if o.sequence not in infos:
                infos[o.sequence] = _analyse(self.root, o.sequence)
            src = next((s for s in infos[o.sequence].objects if s.object_id == o.source_id), None)
            if src is None:
                raise EvalError(f"{o.sequence}: object {o.source_id} has no usable frames")
            self._scales[o.object_id] = _run_scales(src, o.height, h)
            missing = sorted(set(o.frames) - set(src.frames))
            if missing:
                raise EvalError(f"{o.sequence}: frames {missing[:5]} are not usable cut-outs")
        self._objects = {o.object_id: o for o in scenario.objects}
        items = [(o.z, 0, o.object_id) for o in scenario.objects] + \
                [(wl.spec.z, 1, k) for k, wl in enumerate(scenario.walls)]
        self._order = sorted(items)

    def _t(self, index: int) -> float:
        return index / max(self.n_frames - 1, 1)

    def sprite(self, object_id: int, index: int) -> Sprite:
        o = self._objects[object_id]
        j = o.frames[index]
        return self.bank.sprite(o.sequence, o.source_id, j, self._scales[object_id][j])

    def object_position(self, object_id: int, index: int) -> Tuple[float, float]:
        """The centroid of object ``object_id`` in frame ``index`` (frame pixels)."""
        x, y = _interp(self._objects[object_id].path, self._t(index))
        return x * self.width, y * self.height

    def wall_rect(self, k: int, index: int) -> Tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of wall ``k`` in frame ``index`` (end exclusive; may exceed the frame)."""
        wall = self.scenario.walls[k].spec
        ww = max(2, int(round(wall.width * self.width)))
        wh = max(2, int(round(wall.height * self.height)))
        cx, cy = _interp(wall.path, self._t(index))
        x0 = int(round(cx * self.width - ww / 2.0))
        y0 = int(round(cy * self.height - wh / 2.0))
        return x0, y0, x0 + ww, y0 + wh

    def layers(self, index: int, with_rgb: bool = True) -> List[Layer]:
        """The layers of frame ``index`` in drawing order (back to front)."""
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} out of range 0..{self.n_frames - 1}")
        out = []
        for _z, kind, k in self._order:
            if kind == 0:
                sp = self.sprite(k, index)
                x, y = self.object_position(k, index)
                rgb = None
                if with_rgb:
                    rgb = sp.rgb
                    if self.flat is not None:
                        rgb = np.empty_like(sp.rgb)
                        rgb[:] = np.asarray(self.flat[k], np.uint8)
                out.append(Layer("object", k, int(round(x - sp.cx)), int(round(y - sp.cy)), sp.cover, rgb))
            else:
                x0, y0, x1, y1 = self.wall_rect(k, index)
                cover = np.ones((y1 - y0, x1 - x0), bool)
                rgb = None
                if with_rgb:
                    rgb = self.bank.wall_texture(self.scenario.walls[k], x1 - x0, y1 - y0)
                    if self.flat is not None:
                        rgb = np.zeros_like(rgb)
                out.append(Layer("wall", k, x0, y0, cover, rgb))
        return out

    def _clip(self, layer: Layer) -> Optional[Tuple[int, int, int, int]]:
        x0, y0 = max(layer.x0, 0), max(layer.y0, 0)
        x1 = min(layer.x0 + layer.cover.shape[1], self.width)
        y1 = min(layer.y0 + layer.cover.shape[0], self.height)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1, y1

    def visibility(self, index: int, layers: Optional[List[Layer]] = None) -> Dict[int, ObjectFrameStats]:
        """Per object, its :class:`ObjectFrameStats` in frame ``index``, from the layers' rectangles
        only (no full-frame image; what the planner measures events with)."""
        layers = self.layers(index, with_rgb=False) if layers is None else layers
        stats = {}
        for n, layer in enumerate(layers):
            if layer.kind != "object":
                continue
            box = self._clip(layer)
            if box is None:
                stats[layer.key] = ObjectFrameStats(0, 0, False, ())
                continue
            x0, y0, x1, y1 = box
            sub = layer.cover[y0 - layer.y0:y1 - layer.y0, x0 - layer.x0:x1 - layer.x0]
            in_view = int(np.count_nonzero(sub))
            if in_view == 0:
                stats[layer.key] = ObjectFrameStats(0, 0, False, ())
                continue
            vis = sub.copy()
            covered = []
            for other in layers[n + 1:]:
                ob = self._clip(other)
                if ob is None:
                    continue
                ix0, iy0, ix1, iy1 = max(x0, ob[0]), max(y0, ob[1]), min(x1, ob[2]), min(y1, ob[3])
                if ix1 <= ix0 or iy1 <= iy0:
                    continue
                oc = other.cover[iy0 - other.y0:iy1 - other.y0, ix0 - other.x0:ix1 - other.x0]
                part = vis[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
                hit = part & oc
                if hit.any():
                    covered.append("wall" if other.kind == "wall" else other.key)
                    part &= ~oc
            at_border = in_view < int(np.count_nonzero(layer.cover)) or bool(
                (x0 == 0 and sub[:, 0].any()) or (y0 == 0 and sub[0].any())
                or (x1 == self.width and sub[:, -1].any()) or (y1 == self.height and sub[-1].any()))
            stats[layer.key] = ObjectFrameStats(int(np.count_nonzero(vis)), in_view, at_border, tuple(covered))
        return stats

    def background(self, index: int) -> np.ndarray:
        if self.flat is not None:
            return np.zeros((self.height, self.width, 3), np.uint8)
        src = self.bank.frame(self.scenario.background, self.scenario.background_frames[index])
        return _fit(src, self.width, self.height).copy()

    def render(self, index: int) -> Tuple[np.ndarray, np.ndarray, Dict[int, ObjectFrameStats]]:
        """``(image, labels, {object_id: ObjectFrameStats})`` of frame ``index``."""
        layers = self.layers(index)
        image = self.background(index)
        labels = np.zeros((self.height, self.width), np.uint8)
        for layer in layers:
            box = self._clip(layer)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            sl = (slice(y0 - layer.y0, y1 - layer.y0), slice(x0 - layer.x0, x1 - layer.x0))
            cover = layer.cover[sl]
            image[y0:y1, x0:x1][cover] = layer.rgb[sl][cover]
            labels[y0:y1, x0:x1][cover] = layer.key if layer.kind == "object" else 0
        return image, labels, self.visibility(index, layers)

    def object_stats(self) -> Dict[int, List[ObjectFrameStats]]:
        """Per object, its stats in every frame (from :meth:`visibility`, without rendering)."""
        if self._stats is None:
            stats: Dict[int, List[ObjectFrameStats]] = {oid: [] for oid in self.object_ids}
            for i in range(self.n_frames):
                per = self.visibility(i)
                for oid in self.object_ids:
                    stats[oid].append(per[oid])
            self._stats = stats
        return self._stats

    def absent_runs(self, fraction: float = ABSENT_FRACTION) -> Dict[int, List[Tuple[int, int]]]:
        """Per object, the runs of frames in which it counts as absent for the re-acquisition
        scorer (visible area 0 or below ``fraction`` of its median non-zero visible area)."""
        return {oid: _absent(st, fraction) for oid, st in self.object_stats().items()}

    def events(self) -> Dict[int, Dict[str, object]]:
        """Per object: its phase runs, the frames it is ``hidden`` (in view, nothing visible),
        ``out`` (outside the view) and ``absent`` (for the scorer), as runs ``[first, last]``."""
        phases = self.phases()
        absent = self.absent_runs()
        out = {}
        for oid in self.object_ids:
            out[oid] = {
                "phases": [[p, a, b] for p, a, b in phases[oid]],
                "hidden": [[a, b] for p, a, b in phases[oid] if p == "hidden"],
                "out": [[a, b] for p, a, b in phases[oid] if p == "out"],
                "absent": [[a, b] for a, b in absent[oid]],
            }
        return out


# ============================================================================ planning
@dataclass(frozen=True)
class Sources:
    """The source sequences of one composite: objects (``(sequence, object id)``, in output id
    order), the background and the wall's texture (None: the background's own frames)."""

    objects: Tuple[Tuple[str, int], ...]
    background: str
    wall: Optional[str] = None

    def label(self) -> str:
        objs = " + ".join(s if i == 1 else f"{s}#{i}" for s, i in self.objects)
        return f"objects {objs} on {self.background}" + (f", wall from {self.wall}" if self.wall else "")


def _source_object(infos: Dict[str, SequenceInfo], seq: str, oid: int) -> SourceObject:
    info = infos.get(seq)
    if info is None:
        raise EvalError(f"unknown source sequence {seq!r}")
    for s in info.objects:
        if s.object_id == oid:
            return s
    reason = dict(info.rejected).get(oid, "no such object")
    raise EvalError(f"{seq}: object {oid} cannot be cut out ({reason})")


def _pick_objects(kind: str, cands: List[SourceObject], rng: np.random.Generator, variant: int) -> List[SourceObject]:
    need = 2 if kind in ("cross", "gone") else 1
    if len(cands) < need:
        raise EvalError(f"{kind} needs {need} usable object(s); found {len(cands)}")
    order = [cands[i] for i in rng.permutation(len(cands))]
    if kind == "cross":
        # in front (id 2): one of the more solid half of the objects (a large inscribed circle
        # can hide the other completely); behind (id 1): any other
        solid = sorted(cands, key=lambda s: (-s.core, s.key))[:max(2, (len(cands) + 1) // 2)]
        fronts = [solid[i] for i in rng.permutation(len(solid))]
        front = fronts[variant % len(fronts)]
        backs = [s for s in order if s.sequence != front.sequence]
        if not backs:
            raise EvalError("cross needs objects from two sequences")
        return [backs[variant % len(backs)], front]
    picked = [order[(variant * need + k) % len(order)] for k in range(need)]
    if len({p.sequence for p in picked}) < need:
        picked = [order[(variant + k) % len(order)] for k in range(need)]
    return picked


def choose_sources(kind: str, infos: Dict[str, SequenceInfo], seed: int = 0, variant: int = 0) -> Sources:
    """The sources of variant ``variant`` of ``kind``: objects taken in a seeded order of the
    usable ones (so successive variants use other objects while there are enough), the
    background and the wall texture from sequences that give no object to this composite and,
    where there are enough, that no earlier variant of the kind used as background or wall."""
    if kind not in KINDS:
        raise ValueError(f"unknown scenario {kind!r}; known: {', '.join(KINDS)}")
    if variant < 0:
        raise ValueError(f"variant must be >= 0, got {variant}")
    cands = [s for info in infos.values() for s in info.objects]
    names = sorted(infos)
    taken: List[str] = []  # backgrounds and walls of the earlier variants
    for v in range(variant + 1):
        rng = np.random.default_rng([seed, KINDS.index(kind), 7])
        picked = _pick_objects(kind, cands, rng, v)
        used = {p.sequence for p in picked}
        seqs = [names[i] for i in rng.permutation(len(names))]
        free = [s for s in seqs if s not in used] or seqs
        fresh = [s for s in free if s not in taken] or free
        background = fresh[0]
        wall = None
        if kind == "wall":
            rest = [s for s in fresh if s != background] or [s for s in free if s != background] or [background]
            wall = rest[0]
        taken += [background] + ([wall] if wall else [])
    return Sources(tuple((p.sequence, p.object_id) for p in picked), background, wall)


def _keys(points: Sequence[Tuple[float, float, float]], n: int, w: int, h: int) -> Tuple[Tuple[float, float, float], ...]:
    """``(frame, x px, y px)`` points -> keyframes ``(t, x, y)`` in fractions (later points win
    at equal frames; frames clipped to the sequence)."""
    pts: Dict[float, Tuple[float, float]] = {}
    for f, x, y in points:
        f = min(max(float(f), 0.0), n - 1.0)
        pts[round(f, 6)] = (x, y)
    return tuple((f / (n - 1), x / w, y / h) for f, (x, y) in sorted(pts.items()))


def _line(x_at: float, i_at: float, v: float, lo: float, hi: float, n: int) -> List[Tuple[float, float]]:
    """``x(i) = x_at + v (i - i_at)`` for ``i`` in ``0..n-1``, held at ``lo``/``hi`` where it
    would pass them: ``[(frame, x), ...]`` points of the piecewise linear path."""
    def x(i):
        return x_at + v * (i - i_at)

    pts = []
    for i0, i1 in ((0.0, float(i_at)), (float(i_at), n - 1.0)):
        for i in (i0, i1):
            pts.append((i, min(max(x(i), lo), hi)))
        if v != 0:
            for bound in (lo, hi):
                ib = i_at + (bound - x_at) / v
                if i0 < ib < i1:
                    pts.append((ib, bound))
    return sorted(set(pts))


def _combine(xs: List[Tuple[float, float]], ys: List[Tuple[float, float]]) -> List[Tuple[float, float, float]]:
    """Merge x(frame) and y(frame) piecewise linear paths into ``(frame, x, y)`` points."""
    frames = sorted({f for f, _ in xs} | {f for f, _ in ys})
    fx, vx = zip(*xs)
    fy, vy = zip(*ys)
    return [(f, float(np.interp(f, fx, vx)), float(np.interp(f, fy, vy))) for f in frames]


class _Planner:
    """Builds one scenario of a kind from chosen sources (see :func:`plan_scenario`)."""

    def __init__(self, kind, root, infos, sources: Sources, size, n_frames, seed, name, bank) -> None:
        self.kind, self.root, self.infos, self.sources = kind, str(Path(root).resolve()), infos, sources
        self.w, self.h = size
        tag = zlib.crc32(repr((kind, sources.objects, sources.background, sources.wall)).encode())
        self.rng = np.random.default_rng([seed, KINDS.index(kind), tag])
        self.n_nominal = int(self.rng.integers(LENGTH[0], LENGTH[1] + 1))
        self.n = int(n_frames or self.n_nominal)
        if self.n < 12:
            raise ValueError(f"a composite needs at least 12 frames, got {self.n}")
        self.seed, self.name, self.bank = seed, name, bank
        self.srcs = [_source_object(infos, s, i) for s, i in sources.objects]
        bg = infos[sources.background]
        self.bg_frames = tuple(_pingpong(bg.n_frames, self.n, int(self.rng.integers(0, bg.n_frames))))
        self.schedules = []
        for src in self.srcs:
            m = len(src.frames)
            off = int(self.rng.integers(0, 2 * (m - 1)))
            self.schedules.append(tuple(src.frames[j] for j in _pingpong(m, self.n, off)))

    def frames(self, nominal: float) -> int:
        """A nominal event length (frames at the nominal length) at this length."""
        return max(1, int(round(nominal * self.n / self.n_nominal)))

    def pasted(self, k: int, oid: int, height: float, points, z: int = 0) -> PastedObject:
        src = self.srcs[k]
        return PastedObject(oid, src.sequence, src.object_id, self.schedules[k], height,
                            _keys(points, self.n, self.w, self.h), z)

    def sprites(self, k: int, height: float) -> List[Sprite]:
        """The sprites object ``k`` shows in every frame at ``height``."""
        src = self.srcs[k]
        scales = _run_scales(src, height, self.h)
        return [self.bank.sprite(src.sequence, src.object_id, j, scales[j]) for j in self.schedules[k]]

    def fit_height(self, k: int, height: float, max_w: float = 0.3, max_h: float = 0.45) -> float:
        """``height``, reduced until the object's widest shown frame fits in ``max_w`` of the frame
        width and its tallest in ``max_h`` of the height (from the source boxes, before cutting)."""
        src = self.srcs[k]
        shown = set(self.schedules[k])
        box = {f: (wd, ht) for f, wd, ht in zip(src.frames, src.widths, src.heights) if f in shown}
        for _ in range(30):
            scales = _run_scales(src, height, self.h)
            if (max(scales[f] * wd for f, (wd, _) in box.items()) <= max_w * self.w
                    and max(scales[f] * ht for f, (_, ht) in box.items()) <= max_h * self.h):
                break
            height *= 0.9
        return height

    def scene(self, objects, walls=()) -> CompositeScene:
        sc = CompositeScenario(self.name, self.kind, "", self.sources.background, self.bg_frames,
                               tuple(objects), tuple(walls), self.seed)
        return CompositeScene(sc, self.root, (self.w, self.h), self.bank)

    @staticmethod
    def extents(sprites: Sequence[Sprite]) -> Tuple[float, float, float, float]:
        e = np.array([s.extents for s in sprites])
        return tuple(float(v) for v in e.max(axis=0))

    def y_path(self, y0: float, sprites, drift: float = 0.05) -> List[Tuple[float, float]]:
        """A gently wandering height around ``y0`` that keeps the object inside the frame."""
        _, _, t, b = self.extents(sprites)
        lo, hi = t + 2, self.h - b - 2
        pts = []
        for f in np.linspace(0, self.n - 1, 4):
            y = y0 + self.rng.uniform(-drift, drift) * self.h
            pts.append((float(f), float(min(max(y, lo), hi)) if lo < hi else self.h / 2))
        return pts

    # -- kinds ---------------------------------------------------------------------------
    def wall(self) -> Tuple[CompositeScenario, str]:
        rng, w, h, n = self.rng, self.w, self.h, self.n
        height = self.fit_height(0, rng.uniform(0.15, 0.25), max_w=0.2)
        sp = self.sprites(0, height)
        le, ri, _, _ = self.extents(sp)
        width_px = max(rng.uniform(0.20, 0.28) * w, 1.5 * (le + ri) + 0.02 * w)
        direction = 1 if rng.random() < 0.5 else -1
        xc = rng.uniform(0.44, 0.56) * w
        drift = 0.0 if rng.random() < 0.5 else rng.uniform(0.03, 0.08) * w * (1 if rng.random() < 0.5 else -1)
        wall_keys = ((0.0, (xc - drift / 2) / w, 0.5), (1.0, (xc + drift / 2) / w, 0.5)) if drift else ((0.0, xc / w, 0.5),)
        wall = CompositeWall(WallSpec(wall_keys, width_px / w, WALL_HEIGHT),
                             self.sources.wall or self.sources.background,
                             int(rng.integers(0, self.infos[self.sources.wall or self.sources.background].n_frames)),
                             float(rng.uniform(0, 1)))
        target = self.frames(int(rng.integers(WALL_HIDDEN[0], WALL_HIDDEN[1] + 1)))
        a0 = rng.uniform(0.28, 0.36) * (n - 1)
        ys = self.y_path(rng.uniform(0.35, 0.65) * h, sp)
        lo, hi = le + _MARGIN * w, w - ri - _MARGIN * w
        wall_x = _interp(wall.spec.path, a0 / (n - 1))[0] * w
        x_touch = wall_x - direction * (width_px / 2 + (ri if direction > 0 else le))

        def build(v):
            pts = [p for p in _line(x_touch, a0, direction * v, lo, hi, n) if p[0] >= a0]
            x0 = min(max(x_touch - direction * v * a0, lo), hi)
            xs = [(0.0, x0)] + pts
            return self.scene([self.pasted(0, 1, height, _combine(xs, ys))], [wall])

        def score(scene):
            st = scene.object_stats()[1]
            ph = [s.phase for s in st]
            hidden = ph.count("hidden")
            last = max((i for i, p in enumerate(ph) if p == "hidden"), default=n)
            after = sum(1 for p in ph[last + 1:] if p == "full")
            ok = ph[0] == "full" and after >= 0.12 * n and "out" not in ph and len(_absent(st)) == 1
            return abs(hidden - target) + (0 if ok else 1000) + (0 if hidden else 500)

        scene = self._search(build, score, np.geomspace(0.2, 0.06 * w, 60))
        hid = scene.events()[1]["hidden"]
        desc = (f"object 1 ({self.srcs[0].key}) moves {'left to right' if direction > 0 else 'right to left'} "
                f"and passes completely behind a {'static' if not drift else 'slowly moving'} wall "
                f"(texture from {wall.sequence}); hidden {_fmt_runs(hid)}")
        return scene.scenario, desc

    def exit(self) -> Tuple[CompositeScenario, str]:
        rng, w, h, n = self.rng, self.w, self.h, self.n
        height = self.fit_height(0, rng.uniform(0.15, 0.25))
        sp = self.sprites(0, height)
        le, ri, _, _ = self.extents(sp)
        edge = 1 if rng.random() < 0.5 else -1
        target = self.frames(int(rng.integers(EXIT_OUT[0], EXIT_OUT[1] + 1)))
        x_start = (rng.uniform(0.3, 0.55) if edge > 0 else rng.uniform(0.45, 0.7)) * w
        x_end = (rng.uniform(0.5, 0.75) if edge > 0 else rng.uniform(0.25, 0.5)) * w
        x_park = w + le + 2 if edge > 0 else -ri - 2
        a_out = rng.uniform(0.3, 0.4) * (n - 1)
        ys_a = self.y_path(rng.uniform(0.3, 0.7) * h, sp, 0.03)
        y_out = float(np.interp(a_out, [p[0] for p in ys_a], [p[1] for p in ys_a]))
        _, _, t, b = self.extents(sp)
        y_back = float(min(max(y_out + rng.uniform(0.08, 0.15) * h * (1 if rng.random() < 0.5 else -1), t + 2),
                           h - b - 2))
        v = abs(x_park - x_start) / a_out
        v_back = v * rng.uniform(0.7, 1.2)
        back_frames = abs(x_park - x_end) / v_back

        def build(p):
            pts = [(f, x, y) for f, x, y in _combine([(0.0, x_start), (a_out, x_park)], ys_a) if f <= a_out]
            r = a_out + p
            pts += [(r, x_park, y_back), (r + back_frames, x_end, y_back), (n - 1, x_end, y_back)]
            return self.scene([self.pasted(0, 1, height, pts)])

        def score(scene):
            ph = [s.phase for s in scene.object_stats()[1]]
            out = ph.count("out")
            runs = [r for r in value_runs(ph) if r[0] == "out"]
            ok = (ph[0] == "full" and len(runs) == 1 and ph[-1] == "full" and "hidden" not in ph
                  and len(_absent(scene.object_stats()[1])) == 1)
            return abs(out - target) + (0 if ok else 1000)

        scene = self._search(build, score, np.arange(0, n))
        out = scene.events()[1]["out"]
        desc = (f"object 1 ({self.srcs[0].key}) drives out of the {'right' if edge > 0 else 'left'} edge, "
                f"stays out {_fmt_runs(out)} and comes back in through the same edge")
        return scene.scenario, desc

    def gone(self) -> Tuple[CompositeScenario, str]:
        rng, w, h, n = self.rng, self.w, self.h, self.n
        h1 = self.fit_height(0, rng.uniform(0.15, 0.25), max_w=0.22)
        h2 = self.fit_height(1, rng.uniform(0.15, 0.25), max_w=0.22)
        s1, s2 = self.sprites(0, h1), self.sprites(1, h2)
        l1, r1, _, _ = self.extents(s1)
        l2, r2, _, _ = self.extents(s2)
        edge = 1 if rng.random() < 0.5 else -1  # object 1 leaves through this side
        m = _MARGIN * w
        a_out = rng.uniform(0.3, 0.45) * (n - 1)
        if edge > 0:  # object 1 on the right half, object 2 on the left half
            x1 = rng.uniform(0.5 * w + l1 + m, max(0.5 * w + l1 + m, 0.8 * w - r1))
            park = w + l1 + 2
            lo2, hi2 = l2 + m, 0.5 * w - r2 - m
        else:
            x1 = rng.uniform(min(0.2 * w + l1, 0.5 * w - r1 - m), 0.5 * w - r1 - m)
            park = -r1 - 2
            lo2, hi2 = 0.5 * w + l2 + m, w - r2 - m
        if hi2 < lo2:
            hi2 = lo2
        ys1 = self.y_path(rng.uniform(0.3, 0.7) * h, s1)
        xs1 = [(0.0, x1), (a_out, park), (n - 1.0, park)]
        xs2 = [(float(f), float(rng.uniform(lo2, hi2))) for f in np.linspace(0, n - 1, 4)]
        ys2 = self.y_path(rng.uniform(0.3, 0.7) * h, s2, 0.1)
        scene = self.scene([self.pasted(0, 1, h1, _combine(xs1, ys1)),
                            self.pasted(1, 2, h2, _combine(xs2, ys2), z=1)])
        ev = scene.events()
        ph1 = [p for p, _, _ in ev[1]["phases"]]
        if ph1[-1] != "out" or ph1.count("out") != 1 or ev[1]["phases"][0][0] != "full":
            raise EvalError(f"{self.name}: object 1 does not leave for good: {ev[1]['phases']}")
        if [p for p, _, _ in ev[2]["phases"]] != ["full"]:
            raise EvalError(f"{self.name}: object 2 is not fully visible throughout: {ev[2]['phases']}")
        left = ev[1]["out"][0][0]
        desc = (f"object 1 ({self.srcs[0].key}) leaves through the {'right' if edge > 0 else 'left'} edge and "
                f"is out from frame {left} to the end; object 2 ({self.srcs[1].key}) stays fully in view")
        return scene.scenario, desc

    def cross(self) -> Tuple[CompositeScenario, str]:
        rng, w, h, n = self.rng, self.w, self.h, self.n
        # self.srcs[0]: behind (id 1), self.srcs[1]: in front (id 2)
        hf = self.fit_height(1, rng.uniform(0.3, 0.4), max_w=0.4, max_h=0.5)
        hb = rng.uniform(0.12, 0.18)
        target = self.frames(int(rng.integers(CROSS_HIDDEN[0], CROSS_HIDDEN[1] + 1)))
        c = rng.uniform(0.42, 0.58) * (n - 1)
        ci = int(round(c))
        direction = 1 if rng.random() < 0.5 else -1  # the front object's direction
        beta = rng.uniform(0.5, 1.0)  # the back object's speed / the front's
        xc = rng.uniform(0.45, 0.55) * w
        yf = rng.uniform(0.45, 0.6) * h
        sf = self.sprites(1, hf)
        lf, rf, tf, bf = self.extents(sf)
        yf = min(max(yf, tf + 2), h - bf - 2)
        # the front object's most solid point at the crossing: the back one's centroid goes there
        core = sf[ci].cover.astype(np.uint8)
        dt = cv2.distanceTransform(np.pad(core, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        cy_, cx_ = np.unravel_index(int(np.argmax(dt)), dt.shape)
        dx_core, dy_core = cx_ - sf[ci].cx, cy_ - sf[ci].cy
        best = None
        while True:
            sb = self.sprites(0, hb)
            lb, rb, tb, bb = self.extents(sb)
            yb = min(max(yf + dy_core, tb + 2), h - bb - 2)
            ysf = [(0.0, yf), (n - 1.0, yf)]
            ysb = [(0.0, yb), (n - 1.0, yb)]

            def build(v, hb=hb, lb=lb, rb=rb, ysb=ysb, ysf=ysf):
                xf = _line(xc, c, direction * v, lf + 2, w - rf - 2, n)
                xb = _line(xc + dx_core, c, -direction * beta * v, lb + 2, w - rb - 2, n)
                return self.scene([self.pasted(0, 1, hb, _combine(xb, ysb), z=0),
                                   self.pasted(1, 2, hf, _combine(xf, ysf), z=1)])

            def score(scene):
                st = scene.object_stats()
                ph1 = [s.phase for s in st[1]]
                ph2 = [s.phase for s in st[2]]
                hidden = ph1.count("hidden")
                runs = [r for r in value_runs(ph1) if r[0] == "hidden"]
                k = max(1, int(round(0.1 * n)))  # both fully visible, apart, at the start and the end
                overlap = sum(1 for s in st[1] if 2 in s.covered_by)  # not a long ride together
                ok = (len(runs) <= 1 and all(p == "full" for p in ph1[:k] + ph1[-k:] + ph2[:k] + ph2[-k:])
                      and overlap <= hidden + 0.3 * n and len(_absent(st[1])) == 1)
                return abs(hidden - target) + (0 if ok else 1000) + (0 if hidden else 500)

            scene = self._search(build, score, np.geomspace(0.5, 0.04 * w, 40))
            sc = score(scene)
            if best is None or sc < best[0]:
                best = (sc, scene)
            if sc <= 2 or hb < 0.07:
                break
            hb *= 0.9
        sc, scene = best
        if sc >= 500:
            raise EvalError(f"{self.name}: {self.srcs[0].key} never gets fully covered by {self.srcs[1].key}")
        hid = scene.events()[1]["hidden"]
        desc = (f"object 2 ({self.srcs[1].key}, in front) and object 1 ({self.srcs[0].key}, behind) cross; "
                f"object 1 fully covered {_fmt_runs(hid)}")
        return scene.scenario, desc

    @staticmethod
    def _search(build, score, values) -> CompositeScene:
        """The scene of the first value with the lowest score."""
        best = None
        for v in values:
            scene = build(float(v))
            s = score(scene)
            if best is None or s < best[0]:
                best = (s, scene)
            if s == 0:
                break
        return best[1]


def _fmt_runs(runs) -> str:
    if not runs:
        return "never"
    return ", ".join(f"frames {a}-{b} ({b - a + 1})" for a, b in runs)


def plan_scenario(kind: str, root, sources: Optional[Sources] = None, size: Optional[Tuple[int, int]] = None,
                  n_frames: Optional[int] = None, seed: int = 0, variant: int = 0, name: Optional[str] = None,
                  sequences: Optional[Sequence[str]] = None, bank: Optional[SpriteBank] = None) -> CompositeScene:
    """The scene of variant ``variant`` of ``kind`` (or of the given ``sources``) from ``root``.

    Args:
        kind: one of :data:`KINDS`.
        root: a DAVIS-layout folder (``JPEGImages/480p``, ``Annotations/480p``).
        sources: the source sequences (default :func:`choose_sources` of ``variant``).
        size: ``(width, height)`` of the output (default 854x480).
        n_frames: the length (default drawn in :data:`LENGTH` from the seed and the sources).
        seed: with the kind and the sources, every choice (paths, sizes, timings, offsets).
        name: the output sequence's name (default ``<kind>-<variant>``).
        sequences: only these sequences of ``root`` are sources.
    """
    infos = analyse_root(root, sequences)
    sources = sources or choose_sources(kind, infos, seed, variant)
    for s in (sources.background, sources.wall):
        if s is not None and s not in infos:
            raise EvalError(f"unknown source sequence {s!r}")
    planner = _Planner(kind, root, infos, sources, size or NOMINAL_SIZE, n_frames, seed,
                       name or f"{kind}-{variant}", bank or SpriteBank(root))
    scenario, desc = getattr(planner, kind)()
    scenario = CompositeScenario(scenario.name, kind, desc, scenario.background, scenario.background_frames,
                                 scenario.objects, scenario.walls, seed)
    return CompositeScene(scenario, root, size or NOMINAL_SIZE, planner.bank)


def manifest_entry(scene: CompositeScene) -> dict:
    """What ``composite.json`` records of a scene: sources, geometry and exact events."""
    sc = scene.scenario
    return {
        "kind": sc.kind,
        "description": sc.description,
        "size": [scene.width, scene.height],
        "n_frames": scene.n_frames,
        "seed": sc.seed,
        "sources": sc.sources(),
        "background_frames": list(sc.background_frames),
        "objects": {o.object_id: {"sequence": o.sequence, "source_id": o.source_id, "height": o.height,
                                  "z": o.z, "path": [list(k) for k in o.path], "source_frames": list(o.frames)}
                    for o in sc.objects},
        "walls": [{"sequence": wl.sequence, "frame": wl.frame, "crop_x": wl.crop_x, "width": wl.spec.width,
                   "height": wl.spec.height, "path": [list(k) for k in wl.spec.path]} for wl in sc.walls],
        "events": scene.events(),
    }


def _parse_list(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sampt_ros.tools.composite",
        description="Composite re-acquisition test sequences from a DAVIS-layout root: objects cut out of some "
                    "sequences with their masks, pasted over another sequence's moving-camera frames, hidden by "
                    "an opaque wall, driven out of the view, crossed. Writes the DAVIS-2017 layout and "
                    "OUT/composite.json (sources, paths, exact events).")
    parser.add_argument("root", metavar="DAVIS_ROOT", help="source folder (JPEGImages/480p, Annotations/480p)")
    parser.add_argument("out", metavar="OUT", help="output folder (JPEGImages/ and Annotations/ are created inside)")
    parser.add_argument("--scenarios", type=_parse_list, default=list(KINDS),
                        help=f"comma-separated kinds (default all: {','.join(KINDS)})")
    parser.add_argument("--variants", type=int, default=1,
                        help="sequences per kind, each from other sources where there are enough (default 1)")
    parser.add_argument("--size", type=size_argument, default=NOMINAL_SIZE, help="WxH (default 854x480)")
    parser.add_argument("--frames", type=int, default=None, help="length (default: drawn in 100..150 per sequence)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequences", type=_parse_list, default=None,
                        help="comma-separated source sequences to use (default: all of DAVIS_ROOT)")
    parser.add_argument("--jpeg-quality", type=int, default=95)
    args = parser.parse_args(argv)
    bad = [k for k in args.scenarios if k not in KINDS]
    if bad:
        parser.error(f"unknown scenario(s) {', '.join(bad)}; known: {', '.join(KINDS)}")
    if not 1 <= args.variants <= 50:
        parser.error("--variants must be in 1..50")
    out = Path(args.out)
    manifest_path = out / "composite.json"
    try:
        infos = analyse_root(args.root, args.sequences)
        usable = [s.key for i in infos.values() for s in i.objects]
        print(f"sources in {args.root}: {len(infos)} sequences; objects that can be cut out: {', '.join(usable)}")
        for info in infos.values():
            for oid, why in info.rejected:
                print(f"  not used: {info.name} object {oid}: {why}")
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        bank = SpriteBank(args.root)
        for kind in args.scenarios:
            seen = set()
            for v in range(args.variants):
                src = choose_sources(kind, infos, args.seed, v)
                if src in seen:
                    print(f"{kind}-{v}: skipped (no other source combination left)")
                    continue
                seen.add(src)
                scene = plan_scenario(kind, args.root, src, args.size, args.frames, args.seed, v,
                                      sequences=args.sequences, bank=bank)
                folder = write_davis(out, scene, args.jpeg_quality)
                entry = manifest_entry(scene)
                manifest[scene.name] = json.loads(json.dumps(entry))
                print(f"{scene.name}: {scene.n_frames} frames of {scene.width}x{scene.height} -> {folder}")
                print(f"  sources: {src.label()}; background frames ping-pong from {scene.scenario.background_frames[0]}")
                print(f"  {scene.scenario.description}")
                for line in scene.describe().splitlines():
                    print(f"  {line}")
                for oid, ev in entry["events"].items():
                    print(f"  object {oid} absent for the scorer: {_fmt_runs(ev['absent'])}")
            # free the cut-outs of this kind
            bank._sprites.clear()
        out.mkdir(parents=True, exist_ok=True)
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        print(f"manifest: {manifest_path}")
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
