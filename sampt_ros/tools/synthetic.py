"""Synthetic, fully deterministic videos with exact ground truth: the demo's sequences and the
re-acquisition test set.

Two kinds of scene:

* :class:`SyntheticScene` (the original single-object sequence, scenario ``partial``): a
  procedurally textured blob moves across a textured, slowly panning background, turns, grows
  and shrinks, and half-way through a textured bar sweeps past in front of it (a long, partial
  occlusion).
* :class:`MultiObjectScene`: several objects (each a distinct textured sprite in its own colour
  family: ``warm`` orange/red, ``magenta``, ``gold``), each on a keyframed path that may leave
  the frame, opaque textured walls (static or moving) drawn in front of them, and a z-order
  between objects (a crossing object passes in front of the other). Scenarios are named in
  :data:`SCENARIOS` (``demo``, ``partial``, ``occluded``, ``exit_return``, ``crossing``,
  ``never_returns``).

Ground truth is exact: every layer is composited with hard (binary) coverage, so the label map
(``HxW uint8``: 0 background, k = object k) marks exactly the pixels drawn from object k's
texture in the final image (its visible part; covered by a wall or a nearer object, or outside
the frame, it has no label).

Everything is a function of the scenario, the frame size, the number of frames and the seed,
so the same call gives the same pixels on every machine with the same OpenCV/numpy. Geometry is
in fractions of the frame size and time in fractions of the sequence, so a scenario rendered
smaller (e.g. 427x240 for fast tests; keep 16:9 for identical events) or shorter keeps its
events (frame numbers scale with the length). Scenes are written in the DAVIS-2017 layout
(``JPEGImages/480p/<seq>/%05d.jpg`` and paletted ``Annotations/480p/<seq>/%05d.png``, pixel
value = object id), which ``sampt-eval davis`` and ``sampt-bag from-davis`` read.

Examples::

    python -m sampt_ros.tools.synthetic outputs/synthetic --scenario crossing --size 427x240
    python -m sampt_ros.tools.synthetic outputs/extended --scenario all     # one sequence each

    from sampt_ros.tools.synthetic import make_scene, render_scenario
    frames, labels = render_scenario("occluded", size=(427, 240))
    scene = make_scene("demo"); scene.phases()   # per object: full/partial/hidden/out runs
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..core.metrics import runs
from .cli import size_argument

#: Short name of the synthetic sequence in DAVIS-layout folders.
DEFAULT_SEQUENCE = "synthetic"

_SPRITE = 256  # side (px) of the canonical object sprite before scaling


@dataclass
class SyntheticSpec:
    """What to render.

    Attributes:
        width, height: frame size in pixels (e.g. 854x480 like DAVIS 480p, or 640x480).
        n_frames: number of frames.
        seed: seeds every random choice (textures, colours, path phases).
        occlusion: whether the occluder bar sweeps past in front of the object.
        name: the sequence's folder name in the DAVIS layout.
    """

    width: int = 854
    height: int = 480
    n_frames: int = 120
    seed: int = 0
    occlusion: bool = True
    name: str = DEFAULT_SEQUENCE

    def __post_init__(self) -> None:
        if not (160 <= int(self.width) <= 4096 and 120 <= int(self.height) <= 4096):
            raise ValueError(f"frame size must be within 160x120..4096x4096, got {self.width}x{self.height}")
        if not 3 <= int(self.n_frames) <= 100000:
            raise ValueError(f"n_frames must be in 3..100000, got {self.n_frames}")
        if not self.name or os.sep in self.name or self.name in (".", ".."):
            raise ValueError(f"name must be a plain folder name, got {self.name!r}")
        self.width, self.height, self.n_frames = int(self.width), int(self.height), int(self.n_frames)


def _value_noise(rng: np.random.Generator, height: int, width: int, cells: Sequence[int]) -> np.ndarray:
    """``HxW float32`` smooth noise in 0..1: random grids of several cell sizes, upsampled and summed."""
    acc = np.zeros((height, width), np.float32)
    total = 0.0
    for k, cell in enumerate(cells):
        grid = rng.random((max(2, height // cell + 2), max(2, width // cell + 2))).astype(np.float32)
        weight = 0.5 ** k
        acc += weight * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += weight
    acc /= total
    lo, hi = float(acc.min()), float(acc.max())
    return (acc - lo) / max(hi - lo, 1e-6)


def _colourise(noise: np.ndarray, dark: Sequence[float], light: Sequence[float]) -> np.ndarray:
    """Map ``HxW`` 0..1 noise onto a two-colour ramp -> ``HxWx3 float32`` RGB 0..255."""
    d = np.asarray(dark, np.float32)
    l = np.asarray(light, np.float32)
    return d + noise[..., None] * (l - d)


def _sprinkle(rng: np.random.Generator, img: np.ndarray, n: int, radius: Tuple[int, int],
              palette: np.ndarray) -> None:
    """Draw ``n`` random filled circles/squares in colours from ``palette`` (Kx3) onto ``img`` (in place).

    They give the trackers corners and the texture some high frequencies.
    """
    h, w = img.shape[:2]
    for _ in range(n):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(radius[0], radius[1] + 1))
        colour = tuple(float(c) for c in palette[int(rng.integers(0, len(palette)))] * rng.uniform(0.75, 1.1))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), r, colour, -1, lineType=cv2.LINE_8)
        else:
            cv2.rectangle(img, (x - r, y - r), (x + r, y + r), colour, -1, lineType=cv2.LINE_8)


class SyntheticScene:
    """Renders frames of one :class:`SyntheticSpec` on demand.

    ``scene.frame(i) -> (image HxWx3 uint8 RGB, mask HxW bool)``; the mask is the object's
    visible part (object coverage minus occluder coverage) in frame ``i``.
    """

    def __init__(self, spec: Optional[SyntheticSpec] = None) -> None:
        self.spec = spec or SyntheticSpec()
        rng = np.random.default_rng(self.spec.seed)
        w, h = self.spec.width, self.spec.height
        self._pan = int(round(0.06 * w))  # background pans by up to this many pixels

        # Background: cool greens/blues with grey-blue speckles (far from the object's hues).
        bw, bh = w + 2 * self._pan, h + 2 * self._pan
        bg = _colourise(_value_noise(rng, bh, bw, (96, 32, 8)), (20, 60, 50), (120, 170, 140))
        _sprinkle(rng, bg, n=int(bw * bh / 1500), radius=(2, 7),
                  palette=np.array([[40, 90, 120], [90, 140, 90], [160, 190, 180], [30, 50, 70]], np.float32))
        self.background = np.clip(bg, 0, 255).astype(np.uint8)

        # Object sprite: warm texture with spots and stripes; a wavy star-like outline.
        s = _SPRITE
        tex = _colourise(_value_noise(rng, s, s, (48, 12)), (150, 40, 20), (250, 170, 60))
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        stripes = 0.5 + 0.5 * np.sin((xx + 0.6 * yy) * (2 * np.pi / 22.0))
        tex *= (0.8 + 0.2 * stripes)[..., None]
        _sprinkle(rng, tex, n=40, radius=(3, 9),
                  palette=np.array([[255, 230, 120], [120, 20, 30], [240, 90, 40]], np.float32))
        self.object_texture = np.clip(tex, 0, 255).astype(np.uint8)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
        radius = 0.36 * s * (1 + 0.16 * np.sin(3 * theta + phase[0]) + 0.07 * np.cos(5 * theta + phase[1]))
        outline = np.stack([s / 2 + radius * np.cos(theta), s / 2 + radius * np.sin(theta)], 1)
        self.object_shape = np.zeros((s, s), np.uint8)
        cv2.fillPoly(self.object_shape, [np.round(outline).astype(np.int32)], 1, lineType=cv2.LINE_8)

        # Occluder sprite: a bar of blue-grey with dark horizontal bands.
        ow, oh = max(8, int(0.08 * w)), int(0.62 * h)
        occ = _colourise(_value_noise(rng, oh, ow, (24, 6)), (60, 70, 110), (170, 180, 210))
        bands = (np.arange(oh) // 12) % 2 == 0
        occ[bands] *= 0.7
        self.occluder_texture = np.clip(occ, 0, 255).astype(np.uint8)

        # Path parameters, jittered by the seed.
        self._jitter = rng.uniform(-1, 1, size=6)

    # -- geometry ----------------------------------------------------------------------------
    def object_pose(self, index: int) -> Tuple[float, float, float, float]:
        """``(cx, cy, angle_deg, scale)`` of the object in frame ``index`` (pixels, degrees)."""
        w, h, n = self.spec.width, self.spec.height, self.spec.n_frames
        t = index / max(n - 1, 1)
        j = self._jitter
        ease = 0.5 - 0.5 * math.cos(math.pi * t)  # slow start and end
        cx = w * (0.30 + 0.40 * ease + 0.02 * j[0])
        cy = h * (0.50 + 0.10 * math.sin(2 * math.pi * (1.2 * t + 0.1 * j[1])))
        angle = 75.0 * math.sin(2 * math.pi * (0.8 * t + 0.05 * j[2]))
        scale = 1.0 + 0.2 * math.sin(2 * math.pi * (0.9 * t + 0.25 + 0.05 * j[3]))
        return cx, cy, angle, scale

    def occluder_pose(self, index: int) -> Optional[Tuple[float, float, float]]:
        """``(cx, cy, angle_deg)`` of the occluder bar in frame ``index``, or None when off-screen."""
        if not self.spec.occlusion:
            return None
        w, h, n = self.spec.width, self.spec.height, self.spec.n_frames
        t = index / max(n - 1, 1)
        t0, t1 = 0.20 + 0.02 * self._jitter[4], 0.80 + 0.02 * self._jitter[5]
        if not t0 <= t <= t1:
            return None
        u = (t - t0) / (t1 - t0)
        margin = 0.6 * self.occluder_texture.shape[0]
        # Sweeps left to right, overtaking the object mid-sequence: a long, partial occlusion.
        cx = -margin + u * (w + 2 * margin)
        return cx, h * 0.42, 12.0

    def _object_scale_px(self) -> float:
        # At scale 1 the object's mean radius (0.36 of the sprite) is 0.16 of the frame height.
        return 0.16 * self.spec.height / (0.36 * _SPRITE)

    def _affine(self, sprite_wh: Tuple[int, int], cx: float, cy: float, angle: float,
                scale: float) -> np.ndarray:
        """2x3 matrix taking sprite pixels to frame pixels (sprite centre -> (cx, cy))."""
        a = math.radians(angle)
        c, s = scale * math.cos(a), scale * math.sin(a)
        sx, sy = (sprite_wh[0] - 1) / 2.0, (sprite_wh[1] - 1) / 2.0
        return np.array([[c, -s, cx - (c * sx - s * sy)], [s, c, cy - (s * sx + c * sy)]], np.float64)

    # -- rendering ---------------------------------------------------------------------------
    def layers(self, index: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The layers of frame ``index`` before compositing.

        Returns ``(background HxWx3 uint8, object_rgb HxWx3 uint8, object_cover HxW bool,
        occluder_rgb HxWx3 uint8, occluder_cover HxW bool)``.
        """
        if not 0 <= index < self.spec.n_frames:
            raise IndexError(f"frame {index} out of range 0..{self.spec.n_frames - 1}")
        w, h, n = self.spec.width, self.spec.height, self.spec.n_frames
        t = index / max(n - 1, 1)
        dx = int(round(self._pan * (1 + math.sin(2 * math.pi * 0.5 * t))))
        dy = int(round(0.5 * self._pan * (1 + math.sin(2 * math.pi * 0.7 * t + 1.0))))
        background = self.background[dy:dy + h, dx:dx + w]

        cx, cy, angle, scale = self.object_pose(index)
        m = self._affine((_SPRITE, _SPRITE), cx, cy, angle, scale * self._object_scale_px())
        object_rgb = cv2.warpAffine(self.object_texture, m, (w, h), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT)
        object_cover = cv2.warpAffine(self.object_shape, m, (w, h), flags=cv2.INTER_NEAREST,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)

        pose = self.occluder_pose(index)
        if pose is None:
            occluder_rgb = np.zeros_like(background)
            occluder_cover = np.zeros((h, w), bool)
        else:
            oh, ow = self.occluder_texture.shape[:2]
            mo = self._affine((ow, oh), pose[0], pose[1], pose[2], 1.0)
            occluder_rgb = cv2.warpAffine(self.occluder_texture, mo, (w, h), flags=cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_REFLECT)
            occluder_cover = cv2.warpAffine(np.ones((oh, ow), np.uint8), mo, (w, h), flags=cv2.INTER_NEAREST,
                                            borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        return background, object_rgb, object_cover, occluder_rgb, occluder_cover

    def frame(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(image HxWx3 uint8 RGB, mask HxW bool)`` of frame ``index``; mask = visible object."""
        background, object_rgb, object_cover, occluder_rgb, occluder_cover = self.layers(index)
        mask = object_cover & ~occluder_cover
        image = background.copy()
        image[object_cover] = object_rgb[object_cover]
        image[occluder_cover] = occluder_rgb[occluder_cover]
        return image, mask

    def __len__(self) -> int:
        return self.spec.n_frames

    def __iter__(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        for i in range(self.spec.n_frames):
            yield self.frame(i)


# ============================================================================ multi-object scenes
#: The nominal frame size of every scenario (DAVIS 480p); ``size=`` renders it smaller or larger.
NOMINAL_SIZE = (854, 480)

#: Colour families of the objects: ``(dark, light)`` ends of the texture's colour ramp, the
#: colours of its spots, and its stripes (period in sprite pixels, direction (dx, dy)). All
#: are warm/saturated, far from the background's greens and blues and the walls' blue-greys.
PALETTES = {
    "warm": {"ramp": ((150, 40, 20), (250, 170, 60)),
             "spots": ((255, 230, 120), (120, 20, 30), (240, 90, 40)),
             "stripes": (22.0, (1.0, 0.6))},
    "magenta": {"ramp": ((105, 15, 95), (245, 115, 225)),
                "spots": ((255, 200, 250), (60, 5, 70), (200, 40, 160)),
                "stripes": (16.0, (-0.5, 1.0))},
    "gold": {"ramp": ((150, 120, 10), (255, 235, 110)),
             "spots": ((255, 250, 200), (110, 70, 0), (230, 170, 30)),
             "stripes": (28.0, (0.2, 1.0))},
}
#: The walls' colour ramp (blue-grey, as the partial scenario's bar) and band period (px at 480 p).
WALL_RAMP = ((60, 70, 110), (170, 180, 210))
WALL_BAND = 12

Keyframes = Tuple[Tuple[float, float, float], ...]


def _check_keyframes(path: Sequence[Sequence[float]], what: str) -> Keyframes:
    try:
        keys = tuple((float(t), float(x), float(y)) for t, x, y in path)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: keyframes must be (t, x, y) triples, got {path!r}") from None
    if not keys:
        raise ValueError(f"{what}: at least one keyframe is needed")
    ts = [k[0] for k in keys]
    if any(not 0.0 <= t <= 1.0 for t in ts) or any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"{what}: keyframe times must increase strictly within 0..1, got {ts}")
    if not all(math.isfinite(v) for k in keys for v in k):
        raise ValueError(f"{what}: keyframes must be finite")
    return keys


def _interp(path: Keyframes, t: float) -> Tuple[float, float]:
    """Position at time ``t`` (0..1): piecewise linear between keyframes, held before/after them."""
    ts = [k[0] for k in path]
    return float(np.interp(t, ts, [k[1] for k in path])), float(np.interp(t, ts, [k[2] for k in path]))


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a :class:`Scenario`.

    Attributes:
        object_id: its label in the ground truth (1..255).
        path: keyframes ``(t, x, y)``: ``t`` in 0..1 of the sequence (frame ``i`` is at
            ``t = i / (n_frames - 1)``), ``(x, y)`` the sprite's centre in fractions of the frame
            width and height (values outside 0..1 put it outside the view); linear in between.
        palette: its colour family, a key of :data:`PALETTES`.
        size: mean radius as a multiple of ``0.16 * frame height`` (the partial scenario's object
            at scale 1); the wavy outline reaches about 1.23 times the mean radius.
        z: drawing order; a higher z is drawn in front (walls default to 100).
        turn_deg, turn_cycles: rotation ``turn_deg * sin(2 pi turn_cycles t)``.
        pulse, pulse_cycles: scale ``1 + pulse * sin(2 pi (pulse_cycles t + 0.25))``.
        lobes: the two harmonics of the wavy outline (distinct shapes per object).
    """

    object_id: int
    path: Keyframes
    palette: str = "warm"
    size: float = 1.0
    z: int = 0
    turn_deg: float = 60.0
    turn_cycles: float = 0.8
    pulse: float = 0.08
    pulse_cycles: float = 0.9
    lobes: Tuple[int, int] = (3, 5)

    def __post_init__(self) -> None:
        if not 1 <= int(self.object_id) <= 255:
            raise ValueError(f"object_id must be in 1..255, got {self.object_id}")
        if self.palette not in PALETTES:
            raise ValueError(f"palette must be one of {sorted(PALETTES)}, got {self.palette!r}")
        if not 0.05 <= float(self.size) <= 3.0:
            raise ValueError(f"size must be in 0.05..3, got {self.size}")
        if not 0.0 <= float(self.pulse) < 0.5:
            raise ValueError(f"pulse must be in 0..0.5, got {self.pulse}")
        object.__setattr__(self, "path", _check_keyframes(self.path, f"object {self.object_id}"))

    def pose(self, t: float) -> Tuple[float, float, float, float]:
        """``(x, y, angle_deg, scale)`` at time ``t``: centre in fractions of the frame, scale x size."""
        x, y = _interp(self.path, t)
        angle = self.turn_deg * math.sin(2 * math.pi * self.turn_cycles * t)
        scale = self.size * (1.0 + self.pulse * math.sin(2 * math.pi * (self.pulse_cycles * t + 0.25)))
        return x, y, angle, scale


@dataclass(frozen=True)
class WallSpec:
    """An opaque, textured, axis-aligned rectangle drawn in front of the objects behind it.

    Attributes:
        path: keyframes ``(t, x, y)`` of its centre (one keyframe: a static wall).
        width, height: its size in fractions of the frame width and height.
        z: drawing order (default 100: in front of every object).
    """

    path: Keyframes
    width: float
    height: float
    z: int = 100

    def __post_init__(self) -> None:
        if not (0.0 < float(self.width) <= 4.0 and 0.0 < float(self.height) <= 4.0):
            raise ValueError(f"wall size must be in (0, 4] of the frame, got {self.width}x{self.height}")
        object.__setattr__(self, "path", _check_keyframes(self.path, "wall"))


@dataclass(frozen=True)
class Scenario:
    """A named scene: objects, walls, length. ``legacy`` marks the original single-object sequence."""

    name: str
    description: str
    n_frames: int
    objects: Tuple[ObjectSpec, ...] = ()
    walls: Tuple[WallSpec, ...] = ()
    legacy: bool = False

    def __post_init__(self) -> None:
        ids = [o.object_id for o in self.objects]
        if len(set(ids)) != len(ids):
            raise ValueError(f"scenario {self.name!r}: object ids repeat: {ids}")
        if not self.legacy and not ids:
            raise ValueError(f"scenario {self.name!r} has no object")

    @property
    def object_ids(self) -> List[int]:
        return [1] if self.legacy else sorted(o.object_id for o in self.objects)


#: frame ``i`` of an ``n``-frame scenario is at ``t = i / (n - 1)``; keyframe times below are
#: written as ``_f(frame, n)`` where a frame number is meant at the nominal length.
def _f(frame: float, n: int) -> float:
    return frame / (n - 1)


def _registry() -> Dict[str, Scenario]:
    full_height = 1.1  # walls taller than the frame: nothing passes above or below them
    n = 150
    demo = Scenario(
        "demo",
        "Object 1 (warm) crosses the view left to right along the top and passes completely behind "
        "a static wall in the middle; object 2 (magenta) drives out of the right edge, stays out, "
        "and comes back in. Both are fully visible at the start and at the end.",
        n,
        objects=(
            ObjectSpec(1, ((0.0, 0.10, 0.30), (0.5, 0.50, 0.34), (1.0, 0.90, 0.28)), "warm", 0.75),
            ObjectSpec(2, ((0.0, 0.80, 0.72), (_f(42, n), 1.10, 0.74), (_f(62, n), 1.10, 0.74),
                           (_f(100, n), 0.76, 0.70), (1.0, 0.82, 0.72)), "magenta", 0.7,
                       turn_deg=45.0, turn_cycles=1.1, lobes=(4, 7)),
        ),
        walls=(WallSpec(((0.0, 0.47, 0.5),), 0.26, full_height),),
    )
    partial = Scenario(
        "partial",
        "The original single-object sequence: a textured blob moves, turns and scales; a bar "
        "sweeps past in front of it mid-sequence and hides part of it (never all of it).",
        120, legacy=True,
    )
    n = 120
    occluded = Scenario(
        "occluded",
        "Object 1 crosses the view left to right and passes completely behind a static wall in "
        "the middle, then comes out the other side.",
        n,
        objects=(ObjectSpec(1, ((0.0, 0.08, 0.46), (0.5, 0.50, 0.54), (1.0, 0.92, 0.46)), "warm", 0.75),),
        walls=(WallSpec(((0.0, 0.50, 0.5),), 0.30, full_height),),
    )
    n = 150
    exit_return = Scenario(
        "exit_return",
        "Object 1 drives out of the right edge of the view, stays out, then comes back in and "
        "ends near where it left.",
        n,
        objects=(ObjectSpec(1, ((0.0, 0.55, 0.45), (_f(60, n), 1.12, 0.55), (_f(74, n), 1.12, 0.55),
                               (1.0, 0.60, 0.50)), "warm", 0.75),),
    )
    n = 120
    crossing = Scenario(
        "crossing",
        "Two objects cross at the same height: object 2 (magenta, larger, in front) passes over "
        "object 1 (warm, smaller, behind), which is partly and then completely covered for a few "
        "frames; both continue to the other side.",
        n,
        objects=(
            ObjectSpec(1, ((0.0, 0.12, 0.50), (0.42, 0.45, 0.50), (0.58, 0.55, 0.50), (1.0, 0.88, 0.50)),
                       "warm", 0.45, z=0, turn_deg=40.0),
            ObjectSpec(2, ((0.0, 0.85, 0.50), (0.42, 0.55, 0.50), (0.58, 0.45, 0.50), (1.0, 0.15, 0.50)),
                       "magenta", 1.1, z=1, turn_deg=30.0, turn_cycles=0.6, lobes=(4, 7)),
        ),
    )
    n = 110
    never_returns = Scenario(
        "never_returns",
        "Object 1 leaves the view through the left edge and never comes back; object 2 stays in "
        "view, fully visible, the whole time (a false re-acquisition onto it or the background "
        "would show).",
        n,
        objects=(
            ObjectSpec(1, ((0.0, 0.40, 0.32), (_f(46, n), -0.12, 0.40), (1.0, -0.12, 0.40)), "warm", 0.75),
            ObjectSpec(2, ((0.0, 0.68, 0.62), (0.33, 0.78, 0.68), (0.66, 0.64, 0.62), (1.0, 0.72, 0.66)),
                       "magenta", 0.85, turn_deg=45.0, lobes=(4, 7)),
        ),
    )
    return {s.name: s for s in (demo, partial, occluded, exit_return, crossing, never_returns)}


#: The named scenarios (see each one's ``description``; :meth:`MultiObjectScene.phases` gives
#: their exact per-frame events).
SCENARIOS: Dict[str, Scenario] = _registry()
#: The scenarios that test re-acquisition (everything but the original ``partial`` sequence).
EXTENDED_SET: Tuple[str, ...] = ("demo", "occluded", "exit_return", "crossing", "never_returns")


def _pan_offsets(pan: int, t: float) -> Tuple[int, int]:
    """The background crop's offset at time ``t`` (as the partial scenario pans)."""
    dx = int(round(pan * (1 + math.sin(2 * math.pi * 0.5 * t))))
    dy = int(round(0.5 * pan * (1 + math.sin(2 * math.pi * 0.7 * t + 1.0))))
    return dx, dy


def _object_sprite(rng: np.random.Generator, palette: str, lobes: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """``(texture SxSx3 uint8, shape SxS uint8 0/1)`` of an object sprite in colour family ``palette``."""
    s = _SPRITE
    fam = PALETTES[palette]
    tex = _colourise(_value_noise(rng, s, s, (48, 12)), *fam["ramp"])
    period, (ux, uy) = fam["stripes"]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin((ux * xx + uy * yy) * (2 * np.pi / period))
    tex *= (0.8 + 0.2 * stripes)[..., None]
    _sprinkle(rng, tex, n=40, radius=(3, 9), palette=np.array(fam["spots"], np.float32))
    phase = rng.uniform(0, 2 * np.pi, size=2)
    theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    radius = 0.36 * s * (1 + 0.16 * np.sin(lobes[0] * theta + phase[0]) + 0.07 * np.cos(lobes[1] * theta + phase[1]))
    outline = np.stack([s / 2 + radius * np.cos(theta), s / 2 + radius * np.sin(theta)], 1)
    shape = np.zeros((s, s), np.uint8)
    cv2.fillPoly(shape, [np.round(outline).astype(np.int32)], 1, lineType=cv2.LINE_8)
    return np.clip(tex, 0, 255).astype(np.uint8), shape


def _affine(sprite_wh: Tuple[int, int], cx: float, cy: float, angle: float, scale: float) -> np.ndarray:
    """2x3 matrix taking sprite pixels to frame pixels (sprite centre -> (cx, cy))."""
    a = math.radians(angle)
    c, s = scale * math.cos(a), scale * math.sin(a)
    sx, sy = (sprite_wh[0] - 1) / 2.0, (sprite_wh[1] - 1) / 2.0
    return np.array([[c, -s, cx - (c * sx - s * sy)], [s, c, cy - (s * sx + c * sy)]], np.float64)


def _warp_roi(texture: np.ndarray, shape: np.ndarray, m: np.ndarray, w: int, h: int):
    """Warp a sprite into the part of the ``w x h`` frame it can touch.

    Returns ``(x0, y0, rgb, cover)`` (the ROI's top-left corner, its pixels and ``bool`` coverage)
    or None when the sprite lies entirely outside the frame.
    """
    sh, sw = shape.shape[:2]
    corners = np.array([[0, 0, 1], [sw - 1, 0, 1], [0, sh - 1, 1], [sw - 1, sh - 1, 1]], np.float64) @ m.T
    x0 = max(0, int(math.floor(corners[:, 0].min())) - 1)
    y0 = max(0, int(math.floor(corners[:, 1].min())) - 1)
    x1 = min(w, int(math.ceil(corners[:, 0].max())) + 2)
    y1 = min(h, int(math.ceil(corners[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    mm = m.copy()
    mm[0, 2] -= x0
    mm[1, 2] -= y0
    size = (x1 - x0, y1 - y0)
    cover = cv2.warpAffine(shape, mm, size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0).astype(bool)
    if not cover.any():
        return None
    rgb = cv2.warpAffine(texture, mm, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return x0, y0, rgb, cover


@dataclass
class ObjectFrameStats:
    """One object in one frame of a scene.

    Attributes:
        visible: pixels labelled with the object (drawn from its texture in the final image).
        in_view: pixels of the frame its sprite covers, whatever is in front of it.
        at_border: its sprite is cut by the frame's edge (partly outside the view).
        covered_by: what hides some of it: ``"wall"`` and/or the ids of nearer objects.
    """

    visible: int
    in_view: int
    at_border: bool
    covered_by: Tuple[object, ...] = ()

    @property
    def phase(self) -> str:
        """``out`` (outside the view), ``hidden`` (in view, nothing visible), ``partial`` (cut by
        the edge or partly covered) or ``full``."""
        if self.in_view == 0:
            return "out"
        if self.visible == 0:
            return "hidden"
        if self.at_border or self.visible < self.in_view:
            return "partial"
        return "full"


class _SceneBase:
    """What every scene offers: ``frame(i) -> (image HxWx3 uint8 RGB, labels HxW uint8)``, the
    per-frame statistics of each object and their phases."""

    spec: SyntheticSpec
    scenario: Scenario

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def width(self) -> int:
        return self.spec.width

    @property
    def height(self) -> int:
        return self.spec.height

    @property
    def n_frames(self) -> int:
        return self.spec.n_frames

    @property
    def object_ids(self) -> List[int]:
        return self.scenario.object_ids

    def __len__(self) -> int:
        return self.spec.n_frames

    def __iter__(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        for i in range(self.spec.n_frames):
            yield self.frame(i)

    def frame(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        image, labels, _ = self.render(index)
        return image, labels

    def render(self, index: int) -> Tuple[np.ndarray, np.ndarray, Dict[int, ObjectFrameStats]]:
        raise NotImplementedError

    def object_stats(self) -> Dict[int, List[ObjectFrameStats]]:
        """Per object, its :class:`ObjectFrameStats` in every frame (renders the whole scene once)."""
        if getattr(self, "_stats", None) is None:
            stats: Dict[int, List[ObjectFrameStats]] = {oid: [] for oid in self.object_ids}
            for i in range(self.n_frames):
                _, _, per = self.render(i)
                for oid in self.object_ids:
                    stats[oid].append(per[oid])
            self._stats = stats
        return self._stats

    def phases(self) -> Dict[int, List[Tuple[str, int, int]]]:
        """Per object, the runs of its phase (``full``/``partial``/``hidden``/``out``, see
        :attr:`ObjectFrameStats.phase`): ``[(phase, first_frame, last_frame), ...]``."""
        return {oid: runs([s.phase for s in st]) for oid, st in self.object_stats().items()}

    def covered_runs(self) -> Dict[int, List[Tuple[Tuple[object, ...], int, int]]]:
        """Per object, the runs of frames in which something covers part of it (what covers it)."""
        out = {}
        for oid, st in self.object_stats().items():
            out[oid] = [r for r in runs([s.covered_by for s in st]) if r[0]]
        return out

    def describe(self) -> str:
        """One line per object: its phase runs, e.g. ``object 1: full 0-24 | partial 25-44 | hidden 45-64``."""
        lines = []
        covered = self.covered_runs()
        for oid, phase_runs in self.phases().items():
            text = " | ".join(f"{p} {a}-{b}" for p, a, b in phase_runs)
            cov = [f"by {'+'.join(str(c) for c in what)} {a}-{b}" for what, a, b in covered[oid]]
            lines.append(f"object {oid}: {text}" + (f" (covered {', '.join(cov)})" if cov else ""))
        return "\n".join(lines)


class MultiObjectScene(_SceneBase):
    """Renders a :class:`Scenario` (several objects, walls, z-order) on demand.

    Args:
        scenario: what to render.
        size: ``(width, height)``, default :data:`NOMINAL_SIZE`.
        n_frames: default the scenario's length (a different length plays the same motion
            faster or slower).
        seed: seeds the textures, outlines and background.
        name: the sequence's folder name (default the scenario's name).
        occlusion: False leaves the walls out.

    ``scene.frame(i) -> (image HxWx3 uint8 RGB, labels HxW uint8)``: labels are 0 for background
    and walls, k where object k is visible.
    """

    def __init__(self, scenario: Scenario, size: Optional[Tuple[int, int]] = None, n_frames: Optional[int] = None,
                 seed: int = 0, name: Optional[str] = None, occlusion: bool = True) -> None:
        if scenario.legacy:
            raise ValueError(f"scenario {scenario.name!r} is the single-object sequence: use make_scene()")
        w, h = size or NOMINAL_SIZE
        self.scenario = scenario
        self.spec = SyntheticSpec(width=w, height=h, n_frames=n_frames or scenario.n_frames, seed=seed,
                                  occlusion=occlusion, name=name or scenario.name)
        w, h = self.spec.width, self.spec.height
        self._stats = None
        rng = np.random.default_rng(self.spec.seed)
        self._pan = int(round(0.06 * w))
        bw, bh = w + 2 * self._pan, h + 2 * self._pan
        bg = _colourise(_value_noise(rng, bh, bw, (96, 32, 8)), (20, 60, 50), (120, 170, 140))
        _sprinkle(rng, bg, n=int(bw * bh / 1500), radius=(2, 7),
                  palette=np.array([[40, 90, 120], [90, 140, 90], [160, 190, 180], [30, 50, 70]], np.float32))
        self.background = np.clip(bg, 0, 255).astype(np.uint8)
        # each object's sprite from its own stream: adding an object changes no other
        self.sprites: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        for o in scenario.objects:
            orng = np.random.default_rng([self.spec.seed, 1000 + o.object_id])
            self.sprites[o.object_id] = _object_sprite(orng, o.palette, o.lobes)
        self.wall_textures: List[np.ndarray] = []
        for k, wall in enumerate(scenario.walls if occlusion else ()):
            wrng = np.random.default_rng([self.spec.seed, 2000 + k])
            ww, wh = max(2, int(round(wall.width * w))), max(2, int(round(wall.height * h)))
            tex = _colourise(_value_noise(wrng, wh, ww, (24, 6)), *WALL_RAMP)
            band = max(2, int(round(WALL_BAND * h / 480)))
            tex[(np.arange(wh) // band) % 2 == 0] *= 0.7
            self.wall_textures.append(np.clip(tex, 0, 255).astype(np.uint8))
        self._walls = list(scenario.walls) if occlusion else []
        # drawing order: by z, objects before walls of the same z, then in the order given
        items = [(o.z, 0, k) for k, o in enumerate(scenario.objects)] + [(wl.z, 1, k) for k, wl in enumerate(self._walls)]
        self._order = sorted(items)

    def _t(self, index: int) -> float:
        return index / max(self.spec.n_frames - 1, 1)

    def object_pose(self, object_id: int, index: int) -> Tuple[float, float, float, float]:
        """``(cx, cy, angle_deg, scale)`` of an object in frame ``index`` (pixels, degrees, px per sprite px)."""
        o = next(o for o in self.scenario.objects if o.object_id == object_id)
        x, y, angle, scale = o.pose(self._t(index))
        px = scale * 0.16 * self.spec.height / (0.36 * _SPRITE)
        return x * self.spec.width, y * self.spec.height, angle, px

    def wall_rect(self, k: int, index: int) -> Tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of wall ``k`` in frame ``index`` (pixels, end exclusive; may exceed the frame)."""
        wall = self._walls[k]
        oh, ow = self.wall_textures[k].shape[:2]
        cx, cy = _interp(wall.path, self._t(index))
        x0 = int(round(cx * self.spec.width - ow / 2.0))
        y0 = int(round(cy * self.spec.height - oh / 2.0))
        return x0, y0, x0 + ow, y0 + oh

    def render(self, index: int) -> Tuple[np.ndarray, np.ndarray, Dict[int, ObjectFrameStats]]:
        """``(image, labels, {object_id: ObjectFrameStats})`` of frame ``index``."""
        if not 0 <= index < self.spec.n_frames:
            raise IndexError(f"frame {index} out of range 0..{self.spec.n_frames - 1}")
        w, h = self.spec.width, self.spec.height
        dx, dy = _pan_offsets(self._pan, self._t(index))
        image = self.background[dy:dy + h, dx:dx + w].copy()
        labels = np.zeros((h, w), np.uint8)
        in_view: Dict[int, int] = {}
        border: Dict[int, bool] = {}
        covered: Dict[int, List[object]] = {o.object_id: [] for o in self.scenario.objects}
        for _z, kind, k in self._order:
            if kind == 0:
                o = self.scenario.objects[k]
                oid = o.object_id
                cx, cy, angle, px = self.object_pose(oid, index)
                texture, shape = self.sprites[oid]
                m = _affine((_SPRITE, _SPRITE), cx, cy, angle, px)
                roi = _warp_roi(texture, shape, m, w, h)
                if roi is None:
                    in_view[oid], border[oid] = 0, False
                    continue
                x0, y0, rgb, cover = roi
                y1, x1 = y0 + cover.shape[0], x0 + cover.shape[1]
                in_view[oid] = int(np.count_nonzero(cover))
                border[oid] = bool((x0 == 0 and cover[:, 0].any()) or (y0 == 0 and cover[0].any())
                                   or (x1 == w and cover[:, -1].any()) or (y1 == h and cover[-1].any()))
                value, what = oid, oid
            else:
                x0, y0, x1, y1 = self.wall_rect(k, index)
                tex = self.wall_textures[k]
                cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
                if cx1 <= cx0 or cy1 <= cy0:
                    continue
                rgb = tex[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
                cover = np.ones(rgb.shape[:2], bool)
                x0, y0, x1, y1 = cx0, cy0, cx1, cy1
                value, what = 0, "wall"
            sub = labels[y0:y1, x0:x1]
            for hidden in np.unique(sub[cover]):
                if hidden and hidden != value and what not in covered[int(hidden)]:
                    covered[int(hidden)].append(what)
            image[y0:y1, x0:x1][cover] = rgb[cover]
            sub[cover] = value
        counts = np.bincount(labels.ravel(), minlength=256)
        stats = {
            o.object_id: ObjectFrameStats(int(counts[o.object_id]), in_view[o.object_id], border[o.object_id],
                                          tuple(covered[o.object_id]))
            for o in self.scenario.objects
        }
        return image, labels, stats


class PartialScene(_SceneBase):
    """The original single-object sequence (:class:`SyntheticScene`) as a scenario scene.

    ``frame(i)`` returns ``(image, labels HxW uint8)`` with label 1 where the object is visible.
    """

    def __init__(self, size: Optional[Tuple[int, int]] = None, n_frames: Optional[int] = None, seed: int = 0,
                 name: Optional[str] = None, occlusion: bool = True) -> None:
        w, h = size or NOMINAL_SIZE
        self.scenario = SCENARIOS["partial"]
        self.spec = SyntheticSpec(width=w, height=h, n_frames=n_frames or self.scenario.n_frames, seed=seed,
                                  occlusion=occlusion, name=name or self.scenario.name)
        self.scene = SyntheticScene(self.spec)
        self._stats = None

    def render(self, index: int) -> Tuple[np.ndarray, np.ndarray, Dict[int, ObjectFrameStats]]:
        background, object_rgb, object_cover, occluder_rgb, occluder_cover = self.scene.layers(index)
        mask = object_cover & ~occluder_cover
        image = background.copy()
        image[object_cover] = object_rgb[object_cover]
        image[occluder_cover] = occluder_rgb[occluder_cover]
        at_border = bool(object_cover[0].any() or object_cover[-1].any() or object_cover[:, 0].any()
                         or object_cover[:, -1].any())
        stats = {1: ObjectFrameStats(int(np.count_nonzero(mask)), int(np.count_nonzero(object_cover)), at_border,
                                     ("wall",) if (object_cover & occluder_cover).any() else ())}
        return image, mask.astype(np.uint8), stats


def make_scene(scenario, size: Optional[Tuple[int, int]] = None, n_frames: Optional[int] = None, seed: int = 0,
               name: Optional[str] = None, occlusion: bool = True) -> _SceneBase:
    """A scene of a scenario (a name in :data:`SCENARIOS` or a :class:`Scenario`).

    Args:
        size: ``(width, height)``, default :data:`NOMINAL_SIZE` (854x480).
        n_frames: default the scenario's own length.
        seed: textures, outlines, background.
        name: the sequence's folder name when written (default the scenario's name).
        occlusion: False leaves the walls (the partial scenario's bar) out.
    """
    if isinstance(scenario, str):
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
        scenario = SCENARIOS[scenario]
    if scenario.legacy:
        return PartialScene(size, n_frames, seed, name, occlusion)
    return MultiObjectScene(scenario, size, n_frames, seed, name, occlusion)


def render_scenario(scenario, size: Optional[Tuple[int, int]] = (427, 240), n_frames: Optional[int] = None,
                    seed: int = 0) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """All frames of a scenario: ``(frames [HxWx3 uint8 RGB], label_maps [HxW uint8])``.

    The default size is the fast test size (427x240); ``size=None`` renders the nominal 854x480.
    """
    scene = make_scene(scenario, size, n_frames, seed)
    frames, labels = [], []
    for image, lab in scene:
        frames.append(image)
        labels.append(lab)
    return frames, labels


# ---------------------------------------------------------------------------- DAVIS layout
def davis_palette() -> List[int]:
    """The DAVIS / PASCAL VOC colour palette (768 ints): index k's colour from k's bits."""
    pal = []
    for k in range(256):
        r = g = b = 0
        c = k
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def write_label_png(path: os.PathLike | str, labels: np.ndarray) -> None:
    """Save an ``HxW`` label map (0..255) as a paletted (mode ``P``) PNG: pixel value = object id."""
    from PIL import Image

    arr = np.asarray(labels)
    if arr.ndim != 2 or (arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255)):
        raise ValueError(f"labels must be an HxW map of 0..255, got shape {arr.shape}")
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), mode="L")
    img.putpalette(davis_palette())
    img.save(str(path))


def write_davis(root: os.PathLike | str, spec=None, jpeg_quality: int = 95) -> Path:
    """Render a sequence into a DAVIS-2017-layout folder under ``root``; returns its image folder.

    ``spec``: a :class:`SyntheticSpec` (the partial scenario's single-object sequence, as
    before), a scene from :func:`make_scene`, or a scenario name (rendered at its nominal size).

    Writes ``root/JPEGImages/480p/<name>/%05d.jpg`` (RGB frames) and
    ``root/Annotations/480p/<name>/%05d.png`` (paletted PNG, pixel value = object id, 0
    background; every frame has one, an empty map when no object is visible). Existing files of
    the same names are overwritten; stale extra frames of an earlier, longer render are removed
    so the folder always holds exactly this sequence.
    """
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if spec is None or isinstance(spec, SyntheticSpec):
        scene = SyntheticScene(spec)
        name, frames = scene.spec.name, ((img, m.astype(np.uint8)) for img, m in scene)
    else:
        scene = make_scene(spec) if isinstance(spec, (str, Scenario)) else spec
        name, frames = scene.spec.name, iter(scene)
    img_dir = Path(root) / "JPEGImages" / "480p" / name
    ann_dir = Path(root) / "Annotations" / "480p" / name
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    keep = set()
    for i, (image, labels) in enumerate(frames):
        stem = f"{i:05d}"
        keep.add(stem)
        if not cv2.imwrite(str(img_dir / f"{stem}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]):
            raise OSError(f"could not write {img_dir / (stem + '.jpg')}")
        write_label_png(ann_dir / f"{stem}.png", labels)
    for folder, ext in ((img_dir, ".jpg"), (ann_dir, ".png")):
        for f in folder.iterdir():
            if f.suffix == ext and f.stem not in keep and f.stem.isdigit():
                f.unlink()
    return img_dir


def write_scenarios(root: os.PathLike | str, names: Optional[Sequence[str]] = None,
                    size: Optional[Tuple[int, int]] = None, n_frames: Optional[int] = None, seed: int = 0,
                    jpeg_quality: int = 95) -> Dict[str, Path]:
    """Write several scenarios (default: all of :data:`SCENARIOS`) into one DAVIS-layout folder,
    one sequence per scenario named after it. Returns ``{name: image folder}``."""
    names = list(names) if names else list(SCENARIOS)
    scenes = [make_scene(n, size, n_frames, seed) for n in names]  # validates every name first
    return {s.name: write_davis(root, s, jpeg_quality) for s in scenes}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sampt_ros.tools.synthetic",
        description="Render synthetic sequences with exact ground-truth label maps into a DAVIS-2017-layout "
                    "folder. Scenarios: " + "; ".join(f"{s.name}: {s.description}" for s in SCENARIOS.values()))
    parser.add_argument("root", help="output folder (JPEGImages/ and Annotations/ are created inside)")
    parser.add_argument("--scenario", default="demo", choices=list(SCENARIOS) + ["all"],
                        help="which scenario (default demo); 'all' writes every scenario, one sequence each")
    parser.add_argument("--frames", type=int, default=None, help="number of frames (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=size_argument, default=NOMINAL_SIZE, help="WxH (default 854x480)")
    parser.add_argument("--name", default=None, help="sequence folder name (default: the scenario's name)")
    parser.add_argument("--no-occlusion", action="store_true", help="leave the walls (occluders) out")
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    if args.name and len(names) > 1:
        parser.error("--name needs a single --scenario")
    try:
        scenes = [make_scene(n, args.size, args.frames, args.seed, args.name, not args.no_occlusion) for n in names]
    except ValueError as exc:
        parser.error(str(exc))
    for scene in scenes:
        folder = write_davis(args.root, scene)
        print(f"wrote {scene.n_frames} frames of {scene.width}x{scene.height} to {folder} (+ Annotations)")
        print("  " + scene.describe().replace("\n", "\n  "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
