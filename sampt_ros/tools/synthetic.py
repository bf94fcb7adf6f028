"""A synthetic, fully deterministic video with exact ground truth (the demo's sequence).

A procedurally textured blob (the *object*) moves across a textured, slowly panning
background; it turns, grows and shrinks, and half-way through a textured bar (the
*occluder*) sweeps past in front of it. Every frame comes with the exact visible mask of
the object: the image is composited with hard (binary) coverage, so the mask is exactly
the set of pixels drawn from the object's texture.

Everything is a function of :class:`SyntheticSpec` (size, length, seed), so the same spec
gives the same pixels on every machine with the same OpenCV/numpy. The output can be
written in the DAVIS layout (``JPEGImages/480p/<seq>/%05d.jpg`` and
``Annotations/480p/<seq>/%05d.png``, masks 0/255) so ``sampt-eval davis`` and
``sampt-bag from-davis`` read it like a DAVIS 2016 sequence.

Example::

    python -m sampt_ros.tools.synthetic outputs/synthetic --frames 120 --seed 0
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

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


def write_davis(root: os.PathLike | str, spec: Optional[SyntheticSpec] = None,
                jpeg_quality: int = 95) -> Path:
    """Render ``spec`` into a DAVIS-layout folder under ``root``; returns the sequence's image folder.

    Writes ``root/JPEGImages/480p/<name>/%05d.jpg`` (RGB frames) and
    ``root/Annotations/480p/<name>/%05d.png`` (``HxW uint8``, 0 background / 255 object, like
    DAVIS 2016). Existing files of the same names are overwritten; stale extra frames of an
    earlier, longer render are removed so the folder always holds exactly this sequence.
    """
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    scene = SyntheticScene(spec)
    spec = scene.spec
    img_dir = Path(root) / "JPEGImages" / "480p" / spec.name
    ann_dir = Path(root) / "Annotations" / "480p" / spec.name
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    keep = set()
    for i, (image, mask) in enumerate(scene):
        name = f"{i:05d}"
        keep.add(name)
        if not cv2.imwrite(str(img_dir / f"{name}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]):
            raise OSError(f"could not write {img_dir / (name + '.jpg')}")
        if not cv2.imwrite(str(ann_dir / f"{name}.png"), mask.astype(np.uint8) * 255):
            raise OSError(f"could not write {ann_dir / (name + '.png')}")
    for folder, ext in ((img_dir, ".jpg"), (ann_dir, ".png")):
        for f in folder.iterdir():
            if f.suffix == ext and f.stem not in keep and f.stem.isdigit():
                f.unlink()
    return img_dir


def _parse_size(text: str) -> Tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 854x480, got {text!r}") from None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sampt_ros.tools.synthetic",
        description="Render the synthetic demo sequence (moving, turning, partly occluded object) "
                    "with exact ground-truth masks into a DAVIS-layout folder.")
    parser.add_argument("root", help="output folder (JPEGImages/ and Annotations/ are created inside)")
    parser.add_argument("--frames", type=int, default=120, help="number of frames (default 120)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=_parse_size, default=(854, 480), help="WxH (default 854x480)")
    parser.add_argument("--name", default=DEFAULT_SEQUENCE, help="sequence folder name")
    parser.add_argument("--no-occlusion", action="store_true", help="leave the occluder out")
    args = parser.parse_args(argv)
    try:
        spec = SyntheticSpec(width=args.size[0], height=args.size[1], n_frames=args.frames, seed=args.seed,
                             occlusion=not args.no_occlusion, name=args.name)
    except ValueError as exc:
        parser.error(str(exc))
    folder = write_davis(args.root, spec)
    print(f"wrote {spec.n_frames} frames of {spec.width}x{spec.height} to {folder} (+ Annotations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
