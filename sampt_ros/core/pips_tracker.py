"""Online (causal) PIPS point tracking over a ring buffer of recent frames.

How a track moves forward (the online form of SAM-PT's PIPS use):

* Each pushed frame is encoded once; its feature pyramid stays in a ring buffer of the last
  ``window`` (= 8) frames, on the network's device.
* A track holds query points on one buffered frame ``q`` (its query frame) and a template
  feature per point (sampled from frame ``q``'s features when the track starts).
* At newest frame ``t`` (``q < t <= q + 7``) the track is computed with the window
  ``frames[q..t]`` padded to 8 frames by repeating frame ``t``; its positions are the window's
  frame ``t - q``. Tracks that share a query frame run in one network call.
* When the window is full (``t == q + 7``), the next push chains the track: the new window
  starts at frame ``q + 7`` from the tracked positions there, with the same template feature.
* :meth:`OnlinePipsTracker.set_track` (re)starts a track on any buffered frame (SAM-PT's
  re-initialisation, or a prompt that refers to an earlier frame).

Positions are computed lazily: on :meth:`~OnlinePipsTracker.track`, or on the push that
chains a track (its window's first frame is about to leave the buffer).

Image size: PIPS' encoder needs H and W divisible by 8. Frames are padded at the bottom and
right by repeating the edge pixels up to a multiple of 8 (and at least 64 px, so the coarsest
correlation level keeps a few cells). Padding there leaves pixel coordinates unchanged, so
points map back exactly. Optionally (``max_side``) large frames are first resized so that
their long side is at most ``max_side`` px (both sides rounded to multiples of 8); points are
mapped with the exact per-axis scale of that resize (pixel centres: ``x' = (x + 0.5) s - 0.5``).
A point that leaves the image may be returned outside ``[0, W-1] x [0, H-1]``.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .backends.pips import PipsConfig
from sampt_ros.core.pips import PIPS_WINDOW, PipsNet
from .types import TrackedPoints, as_points, as_rgb_image

__all__ = ["OnlinePipsTracker", "resolve_device"]

_log = logging.getLogger(__name__)

_MIN_SIDE = 64  #: smallest padded side: keeps >= 2 cells on the coarsest correlation level at stride 4


def resolve_device(name: str) -> torch.device:
    """``'auto'`` -> ``cuda`` when available, else ``cpu``; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"tracker.pips.device is {name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return device


@dataclass
class _Track:
    """One point set. ``queries``: ``Nx2 float64`` (x, y) pixels of the input images on ``query_frame``."""

    query_frame: int
    queries: np.ndarray
    template: Optional[torch.Tensor] = None  #: (1, N, 128) on the device, set on first use
    result: Optional[TrackedPoints] = None
    result_frame: int = -1  #: the frame ``result`` belongs to
    windows: int = 1  #: how many windows this track has chained through


class OnlinePipsTracker:
    """Causal multi-track PIPS tracker implementing :class:`sampt_ros.core.types.PointTracker`.

    Args:
        cfg: the PIPS settings (checkpoint, iterations, visibility threshold, device, half).
        window: frames per window and frames buffered; PIPS' window is fixed at 8.
        net: a ready :class:`PipsNet` (moved to the configured device, its dtype kept); by default
            one is built from ``cfg.checkpoint`` (or with random weights when
            ``cfg.allow_random_weights``).
        max_side: if set, frames whose long side exceeds it are resized down for the network
            (``None``: native resolution, padded only).

    Work counters are in :meth:`stats`; :attr:`device` says where the network runs.
    """

    def __init__(
        self,
        cfg: PipsConfig,
        window: int = PIPS_WINDOW,
        net: Optional[PipsNet] = None,
        max_side: Optional[int] = None,
    ) -> None:
        if not isinstance(cfg, PipsConfig):
            raise ValueError(f"cfg must be a PipsConfig, got {type(cfg).__name__}")
        if window != PIPS_WINDOW:
            raise ValueError(f"the PIPS window is fixed at {PIPS_WINDOW} frames, got window={window}")
        if max_side is not None and (not isinstance(max_side, int) or max_side < _MIN_SIDE):
            raise ValueError(f"max_side must be None or an int >= {_MIN_SIDE}, got {max_side!r}")
        self.cfg = cfg
        self.buffer_size = window
        self.window = window
        self.max_side = max_side
        self._device = resolve_device(cfg.device)
        self._autocast = bool(cfg.half) and self._device.type == "cuda"
        if cfg.half and not self._autocast:
            _log.warning("tracker.pips.half needs CUDA; running PIPS in full precision on %s", self._device)

        if net is None:
            net = self._build_net(cfg)
        elif not isinstance(net, PipsNet):
            raise ValueError(f"net must be a PipsNet, got {type(net).__name__}")
        if net.stride != cfg.stride:
            raise ValueError(f"net.stride ({net.stride}) differs from tracker.pips.stride ({cfg.stride})")
        self.net = net.to(self._device).eval()
        param_dtype = next(self.net.parameters()).dtype
        # coordinates, queries and stored features in >= float32 (fp16 work happens under autocast)
        self._dtype = torch.float64 if param_dtype == torch.float64 else torch.float32

        self._counts = {"feature_maps_computed": 0, "network_calls": 0}
        self._frames: "OrderedDict[int, List[torch.Tensor]]" = OrderedDict()  # index -> pyramid [(C,h,w)]
        self._tracks: Dict[Hashable, _Track] = {}
        self._next_index = 0
        self._image_size: Optional[Tuple[int, int]] = None  # (H, W) of the input frames
        self._net_size: Optional[Tuple[int, int]] = None  # (H, W) fed to the encoder before padding

    @property
    def device(self) -> str:
        """The torch device the network runs on (``cpu``, ``cuda:0``)."""
        return str(self._device)

    def stats(self) -> Dict[str, float]:
        """``feature_maps_computed`` (frames encoded: exactly one per push) and ``network_calls``
        (windows run through the update operator)."""
        return dict(self._counts)

    @staticmethod
    def _build_net(cfg: PipsConfig) -> PipsNet:
        if cfg.checkpoint:
            return PipsNet.from_checkpoint(cfg.checkpoint, "cpu", stride=cfg.stride)
        if cfg.allow_random_weights:
            _log.warning("PIPS runs with RANDOM weights (tracker.pips.allow_random_weights): tracks are meaningless")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # reproducible without touching the caller's RNG
                return PipsNet(stride=cfg.stride)
        raise ValueError(
            "the PIPS tracker needs weights: set tracker.pips.checkpoint to the official "
            "model-000200000.pth (reference_model of aharley/pips, https://huggingface.co/aharley/pips), "
            "or set tracker.pips.allow_random_weights for tests"
        )

    # -- frames ----------------------------------------------------------------------------

    @property
    def newest_frame(self) -> Optional[int]:
        """Index of the newest pushed frame, or ``None`` before the first push."""
        return self._next_index - 1 if self._frames else None

    def has_frame(self, index: int) -> bool:
        """Whether frame ``index`` is still buffered."""
        return index in self._frames

    def push_frame(self, image: np.ndarray) -> int:
        """Add a ``HxWx3 uint8`` RGB frame, encode it once, and return its index.

        Raises ``ValueError`` for a malformed image or one whose size differs from the buffered
        frames (call :meth:`reset` when the camera resolution changes).
        """
        image = as_rgb_image(image)
        height, width = image.shape[:2]
        if height < 1 or width < 1:
            raise ValueError(f"image is empty: {image.shape}")
        if self._frames and (height, width) != self._image_size:
            raise ValueError(
                f"frame size changed from {self._image_size[1]}x{self._image_size[0]} to {width}x{height} "
                "(W x H); reset() the tracker first"
            )
        newest = self.newest_frame
        # Tracks whose window is full chain now: their positions on the newest frame are needed,
        # and their window's first frame is about to leave the buffer.
        chaining = [] if newest is None else [
            k for k, tr in self._tracks.items() if tr.query_frame + self.window - 1 <= newest
        ]
        if chaining:
            self._update(chaining)

        pyramid = self._encode(image)
        index = self._next_index
        self._next_index += 1
        self._frames[index] = pyramid
        self._image_size = (height, width)
        while len(self._frames) > self.buffer_size:
            self._frames.popitem(last=False)
        for key in chaining:
            tr = self._tracks[key]
            tr.query_frame = newest
            tr.queries = tr.result.points.copy()
            tr.windows += 1  # template kept: PIPS' chaining reuses the first window's feature
        return index

    def _network_size(self, height: int, width: int) -> Tuple[int, int]:
        if self.max_side is None or max(height, width) <= self.max_side:
            return height, width
        scale = self.max_side / max(height, width)
        return (max(8, int(round(height * scale / 8)) * 8), max(8, int(round(width * scale / 8)) * 8))

    def _encode(self, image: np.ndarray) -> List[torch.Tensor]:
        """``HxWx3 uint8`` -> the frame's feature pyramid ``[(128, h_l, w_l)]`` on the device."""
        height, width = image.shape[:2]
        net_h, net_w = self._network_size(height, width)
        self._net_size = (net_h, net_w)
        pad_h = max(_MIN_SIDE, math.ceil(net_h / 8) * 8) - net_h
        pad_w = max(_MIN_SIDE, math.ceil(net_w / 8) * 8) - net_w
        with torch.inference_mode(), self._autocast_ctx():
            # one host->device copy of the uint8 frame; everything else on the device
            if not (image.flags.c_contiguous and image.flags.writeable):
                image = np.array(image)  # torch wants a writable contiguous buffer (e.g. ROS images are not)
            x = torch.from_numpy(image).to(self._device, non_blocking=True)
            x = x.permute(2, 0, 1).unsqueeze(0).to(self._dtype)  # (1, 3, H, W) 0..255
            if (net_h, net_w) != (height, width):
                x = F.interpolate(x, (net_h, net_w), mode="bilinear", align_corners=False, antialias=True)
            if pad_h or pad_w:
                x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
            fmap = self.net.encode(x.unsqueeze(1))[0, 0]  # (128, h, w)
            # stored in >= float32: the correlation samples them in float32 anyway
            pyramid = [level.to(self._dtype) for level in self.net.feature_pyramid(fmap)]
        self._counts["feature_maps_computed"] += 1
        return pyramid

    def _autocast_ctx(self):
        return torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self._autocast)

    def _to_network(self, points: np.ndarray) -> np.ndarray:
        """Input-image pixels -> pixels of the (resized) network input."""
        if self._net_size is None or self._net_size == self._image_size:
            return points
        sx = self._net_size[1] / self._image_size[1]
        sy = self._net_size[0] / self._image_size[0]
        return (points + 0.5) * np.array([sx, sy]) - 0.5

    def _from_network(self, points: np.ndarray) -> np.ndarray:
        if self._net_size is None or self._net_size == self._image_size:
            return points
        sx = self._net_size[1] / self._image_size[1]
        sy = self._net_size[0] / self._image_size[0]
        return (points + 0.5) / np.array([sx, sy]) - 0.5

    # -- tracks ----------------------------------------------------------------------------

    @property
    def track_keys(self) -> List[Hashable]:
        return list(self._tracks)

    def query_frame(self, key: Hashable) -> int:
        """The frame track ``key``'s current window starts on (raises ``KeyError`` if unknown)."""
        return self._tracks[key].query_frame

    def set_track(self, key: Hashable, points: np.ndarray, frame_index: int) -> None:
        """(Re)start track ``key`` from ``Nx2`` (x, y) pixel points on buffered frame ``frame_index``.

        Raises ``KeyError`` if the frame is not buffered and ``ValueError`` for malformed points.
        """
        pts = as_points(points, "points").copy()
        if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)):
            raise ValueError(f"frame_index must be an int, got {frame_index!r}")
        frame_index = int(frame_index)
        if not self.has_frame(frame_index):
            if self._frames:
                where = f"buffered: {next(iter(self._frames))}..{self.newest_frame}"
            else:
                where = "no frames pushed yet"
            raise KeyError(f"frame {frame_index} is not buffered ({where})")
        self._tracks[key] = _Track(query_frame=frame_index, queries=pts)

    def remove_track(self, key: Hashable) -> None:
        self._tracks.pop(key, None)

    def track(self) -> Dict[Hashable, TrackedPoints]:
        """Every track's positions in the newest frame (``TrackedPoints``: ``Nx2`` float (x, y)
        pixels, ``N`` bool visible, ``N`` float visibility in 0..1).

        A track whose query frame is the newest frame returns its queries, all visible.
        """
        if not self._tracks:
            return {}
        self._update(list(self._tracks))
        return {k: tr.result for k, tr in self._tracks.items()}

    def reset(self) -> None:
        """Forget all frames and tracks; frame numbering restarts at 0 (counters are kept)."""
        self._frames.clear()
        self._tracks.clear()
        self._next_index = 0
        self._image_size = None
        self._net_size = None

    # -- the network -----------------------------------------------------------------------

    def _update(self, keys: Sequence[Hashable]) -> None:
        """Bring the results of ``keys`` to the newest frame, one network call per query frame."""
        newest = self.newest_frame
        groups: Dict[int, List[Hashable]] = {}
        for key in keys:
            tr = self._tracks[key]
            if tr.result_frame == newest:
                continue
            n = len(tr.queries)
            if tr.query_frame == newest or n == 0:
                tr.result = TrackedPoints(tr.queries.copy(), np.ones(n, np.float64))
                tr.result_frame = newest
            else:
                groups.setdefault(tr.query_frame, []).append(key)
        for query_frame, group in sorted(groups.items()):
            self._run_window(query_frame, newest, group)

    def _run_window(self, query_frame: int, newest: int, keys: List[Hashable]) -> None:
        tracks = [self._tracks[k] for k in keys]
        span = newest - query_frame  # the newest frame's position in the window
        indices = list(range(query_frame, newest + 1)) + [newest] * (self.window - 1 - span)
        with torch.inference_mode(), self._autocast_ctx():
            levels = len(self._frames[newest])
            pyramid = [torch.stack([self._frames[i][lvl] for i in indices]).unsqueeze(0) for lvl in range(levels)]
            queries = torch.from_numpy(
                self._to_network(np.concatenate([tr.queries for tr in tracks]))
            ).to(self._device, self._dtype).unsqueeze(0)  # (1, N, 2)
            start = 0
            for tr in tracks:
                n = len(tr.queries)
                if tr.template is None:
                    tr.template = self.net.sample_template(pyramid[0][:, 0], queries[:, start:start + n])
                start += n
            templates = torch.cat([tr.template for tr in tracks], dim=1)
            coords, vis_logits, _ = self.net.forward_features(
                pyramid[0], queries, iters=self.cfg.iters, feat_init=templates, pyramid=pyramid
            )
            # one small device->host copy per window
            out = torch.cat([coords[-1, 0, span], torch.sigmoid(vis_logits[0, span]).unsqueeze(1)], dim=1)
            out = out.double().cpu().numpy()  # (N, 3): x, y, visibility
        points, visibility = out[:, :2], out[:, 2]
        self._counts["network_calls"] += 1
        points = self._from_network(points)
        start = 0
        for tr in tracks:
            n = len(tr.queries)
            vis = visibility[start:start + n]
            tr.result = TrackedPoints(points[start:start + n].copy(), vis.copy())
            tr.result_frame = newest
            start += n
