"""A weight-free, CPU-only prompted segmenter: a flow-moved prior weighed against colour and motion.

:class:`ClassicSegmenter` implements :class:`sampt_ros.core.types.Segmenter` with the same
interface as SAM (image, points, labels, previous mask -> mask, score), so the engine runs
without any network weights (the ``cpu`` profile). Everything happens at a reduced working
resolution (``work_size`` long side) and is upsampled at the end.

Per image (:meth:`ClassicSegmenter.set_image`, once per frame): downscale, quantise the Lab
colours into histogram bins, and compute dense optical flow (DIS, Kroeger et al. 2016) from
this image back to the previous one.

Per object (:meth:`ClassicSegmenter.segment`) with a prior (``prev_mask``, the object's
previous mask moved by its tracked points):

1. **Better prior.** The segmenter keeps the masks it produced on the previous image. Each is
   moved by the dense flow; the one that overlaps the engine's prior best (IoU above
   ``match_iou``) is the same object, and its flow-moved mask replaces the prior (dense flow
   follows non-rigid motion that a similarity transform of a few points cannot). Its colour
   histograms come along as the object's colour memory.
2. **Posterior.** Per pixel, a logit that sums
   ``prior_weight`` x tanh(signed distance to the prior's edge / (``prior_softness`` x band)),
   ``colour_weight`` x the colour log-likelihood ratio (Lab histograms of the object and of a
   ring of background around it, blended into the object's memory at rate ``memory``: a small
   rate keeps the first frame's appearance), and ``motion_weight`` x a motion log-likelihood
   ratio (does the pixel's flow fit an affine motion of the object or of its surroundings?),
   used mostly as evidence *against*: a shadow or a reflection moves with its object.
   Disks around the positive / negative points are set to certain; positives far outside the
   prior (tracking slips) are ignored.
3. The mask is the logit's sign; or, with ``graph_cut``, pixels with
   ``|logit| > certain_logit`` are definite and GrabCut (Rother et al. 2004, ``cv2.grabCut``)
   settles the others (slower, and on DAVIS no better: its colour models let masks leak).
4. Connected components are kept when they overlap the prior (parts of the object cut apart
   by a thin occluder stay) or hold a positive point, and dropped when they touch a negative
   point without holding a positive one. The mask is upsampled with a smooth edge.

Without a prior (points only: the first frame of a point prompt), a box around the positives,
grown by their spread, is probable background, their convex hull probable foreground, and
GrabCut decides.

The score is the fraction of positive points inside the mask, times the IoU between the mask
and the prior when there is one (how much the evidence had to change the motion prediction).

Measured on the ten shared DAVIS 2016 sequences with the ``cpu`` profile (``sampt-eval``):
J&F 0.56 at ~50 FPS end to end on a shared 2-core machine. Weak spots: objects passing behind
occluders (bmx-trees, libby) and fast zooms (motocross-jump), where the mask drifts and is not
re-detected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .backends.classic import ClassicConfig
from .types import SegmentRequest, Segmentation, as_labels, as_points, as_rgb_image

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# Logit written under the prompt points: far beyond any colour/prior evidence.
_SEED_LOGIT = 50.0
# The colour log-likelihood ratio is clipped so one rare colour cannot outvote the prior.
_MAX_LLR = 5.0
# Unit offsets in eight directions (to look around a point's seed disk).
_RING_OFFSETS = np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)


@dataclass
class _Segment:
    """What the segmenter remembers about one mask it produced (working resolution)."""

    mask: np.ndarray  # hxw bool
    fg_hist: Optional[np.ndarray]  # colour_bins**3 float, sums to 1
    bg_hist: Optional[np.ndarray]


class ClassicSegmenter:
    """Weight-free prompted segmenter (implements ``Segmenter``).

    Args:
        cfg: :class:`~sampt_ros.core.backends.classic.ClassicConfig`.

    Example::

        seg = ClassicSegmenter(ClassicConfig())
        seg.set_image(frame)                                          # HxWx3 uint8 RGB
        [answer] = seg.segment([SegmentRequest(1, points, labels, prior)])
        answer.logits, answer.score                                   # HxW float32, float in 0..1

    The segmenter is stateful across frames: the previous image (for the flow) and, per object
    id, the last mask it produced and the object's colour memory; :meth:`remove_object` and
    :meth:`reset` forget them. Probe requests (re-detection candidates) leave that state alone.
    Not thread-safe.
    """

    #: the engine passes each object's moved previous mask (this segmenter uses it)
    uses_prior = True
    #: everything runs on the CPU (OpenCV)
    device = "cpu"

    def __init__(self, cfg: Optional[ClassicConfig] = None) -> None:
        cfg = ClassicConfig() if cfg is None else cfg
        if not isinstance(cfg, ClassicConfig):
            raise ValueError(f"cfg must be a ClassicConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self._counts = {"embeddings_computed": 0, "segmentations": 0, "flow_matches": 0}
        self._dis = None
        if cfg.flow != "off":
            self._dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[cfg.flow])
            self._dis.setFinestScale(cfg.flow_finest_scale)
        self.reset()

    def stats(self) -> Dict[str, float]:
        """``embeddings_computed`` (image preparations: resize, colours, flow; one per set_image),
        ``segmentations`` (requests answered), ``flow_matches`` (priors replaced by the
        flow-moved previous mask)."""
        return dict(self._counts)

    def features(self):
        """None: this segmenter computes no learned features (the colour memory reads the image)."""
        return None

    def remove_object(self, object_id: int) -> None:
        """Forget the object's previous mask and colour memory."""
        self._prev_segments.pop(object_id, None)
        self._segments.pop(object_id, None)

    def reset(self) -> None:
        """Forget the current and previous image and every remembered mask."""
        self._full_shape: Optional[Tuple[int, int]] = None
        self._work: Optional[np.ndarray] = None  # hxwx3 uint8 RGB, working resolution
        self._grey: Optional[np.ndarray] = None  # hxw uint8
        self._colour_index: Optional[np.ndarray] = None  # hxw int, Lab histogram bin per pixel
        self._scale = 1.0  # working px per full-image px
        self._flow: Optional[np.ndarray] = None  # hxwx2 float32 flow, current -> previous image
        self._grid: Optional[Tuple[np.ndarray, np.ndarray]] = None  # pixel x, y coordinates (hxw float32)
        self._flow_map: Optional[Tuple[np.ndarray, np.ndarray]] = None  # remap maps, current -> previous
        self._prev_segments: Dict[int, _Segment] = {}  # object id -> its segment on the previous image
        self._segments: Dict[int, _Segment] = {}  # object id -> its segment on the current image

    # ------------------------------------------------------------------ image
    def set_image(self, image: np.ndarray) -> None:
        """Prepare a ``HxWx3 uint8`` RGB image once for every segment() on it.

        Raises ``ValueError`` for a malformed image.
        """
        image = as_rgb_image(image, min_side=8)
        h, w = image.shape[:2]
        cfg = self.cfg
        scale = min(1.0, cfg.work_size / float(max(h, w)))
        size = (max(8, int(round(w * scale))), max(8, int(round(h * scale))))
        if scale < 1.0:
            work = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        else:
            work = np.ascontiguousarray(image)
        grey = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)

        self._flow = self._flow_map = None
        if self._dis is not None and self._grey is not None and self._grey.shape == grey.shape:
            # Flow from the current image back to the previous one: a pixel p here came from
            # p + flow(p) there, which is what cv2.remap needs to pull the old masks forward.
            self._flow = self._dis.calc(grey, self._grey, None)
            if self._grid is None or self._grid[0].shape != grey.shape:
                self._grid = tuple(np.meshgrid(np.arange(grey.shape[1], dtype=np.float32),
                                               np.arange(grey.shape[0], dtype=np.float32)))
            gx, gy = self._grid
            self._flow_map = (gx + self._flow[..., 0], gy + self._flow[..., 1])
        self._prev_segments = self._segments if self._flow_map is not None else {}
        self._segments = {}

        bins = cfg.colour_bins
        q = (cv2.cvtColor(work, cv2.COLOR_RGB2Lab).astype(np.int32) * bins) >> 8
        self._colour_index = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
        self._work = work
        self._grey = grey
        self._scale = size[0] / float(w)
        self._full_shape = (h, w)
        self._counts["embeddings_computed"] += 1

    @property
    def image_shape(self) -> Optional[Tuple[int, int]]:
        """``(H, W)`` of the current image, or None before set_image()."""
        return self._full_shape

    # ------------------------------------------------------------------ segment
    def segment(self, requests: Sequence[SegmentRequest]) -> List[Segmentation]:
        """Segment every request in the current image (see :meth:`segment_one`)."""
        return [self.segment_one(r) for r in requests]

    def segment_one(self, request: SegmentRequest) -> Segmentation:
        """Segment one object in the current image.

        Uses ``request.points`` / ``labels`` (``Nx2`` (x, y) pixels of the full image, 1
        positive / 0 negative) and ``request.prior`` (``HxW bool``: where the object probably
        is now, or None). Without a prior at least one positive point is needed; with neither
        the answer is an empty mask.

        Returns a :class:`Segmentation`: ``HxW float32`` logits (positive inside the mask; their
        size is the posterior's confidence) and a score in 0..1 (the share of positive points
        inside the mask, times the mask's IoU with the prior when there is one).

        Raises ``RuntimeError`` before set_image(), ``ValueError`` for a malformed prompt.
        """
        if self._work is None or self._full_shape is None:
            raise RuntimeError("segment() called before set_image()")
        pts = as_points(request.points)
        lab = as_labels(request.labels, len(pts))
        H, W = self._full_shape
        prior_full = None
        if request.prior is not None:
            prior_full = np.asarray(request.prior)
            if prior_full.shape != (H, W):
                raise ValueError(f"prior must have the image's shape {(H, W)}, got {prior_full.shape}")
            prior_full = prior_full.astype(bool)
            if not prior_full.any():
                prior_full = None
        if prior_full is None and not np.any(lab == 1):
            return Segmentation(np.full((H, W), -np.inf, np.float32), 0.0)
        self._counts["segmentations"] += 1

        h, w = self._work.shape[:2]
        wpts = pts * self._scale
        pos, neg = wpts[lab == 1], wpts[lab == 0]
        prior = None
        confidence = None
        if prior_full is not None:
            prior = cv2.resize(prior_full.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_AREA) >= 128
            if not prior.any():  # a tiny object: keep at least the pixels it touches
                prior = cv2.resize(prior_full.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
            point_prior = prior
            memory = None
            if not request.probe:
                prior, memory = self._flow_prior(prior, request.object_id)
            trimap, fg_hist, bg_hist, pos, confidence = self._trimap_from_prior(
                prior, pos, neg, memory, point_prior if memory is not None else None)
            fg = self._graph_cut(trimap, self.cfg.iters if self.cfg.graph_cut else 0)
            # Parts of the object cut off by a thin occluder (a pole) are still inside the
            # moved mask: keep every piece that overlaps it, drop blobs away from it.
            support = prior
        else:
            trimap = self._trimap_from_points(pos, neg, (h, w))
            fg = self._graph_cut(trimap, self.cfg.iters)
            fg_hist = bg_hist = None
            support = trimap == cv2.GC_FGD
        fg = self._keep_supported_components(fg, pos, neg, support)
        if fg_hist is None and fg.any():
            fg_hist, bg_hist = self._histograms(fg, self._ring(fg))
        if not request.probe:
            self._segments[request.object_id] = _Segment(fg, fg_hist, bg_hist)
        if not fg.any():
            return Segmentation(np.full((H, W), -np.inf, np.float32), 0.0)

        logits = self._upsample_logits(fg, confidence, (H, W))
        score = self._points_inside(logits > 0, pts[lab == 1]) if np.any(lab == 1) else 1.0
        if prior is not None:
            union = np.logical_or(fg, prior).sum()
            score *= float(np.logical_and(fg, prior).sum()) / float(max(union, 1))
        return Segmentation(logits, float(np.clip(score, 0.0, 1.0)))

    # ------------------------------------------------------------------ prior and posterior
    def _flow_prior(self, prior: np.ndarray, object_id: int) -> Tuple[np.ndarray, Optional[_Segment]]:
        """The object's previous mask moved by dense flow (and its colour memory), if it matches the prior.

        Returns ``(prior, the previous segment or None)``; the prior is unchanged when the
        flow-moved mask overlaps it by no more than ``match_iou`` (the previous mask had
        drifted, or the flow failed).
        """
        seg = self._prev_segments.get(object_id)
        if self._flow_map is None or seg is None or seg.mask.shape != prior.shape or not seg.mask.any():
            return prior, None
        mx, my = self._flow_map
        moved = cv2.remap(seg.mask.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderValue=0) >= 0.5
        union = np.logical_or(moved, prior).sum()
        iou = np.logical_and(moved, prior).sum() / max(union, 1)
        if iou <= self.cfg.match_iou or not moved.any():
            return prior, None
        self._counts["flow_matches"] += 1
        return moved, seg

    def _band(self, mask: np.ndarray) -> float:
        """Width (working px) of the uncertain band for an object of this mask's size."""
        return max(2.0, self.cfg.band * float(np.sqrt(mask.sum())))

    def _ring(self, mask: np.ndarray) -> np.ndarray:
        """Background pixels around ``mask`` (within three bands): its local background."""
        r = int(round(3 * self._band(mask)))
        outer = cv2.dilate(mask.astype(np.uint8), _disk(r)) > 0
        return outer & ~mask

    def _histograms(self, fg_sel: np.ndarray, bg_sel: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        n = self.cfg.colour_bins ** 3
        out = []
        for sel in (fg_sel, bg_sel):
            hist = np.bincount(self._colour_index[sel], minlength=n).astype(np.float64)
            out.append(hist / max(hist.sum(), 1.0))
        return out[0], out[1]

    def _trimap_from_prior(self, prior: np.ndarray, pos: np.ndarray, neg: np.ndarray,
                           memory: Optional[_Segment], point_prior: Optional[np.ndarray] = None):
        """GrabCut trimap from the colour + prior posterior.

        ``prior`` is the flow-moved mask (or the engine's prior when none matched),
        ``point_prior`` the engine's point-moved mask when the flow one replaced it.
        Returns ``(trimap, fg_hist, bg_hist, positives used, posterior logit hxw float32)``.
        """
        cfg = self.cfg
        band = self._band(prior)
        signed = _signed_distance(prior)
        fg_sel = signed > 1.0
        if not fg_sel.any():
            fg_sel = prior
        bg_sel = (signed < -1.0) & (signed > -3.0 * band)
        fg_hist, bg_hist = self._histograms(fg_sel, bg_sel)
        if memory is not None and memory.fg_hist is not None:
            a = cfg.memory
            fg_hist = (1.0 - a) * memory.fg_hist + a * fg_hist
            bg_hist = (1.0 - a) * memory.bg_hist + a * bg_hist
        eps = 1.0 / fg_hist.size
        llr = np.clip(np.log(fg_hist + eps) - np.log(bg_hist + eps), -_MAX_LLR, _MAX_LLR)
        # The prior saturates at +/- prior_weight a little way from its edge, so thin parts
        # (legs, wheels) get as much support as the middle of the object.
        prior_logit = np.tanh(signed / (cfg.prior_softness * band))
        if point_prior is not None and cfg.point_prior_weight > 0.0:
            # Dense flow loses parts that emerge from behind a thin occluder; the points' rigid
            # motion keeps them. Where the two disagree the prior abstains and evidence decides.
            b = cfg.point_prior_weight
            point_logit = np.tanh(_signed_distance(point_prior) / (cfg.prior_softness * band))
            prior_logit = (1.0 - b) * prior_logit + b * point_logit
        prior_logit *= cfg.prior_weight
        logit = (cfg.colour_weight * llr[self._colour_index] + prior_logit).astype(np.float32)
        motion = self._motion_llr(fg_sel, bg_sel)
        if motion is not None:
            logit += cfg.motion_weight * motion
        # A positive point far outside the moved mask is more likely a tracking slip (a point
        # stuck on the background or an occluder) than the object: it is not used.
        pos = pos[self._sample(signed, pos, default=-np.inf) > -cfg.point_gate * band]
        self._stamp(logit, pos, _SEED_LOGIT, cfg.seed_radius)
        self._stamp(logit, neg, -_SEED_LOGIT, cfg.seed_radius)
        t = cfg.certain_logit
        trimap = np.full(logit.shape, cv2.GC_BGD, np.uint8)
        trimap[logit > -t] = cv2.GC_PR_BGD
        trimap[logit > 0] = cv2.GC_PR_FGD
        trimap[logit > t] = cv2.GC_FGD
        return trimap, fg_hist, bg_hist, pos, logit

    @staticmethod
    def _sample(image: np.ndarray, pts: np.ndarray, default: float) -> np.ndarray:
        """Values of ``image`` at the nearest pixels of ``Nx2`` (x, y) points (``default`` outside)."""
        h, w = image.shape
        xi, yi = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        out = np.full(len(pts), default, np.float64)
        out[ok] = image[yi[ok], xi[ok]]
        return out

    def _motion_llr(self, fg_sel: np.ndarray, bg_sel: np.ndarray) -> Optional[np.ndarray]:
        """Per-pixel log-likelihood ratio of moving like the object vs like its surroundings.

        An affine motion is fitted (robustly, LMedS) to the dense flow inside the prior and to
        the flow in the ring around it; a pixel's flow residual under each model, with Gaussian
        noise of at least ``motion_sigma`` px (more where the model fits its region loosely),
        gives the ratio (``hxw float32``, clipped). Where the two motions agree (a static scene,
        a camera panning with nothing else moving) the ratio is ~0 and motion has no say; where
        they differ it separates the object from a background of the same colour. None without
        flow or enough pixels.
        """
        if self._flow is None or self.cfg.motion_weight == 0.0:
            return None
        gx, gy = self._grid
        log_lik = []
        for sel in (fg_sel, bg_sel):
            ys, xs = np.nonzero(sel)
            if len(ys) < 12:
                return None
            take = np.linspace(0, len(ys) - 1, min(len(ys), 400)).astype(int)
            src = np.stack([xs[take], ys[take]], axis=1).astype(np.float32)
            dst = src + self._flow[ys[take], xs[take]]
            model, _ = cv2.estimateAffine2D(src, dst, method=cv2.LMEDS)
            if model is None:
                return None
            ex = model[0, 0] * gx + model[0, 1] * gy + model[0, 2] - gx - self._flow[..., 0]
            ey = model[1, 0] * gx + model[1, 1] * gy + model[1, 2] - gy - self._flow[..., 1]
            r2 = ex * ex + ey * ey
            # Each model's own noise: a rippling lake fits its motion model loosely, and must
            # not look "unlike the background" because of that.
            var = max(self.cfg.motion_sigma ** 2, float(np.median(r2[sel])))
            log_lik.append(-r2 / (2.0 * var) - np.log(var))
        # Mostly evidence against (capped at motion_max_gain for): a pixel moving like the
        # surroundings is not the object, but one moving like the object may be its shadow
        # or reflection (they move along).
        return np.clip(log_lik[0] - log_lik[1], -_MAX_LLR, self.cfg.motion_max_gain).astype(np.float32)

    def _trimap_from_points(self, pos: np.ndarray, neg: np.ndarray, shape) -> np.ndarray:
        cfg = self.cfg
        h, w = shape
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        # Points sampled inside an object sit away from its edge: grow the box by their spread
        # (and at least a fifth of the image: one click says nothing about size) so that the
        # whole object is inside it.
        grow = np.maximum((hi - lo) * cfg.box_grow, 0.2 * max(h, w))
        x0, y0 = np.maximum(np.floor(lo - grow).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(hi + grow).astype(int), [w - 1, h - 1])
        trimap = np.full((h, w), cv2.GC_BGD, np.uint8)
        trimap[y0 : y1 + 1, x0 : x1 + 1] = cv2.GC_PR_BGD
        if len(pos) >= 3:  # between the positives the object is likely
            hull = cv2.convexHull(np.round(pos).astype(np.int32))
            cv2.fillConvexPoly(trimap, hull, cv2.GC_PR_FGD)
        self._stamp(trimap, pos, cv2.GC_PR_FGD, max(cfg.seed_radius * 3, 3))
        self._stamp(trimap, pos, cv2.GC_FGD, cfg.seed_radius)
        self._stamp(trimap, neg, cv2.GC_BGD, cfg.seed_radius)
        return trimap

    @staticmethod
    def _stamp(image: np.ndarray, pts: np.ndarray, value: float, radius: int) -> None:
        h, w = image.shape
        for x, y in pts:
            xi, yi = int(round(x)), int(round(y))
            if 0 <= xi < w and 0 <= yi < h:
                cv2.circle(image, (xi, yi), int(radius), value, thickness=-1)

    # ------------------------------------------------------------------ graph cut and output
    def _graph_cut(self, trimap: np.ndarray, iters: int) -> np.ndarray:
        """GrabCut on the region of interest around the uncertain pixels; ``hxw bool`` foreground."""
        h, w = trimap.shape
        fg_like = (trimap == cv2.GC_FGD) | (trimap == cv2.GC_PR_FGD)
        uncertain = (trimap == cv2.GC_PR_FGD) | (trimap == cv2.GC_PR_BGD)
        if iters == 0 or not uncertain.any():
            return fg_like
        ys, xs = np.nonzero(uncertain | (trimap == cv2.GC_FGD))
        # A margin of definite background gives the background model the local colours.
        margin = int(max(4, 0.25 * max(ys.max() - ys.min(), xs.max() - xs.min())))
        y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, h)
        x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, w)
        roi = trimap[y0:y1, x0:x1].copy()
        fgish = np.any((roi == cv2.GC_FGD) | (roi == cv2.GC_PR_FGD))
        bgish = np.any((roi == cv2.GC_BGD) | (roi == cv2.GC_PR_BGD))
        if not (fgish and bgish):  # GrabCut needs samples of both classes for its two models
            return fg_like
        bgd_model = np.zeros((1, 65), np.float64)
        fgd_model = np.zeros((1, 65), np.float64)
        # GrabCut seeds its GMMs with k-means on OpenCV's RNG: seed it so masks are repeatable.
        cv2.setRNGSeed(self.cfg.seed)
        try:
            cv2.grabCut(self._work[y0:y1, x0:x1], roi, None, bgd_model, fgd_model, iters,
                        cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            return fg_like  # degenerate colour statistics (e.g. a flat image): keep the trimap
        out = np.zeros((h, w), bool)
        out[y0:y1, x0:x1] = (roi == cv2.GC_FGD) | (roi == cv2.GC_PR_FGD)
        return out

    def _keep_supported_components(self, fg: np.ndarray, pos: np.ndarray, neg: np.ndarray,
                                   support: np.ndarray) -> np.ndarray:
        """Keep the components of ``fg`` that hold a positive point or touch ``support``.

        A component next to a negative point and holding no positive one is dropped: the user
        (or another object's points) said that blob is not this object.
        """
        n, comp = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
        if n <= 1:
            return fg
        has_pos = np.zeros(n, bool)
        has_pos[self._component_labels(comp, pos, 0)] = True
        keep = has_pos.copy()
        keep[np.unique(comp[support])] = True
        # Negatives sit in a hole of the mask (their seed disk): look just around the hole.
        for offset in _RING_OFFSETS * (self.cfg.seed_radius + 2):
            near = self._component_labels(comp, neg + offset, 0)
            keep[near[~has_pos[near]]] = False
        keep[0] = False
        return keep[comp]

    @staticmethod
    def _component_labels(comp: np.ndarray, pts: np.ndarray, default: int) -> np.ndarray:
        """Component label at each ``Nx2`` (x, y) point (``default`` outside the image)."""
        h, w = comp.shape
        xi, yi = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        out = np.full(len(pts), default, np.int64)
        out[ok] = comp[yi[ok], xi[ok]]
        return out

    @staticmethod
    def _upsample_logits(fg: np.ndarray, confidence: Optional[np.ndarray], shape) -> np.ndarray:
        """``HxW float32`` logits of the working-resolution mask ``fg`` at the full size.

        The 3x3-blurred mask minus one half (a smooth edge), scaled by the posterior's
        confidence (``|logit|``, at least 0.5; 1 without a posterior), then upsampled linearly:
        positive inside the mask, and where two objects' masks overlap the more certain wins.
        """
        H, W = shape
        soft = cv2.GaussianBlur(fg.astype(np.float32), (3, 3), 0)
        soft -= 0.5
        if confidence is not None:
            soft *= np.maximum(np.abs(confidence), np.float32(0.5))
        else:
            soft *= np.float32(2.0)
        if fg.shape == (H, W):
            return soft
        return cv2.resize(soft, (W, H), interpolation=cv2.INTER_LINEAR)

    @staticmethod
    def _points_inside(mask: np.ndarray, pts: np.ndarray) -> float:
        if len(pts) == 0:
            return 0.0
        h, w = mask.shape
        xi = np.clip(np.round(pts[:, 0]).astype(int), 0, w - 1)
        yi = np.clip(np.round(pts[:, 1]).astype(int), 0, h - 1)
        return float(mask[yi, xi].mean())


def _disk(radius: int) -> np.ndarray:
    r = max(int(radius), 0)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """``hxw float32`` distance to the edge of ``mask``: > 0 inside, < 0 outside (px)."""
    inside = mask.astype(np.uint8)
    return cv2.distanceTransform(inside, cv2.DIST_L2, 3) - cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
