"""PIPS, the "Persistent Independent Particles" point tracker (Harley et al., ECCV 2022).

A re-implementation of the published model ``Pips(S=8, stride)`` of aharley/pips that holds
exactly the official parameters (so the released checkpoint ``model-000200000.pth`` loads
with ``strict=True``) and computes the same trajectories, visibility logits and template
features. It is split so that a caller can run the per-frame encoder once per frame and
reuse its feature maps across overlapping windows:

* :meth:`PipsNet.encode`: ``(B, S, 3, H, W)`` frames -> ``(B, S, 128, H/stride, W/stride)`` feature maps;
* :meth:`PipsNet.feature_pyramid`: feature maps -> 4-level average-pooled pyramid (per frame);
* :meth:`PipsNet.sample_template`: the template feature of query points on one feature map;
* :meth:`PipsNet.forward_features`: the iterative update over a window of 8 feature maps;
* :meth:`PipsNet.forward` = ``encode`` + ``forward_features``;
* :meth:`PipsNet.forward_buffer`: the same update for points that each have their own window of
  8 frames in a shared buffer of feature maps, all in one call (what an online tracker needs when
  its points restart on different frames).

PIPS tracks every point independently: the correlation, the mixer (its token mixing runs over a
point's 8 frames, never across points), the group norm (one group over a feature vector) and the
visibility head all work per point and frame. So any set of points, from any windows, can share one
batch without changing any point's result.

Conventions: frames are RGB floats in 0..255 (the network normalises them itself);
points are ``(x, y)`` pixels of the input frames, the centre of the top-left pixel at (0, 0).
Internally the network works in feature-map cells (pixels / stride).

One deliberate implementation difference: the published code builds the full correlation
volume of every point against every feature-map cell and then bilinearly samples a 7x7
neighbourhood from it. Since bilinear sampling is linear, sampling the feature maps first and
taking the dot product afterwards gives the same numbers (up to summation order) at a small
fraction of the cost; that is what :func:`_local_correlation` does. The dense volume was only
needed for the training loss and visualisations.
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import read_state_dict

__all__ = ["PipsNet", "load_pips_checkpoint", "PIPS_NUM_PARAMS", "PIPS_WINDOW"]

PIPS_WINDOW = 8  #: frames per window (the model's S; fixed by the mixer's weights)
PIPS_NUM_PARAMS = 28_677_713  #: parameters of the official Pips(S=8)
LATENT_DIM = 128  #: feature channels of the encoder and of the template
CORR_LEVELS = 4  #: correlation pyramid levels
CORR_RADIUS = 3  #: neighbourhood radius per level: (2r+1)^2 = 49 samples
MIXER_DIM = 512
MIXER_DEPTH = 12
EMBED_DIM = 64  #: sin/cos channels per flow component (x, y, t)

_CHECKPOINT_HELP = (
    "download the PIPS reference model (reference_model/model-000200000.pth of aharley/pips: "
    "its get_reference_model.sh, or https://huggingface.co/aharley/pips) and set "
    "tracker.pips.checkpoint to the .pth file"
)


# --------------------------------------------------------------------------------------------
# Encoder: a RAFT-style residual CNN with instance normalisation, multi-scale features fused
# at 1/stride resolution.
# --------------------------------------------------------------------------------------------


class _ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm; a strided 1x1 projection on the skip path."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm1 = nn.InstanceNorm2d(out_channels)
        self.norm2 = nn.InstanceNorm2d(out_channels)
        if stride == 1:
            self.downsample = None
        else:
            # "downsample.0" is the state-dict name of the projection in the official weights.
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride), nn.InstanceNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(x + y)


class _Encoder(nn.Module):
    """``(B, 3, H, W)`` normalised images -> ``(B, 128, H // stride, W // stride)`` features."""

    def __init__(self, stride: int, output_dim: int = LATENT_DIM) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.norm1 = nn.InstanceNorm2d(64)
        self.layer1 = nn.Sequential(_ResidualBlock(64, 64, 1), _ResidualBlock(64, 64))
        self.layer2 = nn.Sequential(_ResidualBlock(64, 96, 2), _ResidualBlock(96, 96))
        self.layer3 = nn.Sequential(_ResidualBlock(96, 128, 2), _ResidualBlock(128, 128))
        self.layer4 = nn.Sequential(_ResidualBlock(128, 128, 2), _ResidualBlock(128, 128))
        self.conv2 = nn.Conv2d(64 + 96 + 128 + 128, output_dim * 2, 3, padding=1)
        self.norm2 = nn.InstanceNorm2d(output_dim * 2)
        self.conv3 = nn.Conv2d(output_dim * 2, output_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2] // self.stride, x.shape[-1] // self.stride)
        x = F.relu(self.norm1(self.conv1(x)))
        scales = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            scales.append(x)
        # every scale (1/2 .. 1/16) is resampled onto the 1/stride grid, corners aligned
        fused = torch.cat(
            [F.interpolate(s, size, mode="bilinear", align_corners=True) for s in scales], dim=1
        )
        return self.conv3(F.relu(self.norm2(self.conv2(fused))))


# --------------------------------------------------------------------------------------------
# The update operator: an MLP-Mixer over the 8 frames of one point.
# --------------------------------------------------------------------------------------------


class _PreNormResidual(nn.Module):
    """``x + fn(LayerNorm(x))`` over the last dimension."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x)) + x


def _mlp(dense1: nn.Module, dense2: nn.Module) -> nn.Sequential:
    # The identities stand where the official model has (p=0) dropout, so that the dense layers
    # keep their state-dict indices 0 and 3.
    return nn.Sequential(dense1, nn.GELU(), nn.Identity(), dense2, nn.Identity())


class _MeanOverFrames(nn.Module):
    """``(P, S, C)`` -> ``(P, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def _mixer(frames: int, input_dim: int, dim: int, output_dim: int, depth: int) -> nn.Sequential:
    """``(P, S, input_dim)`` -> ``(P, output_dim)``: token (frame) mixing by 1x1 convolutions over
    the S axis, channel mixing by linear layers, then a mean over frames."""
    blocks = [
        nn.Sequential(
            _PreNormResidual(dim, _mlp(nn.Conv1d(frames, frames * 4, 1), nn.Conv1d(frames * 4, frames, 1))),
            _PreNormResidual(dim, _mlp(nn.Linear(dim, dim * 4), nn.Linear(dim * 4, dim))),
        )
        for _ in range(depth)
    ]
    return nn.Sequential(
        nn.Linear(input_dim, dim), *blocks, nn.LayerNorm(dim), _MeanOverFrames(), nn.Linear(dim, output_dim)
    )


class _DeltaBlock(nn.Module):
    """Per point: (template features, local correlations, flow embedding) over S frames ->
    ``(P, S, 2 + 128)`` updates of (x, y) and of the per-frame features."""

    def __init__(self, frames: int = PIPS_WINDOW, latent_dim: int = LATENT_DIM) -> None:
        super().__init__()
        self.frames = frames
        self.latent_dim = latent_dim
        corr_dim = CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2
        input_dim = latent_dim + corr_dim + 3 * EMBED_DIM + 3
        self.to_delta = _mixer(frames, input_dim, MIXER_DIM, frames * (latent_dim + 2), MIXER_DEPTH)

    def forward(self, feats: torch.Tensor, corrs: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        """feats ``(P, S, 128)``, corrs ``(P, S, 196)``, flows ``(P, S, 3)`` (dx, dy, t) -> ``(P, S, 130)``."""
        # the parts arrive in mixed precisions (coordinates are kept in >= float32)
        dtype = self.to_delta[0].weight.dtype
        x = torch.cat([feats.to(dtype), corrs.to(dtype), _sincos_embedding(flows, EMBED_DIM).to(dtype)], dim=2)
        return self.to_delta(x).reshape(x.shape[0], self.frames, self.latent_dim + 2)


def _sincos_embedding(xyz: torch.Tensor, channels: int) -> torch.Tensor:
    """``(..., 3)`` -> ``(..., 3 * channels + 3)``.

    Per component, ``channels`` values interleaved ``sin(v * f_k), cos(v * f_k)`` with
    ``f_k = 2k * 1000 / channels``; the raw components are appended. The arguments reach
    thousands of radians, so this runs in at least float32 even under fp16 autocast.
    """
    work = xyz if xyz.dtype in (torch.float32, torch.float64) else xyz.float()
    freqs = torch.arange(0, channels, 2, device=xyz.device, dtype=work.dtype) * (1000.0 / channels)
    angles = work.unsqueeze(-1) * freqs  # (..., 3, channels/2)
    pe = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(-3)  # (..., 3*channels)
    return torch.cat([pe, work], dim=-1)


# --------------------------------------------------------------------------------------------
# Sampling helpers (feature-map cell coordinates, cell centres at integers).
# --------------------------------------------------------------------------------------------


def _to_grid(xy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Cell coordinates -> grid_sample's [-1, 1] with ``align_corners=True`` (corner cells at +-1).

    Python scalars only: no tensor is built on the host (that would be a synchronising copy on CUDA).
    """
    sx = 2.0 / max(width - 1, 1)
    sy = 2.0 / max(height - 1, 1)
    return torch.stack([xy[..., 0] * sx, xy[..., 1] * sy], dim=-1) - 1.0


def _sample_clamped(fmap: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear sample ``(B, C, h, w)`` at ``(B, N, 2)`` cell coordinates -> ``(B, N, C)``.

    Outside the map the nearest border value is used (the official template sampler clamps
    its corner indices, which amounts to border padding).
    """
    work = _at_least_float32(fmap)  # a float16 grid cannot address cells of a large map precisely
    grid = _to_grid(xy, fmap.shape[-2], fmap.shape[-1]).unsqueeze(2).to(work.dtype)  # (B, N, 1, 2)
    out = F.grid_sample(work, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.squeeze(3).transpose(1, 2).to(fmap.dtype)


def _at_least_float32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _neighbourhood(radius: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``((2r+1)^2, 2)`` offsets (dx, dy), ordered x-major (dx = k // (2r+1) - r, dy = k % (2r+1) - r):
    the order in which the official model lays out its correlation features."""
    d = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    dx, dy = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dx, dy], dim=-1).reshape(-1, 2)


def _local_correlation(
    pyramid: List[torch.Tensor], feats: torch.Tensor, coords: torch.Tensor, radius: int = CORR_RADIUS
) -> torch.Tensor:
    """Correlation of each point's per-frame feature with its neighbourhood on every pyramid level.

    Args:
        pyramid: levels ``(B, S, C, h_l, w_l)``, level ``l`` at 1/2^l of the feature-map grid.
        feats: ``(B, S, N, C)`` per-frame point features.
        coords: ``(B, S, N, 2)`` (x, y) in level-0 cells.

    Returns:
        ``(B, S, N, L * (2r+1)^2)``: ``<feat, fmap(p + d)> / sqrt(C)``, bilinear, zero outside the map.
    """
    b, s, n, c = feats.shape
    offsets = _neighbourhood(radius, coords.device, coords.dtype)  # (K, 2)
    feats_ = feats.reshape(b * s, n, 1, c)
    out = []
    for level, fmaps in enumerate(pyramid):
        h, w = fmaps.shape[-2:]
        centres = coords.reshape(b * s, n, 1, 2) / (2**level)
        work = _at_least_float32(fmaps)
        grid = _to_grid(centres + offsets, h, w).to(work.dtype)  # (BS, N, K, 2)
        sampled = F.grid_sample(
            work.reshape(b * s, c, h, w), grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )  # (BS, C, N, K)
        with _full_precision(sampled):
            corr = torch.matmul(feats_.to(sampled.dtype), sampled.permute(0, 2, 1, 3)).squeeze(2)  # (BS, N, K)
        out.append(corr)
    return torch.cat(out, dim=-1).reshape(b, s, n, -1) / math.sqrt(c)


def _full_precision(t: torch.Tensor):
    """Autocast off on ``t``'s device: correlations are sums of 128 products of unnormalised features,
    which float16 would round (or overflow); they are cheap next to the mixer."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def _buffer_correlation(
    volume: List[torch.Tensor], depth: torch.Tensor, feats: torch.Tensor, coords: torch.Tensor,
    radius: int = CORR_RADIUS,
) -> torch.Tensor:
    """:func:`_local_correlation` for points that each sample their own frames of a shared buffer.

    Args:
        volume: levels ``(1, C, D, h_l, w_l)``: D buffered frames' feature maps along the depth axis.
        depth: ``(P, S)`` grid_sample depth coordinates (in [-1, 1]) of each point's window frames;
            they must address frames exactly (integer after unnormalising, see
            :meth:`PipsNet.forward_buffer`), so the trilinear sample is the frame's bilinear sample.
        feats: ``(P, S, C)`` per-frame point features.
        coords: ``(P, S, 2)`` (x, y) in level-0 cells.

    Returns:
        ``(P, S, L * (2r+1)^2)``, laid out as :func:`_local_correlation`'s.
    """
    p, s, c = feats.shape
    offsets = _neighbourhood(radius, coords.device, coords.dtype)  # (K, 2)
    k = offsets.shape[0]
    out = []
    for level, vol in enumerate(volume):
        h, w = vol.shape[-2:]
        work = _at_least_float32(vol)
        xy = _to_grid(coords.unsqueeze(2) / (2**level) + offsets, h, w)  # (P, S, K, 2)
        z = depth.to(xy.dtype)[:, :, None, None].expand(p, s, k, 1)
        grid = torch.cat([xy, z], dim=-1).to(work.dtype).unsqueeze(0)  # (1, P, S, K, 3): x, y, frame
        sampled = F.grid_sample(work, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
        with _full_precision(sampled):  # (P, S, 1, C) @ (P, S, C, K)
            corr = torch.matmul(feats.unsqueeze(2).to(sampled.dtype), sampled.permute(1, 2, 0, 3)).squeeze(2)
        out.append(corr)
    return torch.cat(out, dim=-1) / math.sqrt(c)


# --------------------------------------------------------------------------------------------
# The network.
# --------------------------------------------------------------------------------------------


class PipsNet(nn.Module):
    """PIPS over windows of 8 frames, with the official parameter names and shapes.

    Args:
        stride: feature-map stride in pixels (SAM-PT uses 4; the PIPS paper 8). The weights do not
            depend on it.

    Example::

        net = PipsNet.from_checkpoint("model-000200000.pth", "cuda")
        coords, vis_logits, feat = net(rgbs, queries, iters=6)
        # next window, starting at frame 7 from the tracked positions, same template
        coords2, vis2, _ = net(rgbs_next, coords[-1, :, 7], iters=6, feat_init=feat)
    """

    def __init__(self, stride: int = 4) -> None:
        super().__init__()
        if stride not in (2, 4, 8):
            raise ValueError(f"PipsNet stride must be 2, 4 or 8, got {stride}")
        self.stride = stride
        self.window = PIPS_WINDOW
        self.latent_dim = LATENT_DIM
        self.fnet = _Encoder(stride)
        self.delta_block = _DeltaBlock(PIPS_WINDOW, LATENT_DIM)
        self.norm = nn.GroupNorm(1, LATENT_DIM)
        self.ffeat_updater = nn.Sequential(nn.Linear(LATENT_DIM, LATENT_DIM), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(LATENT_DIM, 1))

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls, path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu", stride: int = 4
    ) -> "PipsNet":
        """Build the network, load an official checkpoint strictly, move to ``device``, eval mode."""
        state = load_pips_checkpoint(path)
        net = cls(stride=stride)
        net.load_state_dict(state, strict=True)
        return net.to(device).eval()

    # -- the per-frame part ------------------------------------------------------------------

    def encode(self, rgbs: torch.Tensor) -> torch.Tensor:
        """Feature maps of every frame.

        Args:
            rgbs: ``(B, S, 3, H, W)`` RGB floats in 0..255 (any S).

        Returns:
            ``(B, S, 128, H // stride, W // stride)``.
        """
        if rgbs.ndim != 5 or rgbs.shape[2] != 3:
            raise ValueError(f"rgbs must be (B, S, 3, H, W), got {tuple(rgbs.shape)}")
        b, s, _, h, w = rgbs.shape
        x = rgbs.reshape(b * s, 3, h, w) * (2.0 / 255.0) - 1.0
        fmaps = self.fnet(x)
        return fmaps.reshape(b, s, *fmaps.shape[1:])

    @staticmethod
    def feature_pyramid(fmaps: torch.Tensor, levels: int = CORR_LEVELS) -> List[torch.Tensor]:
        """``(..., C, h, w)`` feature maps -> ``levels`` maps, each 2x2 average-pooled from the previous
        (level 0 is ``fmaps`` itself). Works per frame, so it can be cached per frame."""
        lead = fmaps.shape[:-3]
        out = [fmaps]
        x = fmaps.reshape(-1, *fmaps.shape[-3:])
        for _ in range(levels - 1):
            x = F.avg_pool2d(x, 2, stride=2)
            out.append(x.reshape(*lead, *x.shape[-3:]))
        return out

    def sample_template(self, fmap: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Template features of query points.

        Args:
            fmap: ``(B, 128, h, w)`` the query frame's feature map.
            queries: ``(B, N, 2)`` (x, y) pixels.

        Returns:
            ``(B, N, 128)`` bilinear samples (border values outside the map).
        """
        return _sample_clamped(fmap, queries / float(self.stride))

    # -- the per-window part -----------------------------------------------------------------

    def forward_features(
        self,
        fmaps: torch.Tensor,
        queries: torch.Tensor,
        iters: int = 6,
        feat_init: Optional[torch.Tensor] = None,
        pyramid: Optional[List[torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Track query points through a window of precomputed feature maps.

        Args:
            fmaps: ``(B, 8, 128, h, w)`` from :meth:`encode`; frame 0 is the query frame.
            queries: ``(B, N, 2)`` (x, y) pixels on frame 0.
            iters: update iterations (6 in PIPS and SAM-PT).
            feat_init: ``(B, N, 128)`` template features (e.g. the ``feat`` of a previous window, to
                chain windows), or ``None`` to sample them from frame 0 at the queries.
            pyramid: optional :meth:`feature_pyramid` of ``fmaps`` (saves recomputing it).

        Returns:
            ``(coords, vis_logits, feat)``: ``(iters, B, 8, N, 2)`` (x, y) pixels after every
            iteration (frame 0 stays at the queries), ``(B, 8, N)`` visibility logits after the last
            iteration, ``(B, N, 128)`` the template feature used (``feat_init`` when given).
        """
        if fmaps.ndim != 5 or fmaps.shape[1] != self.window or fmaps.shape[2] != self.latent_dim:
            raise ValueError(f"fmaps must be (B, {self.window}, {self.latent_dim}, h, w), got {tuple(fmaps.shape)}")
        b, s, c = fmaps.shape[:3]
        if queries.ndim != 3 or queries.shape[0] != b or queries.shape[2] != 2:
            raise ValueError(f"queries must be (B={b}, N, 2), got {tuple(queries.shape)}")
        n = queries.shape[1]
        if feat_init is not None and tuple(feat_init.shape) != (b, n, c):
            raise ValueError(f"feat_init must be {(b, n, c)}, got {tuple(feat_init.shape)}")
        if iters < 1:
            raise ValueError(f"iters must be >= 1, got {iters}")
        if pyramid is None:
            pyramid = self.feature_pyramid(fmaps)

        cdtype = torch.promote_types(queries.dtype, torch.float32)
        template = self.sample_template(fmaps[:, 0], queries.to(cdtype)) if feat_init is None else feat_init

        def correlate(feats: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
            # per-point (B*N, S, .) layout <-> the (B, S, N, .) layout of the window's feature maps
            f = feats.reshape(b, n, s, c).transpose(1, 2)
            xy = coords.reshape(b, n, s, 2).transpose(1, 2)
            return _local_correlation(pyramid, f, xy).transpose(1, 2).reshape(b * n, s, -1)

        coords, vis_logits = self._refine(correlate, queries.reshape(b * n, 2), template.reshape(b * n, c), iters)
        coords = coords.reshape(iters, b, n, s, 2).transpose(2, 3).contiguous()
        vis_logits = vis_logits.reshape(b, n, s).transpose(1, 2).contiguous()
        return coords, vis_logits, template

    def forward_buffer(
        self,
        volume: List[torch.Tensor],
        frames: torch.Tensor,
        queries: torch.Tensor,
        feat_init: torch.Tensor,
        iters: int = 6,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Track points that each have their own 8-frame window in a shared buffer of frames.

        Point ``p`` is tracked exactly as :meth:`forward_features` would track it in the window
        of the buffered frames ``frames[p]``: its own query frame, its own padding. All points go
        through the network together (PIPS treats points independently), so windows that start on
        different frames cost one call, and no window's feature maps are copied.

        Args:
            volume: the buffer's feature pyramids, level ``l`` ``(1, 128, D, h/2^l, w/2^l)`` (the
                :meth:`feature_pyramid` of each buffered frame, stacked along the depth axis).
                ``D - 1`` must be a power of two (e.g. 8 frames in ``D = 9``): then a frame's
                depth coordinate survives grid_sample's normalisation exactly and the trilinear
                sample equals the frame's bilinear one.
            frames: ``(P, 8)`` depth indices (any numeric dtype) of each point's window frames;
                ``frames[p, 0]`` is the frame its query lies on.
            queries: ``(P, 2)`` (x, y) pixels on each point's first window frame.
            feat_init: ``(P, 128)`` template features (see :meth:`sample_template`).
            iters: update iterations.

        Returns:
            ``coords (iters, P, 8, 2)`` pixels after every iteration (slot 0 stays at the queries)
            and ``vis_logits (P, 8)`` after the last iteration.
        """
        if not volume or any(v.ndim != 5 or v.shape[0] != 1 or v.shape[1] != self.latent_dim for v in volume):
            raise ValueError(f"volume must be levels of shape (1, {self.latent_dim}, D, h, w)")
        depth = volume[0].shape[2]
        if depth < 2 or (depth - 1) & (depth - 2) or any(v.shape[2] != depth for v in volume):
            raise ValueError(f"every volume level needs the same depth D with D - 1 a power of two, "
                             f"got {[v.shape[2] for v in volume]}")
        if queries.ndim != 2 or queries.shape[1] != 2:
            raise ValueError(f"queries must be (P, 2), got {tuple(queries.shape)}")
        p = queries.shape[0]
        if tuple(frames.shape) != (p, self.window):
            raise ValueError(f"frames must be (P={p}, {self.window}), got {tuple(frames.shape)}")
        if tuple(feat_init.shape) != (p, self.latent_dim):
            raise ValueError(f"feat_init must be {(p, self.latent_dim)}, got {tuple(feat_init.shape)}")
        if iters < 1:
            raise ValueError(f"iters must be >= 1, got {iters}")
        cdtype = torch.promote_types(queries.dtype, torch.float32)
        # index k -> k * 2 / (D - 1) - 1: exact for D - 1 a power of two, and so is grid_sample's way back
        z = frames.to(cdtype) * (2.0 / (depth - 1)) - 1.0

        def correlate(feats: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
            return _buffer_correlation(volume, z, feats, coords)

        return self._refine(correlate, queries, feat_init, iters)

    def _refine(
        self, correlate, queries: torch.Tensor, template: torch.Tensor, iters: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The iterative update of P points over their windows, in per-point layout.

        ``correlate(feats (P, S, C), coords (P, S, 2) cells) -> (P, S, 196)``; ``queries (P, 2)``
        pixels on slot 0; ``template (P, C)``. Returns ``coords (iters, P, S, 2)`` pixels and
        ``vis_logits (P, S)``.
        """
        p, s, c = queries.shape[0], self.window, self.latent_dim
        # Coordinates stay in at least float32 (fp16 cannot hold sub-cell positions on big maps).
        cdtype = torch.promote_types(queries.dtype, torch.float32)
        start = queries.to(cdtype) / float(self.stride)  # (P, 2) cells
        coords = start.unsqueeze(1).expand(p, s, 2).clone()
        feats = template.unsqueeze(1).expand(p, s, c)  # (P, S, C)
        # frame times 0..S spread over S samples, as in the official model
        times = torch.linspace(0, s, s, device=queries.device, dtype=cdtype).reshape(1, s, 1).expand(p, s, 1)

        predictions = []
        for _ in range(iters):
            corrs = correlate(feats, coords)  # (P, S, 196)
            flows = torch.cat([coords - coords[:, :1], times], dim=2)  # (P, S, 3)
            delta = self.delta_block(feats, corrs, flows)  # (P, S, 130)
            delta_feats = delta[..., 2:].reshape(p * s, c)
            feats = (self.ffeat_updater(self.norm(delta_feats)) + feats.reshape(p * s, c)).reshape(p, s, c)
            coords = coords + delta[..., :2].to(cdtype)
            coords[:, 0] = start  # the query frame is fixed
            predictions.append(coords * float(self.stride))

        vis_logits = self.vis_predictor(feats.reshape(p * s, c)).reshape(p, s)
        return torch.stack(predictions), vis_logits

    def forward(
        self,
        rgbs: torch.Tensor,
        queries: torch.Tensor,
        iters: int = 6,
        feat_init: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode a window and track the queries through it.

        Args:
            rgbs: ``(B, 8, 3, H, W)`` RGB floats in 0..255.
            queries: ``(B, N, 2)`` (x, y) pixels on frame 0.
            iters: update iterations.
            feat_init: ``(B, N, 128)`` template features or ``None``.

        Returns:
            ``coords (iters, B, 8, N, 2)`` pixels, ``vis_logits (B, 8, N)``, ``feat (B, N, 128)``;
            see :meth:`forward_features`.
        """
        if rgbs.ndim != 5 or rgbs.shape[1] != self.window:
            raise ValueError(f"rgbs must be (B, {self.window}, 3, H, W), got {tuple(rgbs.shape)}")
        return self.forward_features(self.encode(rgbs), queries, iters=iters, feat_init=feat_init)


# --------------------------------------------------------------------------------------------
# Checkpoints.
# --------------------------------------------------------------------------------------------


def _expected_shapes() -> Dict[str, Tuple[int, ...]]:
    with torch.device("meta"):
        net = PipsNet(stride=4)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def load_pips_checkpoint(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """Read the official PIPS checkpoint (``model-000200000.pth``) as a state dict.

    Accepts the training checkpoint (a dict with ``model_state_dict``) or a bare state dict,
    optionally with ``module.`` prefixes. Reads with ``torch.load(weights_only=True)``, so no
    pickled code runs. The keys and shapes are checked against :class:`PipsNet`.

    Raises:
        FileNotFoundError: the file does not exist (the message says where to get it).
        ValueError: the file is not a PIPS checkpoint, or its keys/shapes do not match.
    """
    path = os.fspath(path)
    if not path:
        raise FileNotFoundError(f"no PIPS checkpoint given: {_CHECKPOINT_HELP}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PIPS checkpoint not found: {path!r}; {_CHECKPOINT_HELP}")
    # the loader every model shares: no pickled code runs, and a bad file is one plain line
    # (CheckpointError is a ValueError)
    state = read_state_dict(path, "PIPS", "tracker.pips.checkpoint", unwrap=("model_state_dict",))
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    expected = _expected_shapes()
    if not any(k.startswith("fnet.") for k in state) or not any(k.startswith("delta_block.") for k in state):
        some = ", ".join(list(state)[:4]) or "none"
        raise ValueError(f"{path}: not a PIPS checkpoint (no fnet./delta_block. weights; keys: {some})")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {expected[k]}" for k in expected
             if k in state and tuple(state[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} with the wrong shape (e.g. {'; '.join(wrong[:3])})")
        raise ValueError(f"{path}: weights do not match PIPS(S=8): " + ", ".join(parts))
    return dict(state)
