"""Online (causal) PIPS point tracking over a ring buffer of recent frames.

How a point moves forward (the online form of SAM-PT's PIPS tracker):

* Each pushed frame is encoded once; its feature pyramid goes into a ring buffer of the last
  ``window`` (= 8) frames on the network's device (one tensor per pyramid level, the frames
  along its depth axis), where it stays until it is overwritten.
* Every point has its own window start ``c`` (its query frame at first) and keeps the template
  feature sampled on its query frame when its track was set.
* At newest frame ``t`` (``c < t <= c + 7``) a point is tracked with the window ``frames[c..t]``
  padded to 8 frames by repeating frame ``t`` (SAM-PT pads only at the end of a video: the
  padding here is what keeps the tracker causal); its position and visibility are the window's
  slot ``t - c``. All points of all tracks, whatever their windows, run in ONE network call per
  frame (:meth:`~sampt_ros.core.pips.PipsNet.forward_buffer`): PIPS tracks every point on its
  own, so sharing a batch changes no result, and the windows are read from the ring buffer in
  place.
* When a point's window is complete (``t == c + 7``), SAM-PT's rule picks its next start: the
  last frame ``f`` in ``c+1..c+7`` where its visibility in that full window exceeds
  ``tracker.pips.next_window_visibility`` (0.9); when no frame does, the threshold is lowered by
  ``next_window_step`` (0.02) and the search repeats. The point restarts on ``f`` from its
  position there in that full window, with its original template. ``next_window_visibility: 1.0``
  always picks ``c + 7`` (windows chained at their last frame). Frames ``c+1..c+7`` are all
  still buffered, and the point's next window ``frames[f..t+1]`` fits in the buffer.
* :meth:`OnlinePipsTracker.set_track` (re)starts an object's points on any buffered frame
  (SAM-PT's re-initialisation, or a prompt that refers to an earlier frame).

Positions are computed lazily: on :meth:`~OnlinePipsTracker.track`, or on the push that
needs a full window's result (the window's first frame is about to leave the buffer).
Visibility is the sigmoid of PIPS' logit (1.0 on a point's query frame); the engine's
prompting rules decide what counts as visible.

Image size: PIPS' encoder needs H and W divisible by 8. Frames are padded at the bottom and
right by repeating the edge pixels up to a multiple of 8 (and at least 64 px, so the coarsest
correlation level keeps a few cells). Padding there leaves pixel coordinates unchanged, so
points map back exactly. Optionally (``max_side``) large frames are first resized so that
their long side is at most ``max_side`` px (both sides rounded to multiples of 8); points are
mapped with the exact per-axis scale of that resize (pixel centres: ``x' = (x + 0.5) s - 0.5``).
A point that leaves the image may be returned outside ``[0, W-1] x [0, H-1]``.

GPU: a frame is uploaded once (as uint8); queries and window indices of a call go up in one
small copy; the only device->host copy (and so the only wait for the device) is the call's
result, ``(P, 8, 3)`` numbers. ``tracker.pips.half`` runs the encoder and the mixer in float16
under autocast on CUDA; coordinates, stored feature maps, templates, correlations and the
positional embedding stay in float32.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .backends.pips import PipsConfig
from .devices import resolve_device
from .pips import PIPS_WINDOW, PipsNet
from .types import TrackedPoints, as_points, as_rgb_image

__all__ = ["OnlinePipsTracker", "resolve_device", "next_window_offsets"]

_log = logging.getLogger(__name__)

_MIN_SIDE = 64  #: smallest padded side: keeps >= 2 cells on the coarsest correlation level at stride 4
_DEPTH = PIPS_WINDOW + 1  #: ring buffer depth: 8 frames + 1 spare, so that depth - 1 is a power of two


def next_window_offsets(visibility: np.ndarray, threshold: float, step: float) -> np.ndarray:
    """SAM-PT's choice of where each point's next window starts, for points whose window is complete.

    Args:
        visibility: ``(M, L)`` each point's visibility (0..1) on its window's frames ``c+1..c+L``.
        threshold: ``next_window_visibility``; ``>= 1`` always picks the last frame.
        step: ``next_window_step``.

    Returns:
        ``(M,)`` offsets in ``1..L`` from the window start: the last frame whose visibility is
        ``> threshold``; when none is, the threshold is lowered by ``step`` (repeatedly, in Python
        float arithmetic) until one is. A row without any finite visibility gets ``L``.
    """
    vis = np.asarray(visibility, np.float64)
    m, length = vis.shape
    if threshold >= 1.0 or m == 0:
        return np.full(m, length, np.int64)
    levels = [float(threshold)]
    while levels[-1] >= 0.0:  # visibilities are >= 0, so the first negative level always finds one
        levels.append(levels[-1] - step)
    levels = np.asarray(levels)
    best = np.where(np.isnan(vis), -np.inf, vis).max(axis=1)  # (M,)
    found_at = best[:, None] > levels[None, :]  # (M, K): does any frame pass level k
    found = found_at.any(axis=1)
    level = levels[found_at.argmax(axis=1)]  # the first (highest) level some frame passes
    passes = vis > level[:, None]  # (M, L)
    last = length - 1 - passes[:, ::-1].argmax(axis=1)
    return np.where(found, last + 1, length).astype(np.int64)


@dataclass
class _Track:
    """One object's points.

    ``points``: the ``Nx2`` input-image points given to :meth:`OnlinePipsTracker.set_track`;
    ``starts``: ``N`` window start frame per point; ``queries``: ``Nx2`` float64 positions on the
    start frames in network-input pixels; ``template``: ``(N, 128)`` on the device.
    """

    points: np.ndarray
    starts: np.ndarray
    queries: np.ndarray
    template: torch.Tensor
    result: Optional[TrackedPoints] = None
    result_frame: int = -1  #: the frame ``result`` belongs to


class OnlinePipsTracker:
    """Causal multi-object PIPS tracker implementing :class:`sampt_ros.core.types.PointTracker`.

    Args:
        cfg: the PIPS settings (checkpoint, iterations, next-window rule, device, half).
        window: frames per window and frames buffered; PIPS' window is fixed at 8.
        net: a ready :class:`PipsNet` (moved to the configured device, its dtype kept); by default
            one is built from ``cfg.checkpoint`` (or with random weights when
            ``cfg.allow_random_weights``).
        max_side: if set, frames whose long side exceeds it are resized down for the network
            (``None``: native resolution, padded only).

    Work counters are in :meth:`stats`; :attr:`device` says where the network runs;
    :meth:`window_starts` shows each point's current window start (for tests and diagnostics).
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
        self._device = resolve_device(cfg.device, "tracker.pips.device")
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
        self._np_dtype = np.float64 if self._dtype == torch.float64 else np.float32

        self._counts = {"feature_maps_computed": 0, "network_calls": 0, "windows_tracked": 0}
        self._volume: Optional[List[torch.Tensor]] = None  # pyramid levels (1, 128, 9, h_l, w_l)
        self._tracks: Dict[Hashable, _Track] = {}
        self._next_index = 0
        self._image_size: Optional[Tuple[int, int]] = None  # (H, W) of the input frames
        self._net_size: Optional[Tuple[int, int]] = None  # (H, W) fed to the encoder before padding

    @property
    def device(self) -> str:
        """The torch device the network runs on (``cpu``, ``cuda:0``)."""
        return str(self._device)

    def stats(self) -> Dict[str, float]:
        """Work counters since construction (kept by :meth:`reset`):

        * ``feature_maps_computed``: frames encoded (exactly one per :meth:`push_frame`);
        * ``network_calls``: runs of the update operator (at most one per frame);
        * ``windows_tracked``: distinct windows (start frames) those runs covered.
        """
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
        return self._next_index - 1 if self._next_index else None

    def has_frame(self, index: int) -> bool:
        """Whether frame ``index`` is still buffered."""
        return self._next_index - self.buffer_size <= index < self._next_index and index >= 0

    def push_frame(self, image: np.ndarray) -> int:
        """Add a ``HxWx3 uint8`` RGB frame, encode it once, and return its index.

        Raises ``ValueError`` for a malformed image or one whose size differs from the buffered
        frames (call :meth:`reset` when the camera resolution changes).
        """
        image = as_rgb_image(image)
        height, width = image.shape[:2]
        if self._image_size is not None and (height, width) != self._image_size:
            raise ValueError(
                f"frame size changed from {self._image_size[1]}x{self._image_size[0]} to {width}x{height} "
                "(W x H); reset() the tracker first"
            )
        newest = self.newest_frame
        if newest is not None:
            # Points whose window is complete on the newest frame choose their next window now:
            # the frame their window starts on is about to be overwritten.
            due = [k for k, tr in self._tracks.items()
                   if tr.result_frame != newest and len(tr.starts) and tr.starts.min() + self.window - 1 <= newest]
            if due:
                self._update(due)

        pyramid = self._encode(image)
        index = self._next_index
        if self._volume is None:
            self._volume = [torch.zeros((1, lvl.shape[0], _DEPTH, *lvl.shape[1:]), dtype=self._dtype,
                                        device=self._device) for lvl in pyramid]
        with torch.inference_mode():
            for vol, lvl in zip(self._volume, pyramid):
                vol[0, :, index % self.buffer_size].copy_(lvl)
        self._next_index += 1
        self._image_size = (height, width)
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
            # kept in >= float32 (the correlation samples them in float32 anyway); pooled from that
            pyramid = self.net.feature_pyramid(fmap.to(self._dtype))
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

    def _upload(self, array: np.ndarray) -> torch.Tensor:
        """A small host array -> the device in the working dtype, without waiting for the device."""
        host = np.ascontiguousarray(array, dtype=self._np_dtype)
        return torch.from_numpy(host).to(self._device, non_blocking=True)

    # -- tracks ----------------------------------------------------------------------------

    def set_track(self, object_id: Hashable, points: np.ndarray, frame_index: int) -> None:
        """(Re)start object ``object_id``'s points from ``Nx2`` (x, y) pixels on buffered frame ``frame_index``.

        Every point's window starts on that frame; its template feature is sampled there.
        Raises ``KeyError`` if the frame is not buffered and ``ValueError`` for malformed points;
        neither changes any state.
        """
        pts = as_points(points, "points").copy()
        if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)):
            raise ValueError(f"frame_index must be an int, got {frame_index!r}")
        frame_index = int(frame_index)
        if not self.has_frame(frame_index):
            if self._next_index:
                oldest = max(0, self._next_index - self.buffer_size)
                where = f"buffered: {oldest}..{self.newest_frame}"
            else:
                where = "no frames pushed yet"
            raise KeyError(f"frame {frame_index} is not buffered ({where})")
        queries = self._to_network(pts)
        with torch.inference_mode():
            if len(pts):
                fmap = self._volume[0][:, :, frame_index % self.buffer_size]  # (1, 128, h, w)
                template = self.net.sample_template(fmap, self._upload(queries)[None])[0]
            else:
                template = torch.zeros((0, self.net.latent_dim), dtype=self._dtype, device=self._device)
        self._tracks[object_id] = _Track(
            points=pts, starts=np.full(len(pts), frame_index, np.int64), queries=queries, template=template
        )

    def remove_track(self, object_id: Hashable) -> None:
        """Forget object ``object_id``'s points (no error if unknown)."""
        self._tracks.pop(object_id, None)

    def window_starts(self, object_id: Hashable) -> np.ndarray:
        """Read-only ``N int`` array: the frame each of the object's points is tracked from, i.e. the
        start of the window that gives its positions on the frames after the newest one whose
        result was computed. Raises ``KeyError`` for an unknown object."""
        starts = self._tracks[object_id].starts.copy()
        starts.flags.writeable = False
        return starts

    def track(self) -> Dict[Hashable, TrackedPoints]:
        """Every object's points on the newest frame: ``Nx2`` float (x, y) pixels and ``N`` float
        visibility in 0..1 (the sigmoid of PIPS' logit; 1.0 for points whose query frame is the
        newest frame, which are returned as given)."""
        if not self._tracks:
            return {}
        self._update(list(self._tracks))
        return {k: tr.result for k, tr in self._tracks.items()}

    def reset(self) -> None:
        """Forget all frames and tracks; frame numbering restarts at 0 (:meth:`stats` counters are kept)."""
        self._volume = None
        self._tracks.clear()
        self._next_index = 0
        self._image_size = None
        self._net_size = None

    # -- the network -----------------------------------------------------------------------

    def _update(self, keys: Sequence[Hashable]) -> None:
        """Bring the results of ``keys`` to the newest frame: at most one network call for all of them."""
        newest = self.newest_frame
        run = []
        for key in keys:
            tr = self._tracks[key]
            if tr.result_frame == newest:
                continue
            n = len(tr.starts)
            if n == 0 or tr.starts.min() == newest:
                # Set on the newest frame (a track's points only ever share a start frame that
                # is the newest one before any result on it was computed).
                tr.result = TrackedPoints(tr.points.copy(), np.ones(n, np.float64))
                tr.result_frame = newest
            else:
                run.append(tr)
        if run:
            self._run(run, newest)

    def _run(self, tracks: List[_Track], newest: int) -> None:
        """One network call: every point of ``tracks`` in its own window, up to frame ``newest``."""
        w = self.window
        starts = np.concatenate([tr.starts for tr in tracks])  # (P,)
        queries = np.concatenate([tr.queries for tr in tracks])  # (P, 2) network pixels
        span = newest - starts  # the newest frame's slot in each point's window, 0..7
        frames = np.minimum(starts[:, None] + np.arange(w), newest)  # (P, 8) frames[c..t], then t repeated
        inputs = self._upload(np.concatenate([queries, frames % w], axis=1))  # (P, 10): one upload
        templates = tracks[0].template if len(tracks) == 1 else torch.cat([tr.template for tr in tracks])
        with torch.inference_mode(), self._autocast_ctx():
            coords, vis_logits = self.net.forward_buffer(
                self._volume, inputs[:, 2:], inputs[:, :2], templates, iters=self.cfg.iters
            )
            out = torch.cat([coords[-1].to(self._dtype), torch.sigmoid(vis_logits.to(self._dtype)).unsqueeze(2)], 2)
            out = out.cpu().numpy().astype(np.float64)  # (P, 8, 3): x, y, visibility; the one device->host copy
        self._counts["network_calls"] += 1
        self._counts["windows_tracked"] += len(np.unique(starts))

        rows = np.arange(len(starts))
        points = self._from_network(out[rows, span, :2])
        visibility = out[rows, span, 2]
        visibility[span == 0] = 1.0  # a query frame (cannot happen by construction; kept for safety)

        # Complete windows: each such point picks its next start and restarts there (template kept).
        done = span == w - 1
        new_starts, new_queries = starts, queries
        if done.any():
            offsets = next_window_offsets(
                out[done, 1:, 2], self.cfg.next_window_visibility, self.cfg.next_window_step
            )
            new_starts = starts.copy()
            new_queries = queries.copy()
            new_starts[done] = starts[done] + offsets
            new_queries[done] = out[rows[done], offsets, :2]

        first = 0
        for tr in tracks:
            last = first + len(tr.starts)
            tr.result = TrackedPoints(points[first:last].copy(), visibility[first:last].copy())
            tr.result_frame = newest
            tr.starts = new_starts[first:last].copy()
            tr.queries = new_queries[first:last].copy()
            first = last
