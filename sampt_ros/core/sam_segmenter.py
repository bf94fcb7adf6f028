"""The SAM family prompted with tracked points the way SAM-PT prompts it, every object of a frame batched.

:class:`SamSegmenter` implements the :class:`~sampt_ros.core.types.Segmenter` protocol for
Segment Anything (``segment_anything`` 1.0: ViT-H/L/B), HQ-SAM (``segment_anything_hq`` 0.3:
ViT-H/L/B and Light HQ-SAM's TinyViT) and SAM 2.1 (``sam2`` 1.1.0: Hiera t/s/b+/l). SAM-PT's
pass logic exists once, here; a small adapter per package does what differs (the image
embedding, the prompt encoder + mask decoder call with batched inputs, the upsampling).

Per frame:

* :meth:`SamSegmenter.set_image` computes the image embedding once (the expensive part).
* :meth:`SamSegmenter.segment` runs SAM-PT's passes for every request (object) of the frame,
  following SysCV/sam-pt's ``_apply_sam_to_trajectories``:

  1. pass 1: the prompt's positive points only (possibly none: then SAM's own padding token
     alone), no box, no mask input;
  2. pass 2: all the prompt's points, with pass 1's low-resolution logits as mask input;
  3. ``segmenter.decoder.refinement_iters`` more passes with all points, the previous pass's
     low-resolution logits and (``refinement_box``) the bounding box of the previous pass's
     mask, from its extreme pixels (inclusive indices). A refinement stops for an object when
     its mask has fewer than 2 pixels: the previous pass's outputs stand.

  When the sampler draws no negative points (``sampling.n_negative: 0``) SAM-PT runs one first
  pass with all points instead of passes 1 and 2 (as its code does with
  ``negative_points_per_mask == 0``). Every pass asks for one mask (``multimask_output=False``).
  The last pass's predicted IoU below ``segmenter.decoder.iou_threshold`` empties the mask
  (logits ``-inf``).

  Each pass runs all objects together (``segmenter.decoder.batching``): ``exact`` makes one
  decoder call per prompt length (objects grouped, no padding: the per-object result up to
  summation order); ``padded`` one call per pass, shorter prompts padded with SAM's
  "not a point" label -1 (SAM's decoder attends to those tokens, so the masks differ slightly
  from the per-object ones; docs/sam_family.md gives the measured differences). Objects whose
  refinement stopped keep their last pass by masking on the device (no host branching).
  ``segmenter.decoder.box_source``: ``full`` takes the box and the stop rule from the upsampled
  logits, as SAM-PT; ``low_res`` from the low-resolution (256x256) logits mapped to the
  encoder's input pixels, so only the final pass is upsampled. All of it runs on the device
  with no host synchronisation until the final copy of the masks.

The refinement box is the one SAM-PT gives: the previous mask's extreme pixel indices. SAM-PT
hands it to ``predict_torch`` in the pixels of its frames, which its evaluation has already
resized to SAM's input size (long side 1024), so it is in SAM's input frame there; we map the
box from image pixels into SAM's input frame as SAM's own ``predict`` does, which is the same
box at that size and the right one at any other.

:func:`segment_frame` is the engine's own path on one frame (resize, prompting rules, segment,
resize back, compose) for a given predictor: the reference vector ``shared/vectors/sampt_sam``
is reproduced through it.

Coordinates: points are ``Nx2 float (x, y)`` pixels of the image given to ``set_image`` with
the centre of the top-left pixel at ``(0, 0)``, the convention SAM's prompt encoder uses.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from . import prompting
from .backends._sam_common import SamCheckpointError, autocast_dtype, resolve_device
from .types import POSITIVE, FeatureMap, Segmentation, SegmentRequest, TrackedPoints, as_labels, as_points, \
    as_rgb_image

__all__ = [
    "FAMILIES",
    "SamCheckpointError",
    "SamSegmenter",
    "build_tiny_sam",
    "detect_model_type",
    "load_sam",
    "resolve_device",
    "segment_frame",
]

#: the segmenter kinds this module runs
FAMILIES = ("sam", "sam_hq", "sam2")

#: a mask needs at least this many pixels for another refinement pass (SAM-PT: ``m.sum() < 2`` stops;
#: :func:`_extreme_box` tests exactly this: two pixels span two rows or two columns)
MIN_REFINE_PIXELS = 2


# ============================================================================ adapters
class _SamAdapter:
    """``segment_anything`` / ``segment_anything_hq`` ``SamPredictor``: embedding, decoder, upsampling."""

    def __init__(self, predictor, hq: bool) -> None:
        self.predictor = predictor
        self.model = predictor.model
        self.hq = hq
        pe = self.model.prompt_encoder
        self.input_side = int(self.model.image_encoder.img_size)
        self.low_res = int(pe.mask_input_size[0])
        self.cell = self.input_side / self.low_res  # input pixels per low-resolution cell

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)
        self.original = tuple(int(v) for v in self.predictor.original_size)
        self.input = tuple(int(v) for v in self.predictor.input_size)

    def low_res_valid(self) -> Tuple[int, int]:
        """Low-resolution cells that cover the image (the rest is SAM's padding)."""
        return math.ceil(self.input[0] / self.cell), math.ceil(self.input[1] / self.cell)

    def points_to_input(self, points: np.ndarray) -> np.ndarray:
        """Image pixels -> the encoder's input frame, as ``SamPredictor.predict`` maps them."""
        return self.predictor.transform.apply_coords(np.asarray(points, np.float64), self.original).astype(np.float32)

    def boxes_to_input(self, boxes: torch.Tensor) -> torch.Tensor:
        """``Bx4`` image-pixel boxes -> the input frame (``ResizeLongestSide.apply_boxes``), on the device."""
        (h, w), (nh, nw) = self.original, self.input
        return boxes * boxes.new_tensor([nw / w, nh / h, nw / w, nh / h])

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        # segment_anything's PromptEncoder._embed_points, written with torch.where instead of
        # boolean indexing (which synchronises with the host on a GPU); the same arithmetic.
        pe = self.model.prompt_encoder
        coords = coords + 0.5
        if pad:
            coords = torch.cat([coords, coords.new_zeros((coords.shape[0], 1, 2))], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        emb = pe.pe_layer.forward_with_coords(coords, pe.input_image_size)
        lab = labels.unsqueeze(-1)
        emb = torch.where(lab == 0, emb + pe.point_embeddings[0].weight, emb)
        emb = torch.where(lab == 1, emb + pe.point_embeddings[1].weight, emb)
        return torch.where(lab == -1, torch.zeros_like(emb) + pe.not_a_point_embed.weight, emb)

    def decode(self, coords, labels, boxes, mask_input):
        """One mask-decoder call for a batch of prompts: low-res logits ``Bx1xhxw``, IoU ``B``."""
        pe = self.model.prompt_encoder
        sparse = self._embed_points(coords, labels, pad=boxes is None)
        if boxes is not None:
            sparse = torch.cat([sparse, pe._embed_boxes(boxes)], dim=1)
        b = coords.shape[0]
        if mask_input is not None:
            dense = pe._embed_masks(mask_input)
        else:
            dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b, -1, *pe.image_embedding_size)
        extra = dict(hq_token_only=False, interm_embeddings=self.predictor.interm_features) if self.hq else {}
        low, iou = self.model.mask_decoder(
            image_embeddings=self.predictor.features, image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False, **extra)
        return low, iou[:, 0]

    @staticmethod
    def feedback(low: torch.Tensor) -> torch.Tensor:
        return low

    def upsample(self, low: torch.Tensor) -> torch.Tensor:
        """``Bx1xhxw`` -> ``BxHxW`` logits at the image size (SAM's ``postprocess_masks``)."""
        return self.model.postprocess_masks(low, self.input, self.original)[:, 0]

    def embedding(self):
        return self.predictor.features

    def features(self) -> FeatureMap:
        feats = self.predictor.features[0]
        grid = int(feats.shape[-1])
        valid = (max(1, -(-self.input[0] * grid // self.input_side)), max(1, -(-self.input[1] * grid // self.input_side)))
        return FeatureMap(feats, self.original, valid)


class _Sam2Adapter:
    """``sam2``'s ``SAM2ImagePredictor`` (SAM 2.1): the image is squashed to a square, no padding."""

    hq = False

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.model = predictor.model
        self.input_side = int(self.model.image_size)
        self.low_res = int(self.model.sam_prompt_encoder.mask_input_size[0])
        self.cell = self.input_side / self.low_res
        s = self.input_side
        # the predictor's feature sizes assume a 1024 input; derive them from the model
        self.predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)
        self.original = (int(image.shape[0]), int(image.shape[1]))

    def low_res_valid(self) -> Tuple[int, int]:
        return self.low_res, self.low_res

    def points_to_input(self, points: np.ndarray) -> np.ndarray:
        h, w = self.original
        return (np.asarray(points, np.float64) / np.array([w, h]) * self.input_side).astype(np.float32)

    def boxes_to_input(self, boxes: torch.Tensor) -> torch.Tensor:
        h, w = self.original
        s = self.input_side
        return boxes * boxes.new_tensor([s / w, s / h, s / w, s / h])

    def decode(self, coords, labels, boxes, mask_input):
        # as SAM2ImagePredictor._predict: a box is two points with labels 2 and 3, placed first
        if boxes is not None:
            coords = torch.cat([boxes.reshape(-1, 2, 2), coords], dim=1)
            labels = torch.cat([labels.new_tensor([[2, 3]]).expand(boxes.shape[0], 2), labels], dim=1)
        pe = self.model.sam_prompt_encoder
        sparse, dense = pe(points=(coords, labels), boxes=None, masks=mask_input)
        feats = self.predictor._features
        low, iou, _, _ = self.model.sam_mask_decoder(
            image_embeddings=feats["image_embed"][-1:], image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
            repeat_image=coords.shape[0] > 1, high_res_features=[f[-1:] for f in feats["high_res_feats"]])
        return low, iou[:, 0]

    @staticmethod
    def feedback(low: torch.Tensor) -> torch.Tensor:
        return torch.clamp(low, -32.0, 32.0)  # as the predictor returns them for the next pass

    def upsample(self, low: torch.Tensor) -> torch.Tensor:
        return self.predictor._transforms.postprocess_masks(low, self.original)[:, 0]

    def embedding(self):
        return self.predictor._features["image_embed"]

    def features(self) -> FeatureMap:
        feats = self.predictor._features["image_embed"][0]
        return FeatureMap(feats, self.original, (int(feats.shape[-2]), int(feats.shape[-1])))


def predictor_family(predictor) -> str:
    """``sam``, ``sam_hq`` or ``sam2`` for a predictor object of one of the official packages."""
    module = type(predictor).__module__ or ""
    if module.startswith("sam2"):
        return "sam2"
    if module.startswith("segment_anything_hq"):
        return "sam_hq"
    if module.startswith("segment_anything"):
        return "sam"
    model = getattr(predictor, "model", None)
    if model is not None and hasattr(model, "sam_mask_decoder"):
        return "sam2"
    if model is not None and hasattr(getattr(model, "mask_decoder", None), "hf_token"):
        return "sam_hq"
    if model is not None and hasattr(model, "mask_decoder") and hasattr(predictor, "transform"):
        return "sam"
    raise ValueError(f"predictor must be a segment_anything / segment_anything_hq SamPredictor or a "
                     f"sam2 SAM2ImagePredictor, got {type(predictor).__name__}")


def _adapter(predictor, family: str):
    return _Sam2Adapter(predictor) if family == "sam2" else _SamAdapter(predictor, hq=family == "sam_hq")


def build_predictor(config, family: str):
    """Load the model ``config.segmenter.<family>`` names and wrap it in its package's predictor."""
    if family == "sam":
        from segment_anything import SamPredictor

        from .backends.sam import load_model
    elif family == "sam_hq":
        from segment_anything_hq import SamPredictor

        from .backends.sam_hq import load_model
    elif family == "sam2":
        from sam2.sam2_image_predictor import SAM2ImagePredictor as SamPredictor

        from .backends.sam2 import load_model
    else:
        raise ValueError(f"segmenter.kind {family!r} is not a SAM-family segmenter ({', '.join(FAMILIES)})")
    return SamPredictor(load_model(getattr(config.segmenter, family)))


# ============================================================================ the segmenter
class SamSegmenter:
    """SAM-PT's prompt passes on one image embedding per frame, every object of a pass batched.

    Args:
        config: the validated :class:`~sampt_ros.core.config.Config`: ``segmenter.<kind>`` the
            model (``sam``, ``sam_hq`` or ``sam2``), ``segmenter.decoder`` the passes,
            ``sampling.n_negative`` whether pass 1 uses the positives only (SAM-PT).
        predictor: a ready ``SamPredictor`` (segment_anything or segment_anything_hq) or
            ``SAM2ImagePredictor``; its family then picks the settings section. When None, the
            model ``segmenter.kind`` names is loaded.

    Attributes:
        trace: None, or a list that receives one dict per answered request with the per-pass
            trace (``passes``, ``iou``, ``area``, ``box`` per executed pass) - for tests; it
            synchronises with the device after every pass.
    """

    #: SAM-PT segments every frame from its points alone
    uses_prior = False

    def __init__(self, config, predictor: Optional[Any] = None) -> None:
        seg_cfg = config.segmenter
        if predictor is None:
            family = seg_cfg.kind
            if family not in FAMILIES:
                raise ValueError(f"segmenter.kind {family!r} is not a SAM-family segmenter ({', '.join(FAMILIES)})")
            predictor = build_predictor(config, family)
        else:
            family = predictor_family(predictor)
        self.family = family
        self.section = getattr(seg_cfg, family)
        self.decoder = seg_cfg.decoder
        self.two_pass = config.sampling.n_negative > 0
        self.predictor = predictor
        self.adapter = _adapter(predictor, family)
        try:
            self._device = next(self.adapter.model.parameters()).device
        except StopIteration:  # pragma: no cover - every SAM has parameters
            self._device = torch.device("cpu")
        self._dtype = autocast_dtype(self.section.precision, self._device, f"{self.section.path}.precision")
        self._counts = {"embeddings_computed": 0, "decoder_calls": 0, "segment_calls": 0, "segmentations": 0,
                        "prompt_passes": 0}
        self._image_hw: Optional[Tuple[int, int]] = None
        self.trace: Optional[list] = None

    # ------------------------------------------------------------------ protocol
    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def model(self):
        return self.adapter.model

    def stats(self) -> Dict[str, float]:
        """``embeddings_computed`` (one per set_image), ``decoder_calls`` (mask-decoder calls, each for a
        batch of objects), ``prompt_passes`` (SAM-PT passes), ``segment_calls``, ``segmentations`` (objects)."""
        return dict(self._counts)

    def reset(self) -> None:
        """Forget the current image (SAM keeps no per-object or per-stream state)."""
        self._image_hw = None

    def remove_object(self, object_id: int) -> None:
        """SAM keeps no per-object state."""

    def _autocast(self):
        if self._dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._device.type, dtype=self._dtype)

    def set_image(self, image: np.ndarray) -> None:
        """Compute the embedding of an ``HxWx3 uint8`` RGB image (once per frame)."""
        image = as_rgb_image(image)
        self._image_hw = None  # if encoding fails, segment() must not use the previous frame
        with torch.inference_mode(), self._autocast():
            self.adapter.set_image(image)
        self._image_hw = (int(image.shape[0]), int(image.shape[1]))
        self._counts["embeddings_computed"] += 1

    def features(self) -> Optional[FeatureMap]:
        """The image embedding (``C x h x w`` on the model's device) as a :class:`FeatureMap`."""
        if self._image_hw is None:
            return None
        return self.adapter.features()

    def warmup(self, image_size: Tuple[int, int] = (480, 640), objects: int = 2, frames: int = 2) -> float:
        """Run a few frames on a synthetic image so that lazy initialisation, cuDNN autotuning and
        ``torch.compile`` happen now (the node calls this at lifecycle configure). Counters and the
        current image are left as they were. Returns the seconds it took."""
        import time

        t0 = time.perf_counter()
        counts = dict(self._counts)
        h, w = image_size
        yy, xx = np.mgrid[0:h, 0:w]
        image = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) % 256)],
                         axis=-1).astype(np.uint8)
        rng = np.random.default_rng(0)
        for _ in range(frames):
            self.set_image(image)
            reqs = []
            for k in range(objects):
                pts = rng.uniform([0, 0], [w - 1, h - 1], (9, 2))
                reqs.append(SegmentRequest(k + 1, pts, np.array([1] * 8 + [0])))
            self.segment(reqs)
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        self._counts = counts
        self._image_hw = None
        return time.perf_counter() - t0

    # ------------------------------------------------------------------ segmentation
    def segment(self, requests: Sequence[SegmentRequest]) -> List[Segmentation]:
        """Every request's logits (``HxW float32`` at the ``set_image`` size, ``-inf`` when emptied),
        score (predicted IoU clipped to 0..1) and raw predicted IoU."""
        if self._image_hw is None:
            raise RuntimeError("SamSegmenter.segment() called before set_image()")
        requests = list(requests)
        self._counts["segment_calls"] += 1
        if not requests:
            return []
        prompts = []
        for req in requests:
            pts = as_points(req.points, "request points")
            prompts.append((pts, as_labels(req.labels, len(pts), "request labels")))
        out: List[Optional[Segmentation]] = [None] * len(requests)
        called = [i for i, (p, _) in enumerate(prompts) if len(p)]
        for i in range(len(requests)):
            if i not in called:  # no point at all: no SAM call, no mask (SAM-PT)
                out[i] = Segmentation(prompting.empty_logits(self._image_hw), 0.0, float("-inf"))
        if called:
            with torch.inference_mode(), self._autocast():
                logits, iou = self._run([prompts[i] for i in called])
            self._counts["segmentations"] += len(called)
            for j, i in enumerate(called):
                raw = float(iou[j])
                score = float(min(max(raw, 0.0), 1.0)) if np.isfinite(raw) else 0.0
                out[i] = Segmentation(logits[j], score, raw)
        return out  # type: ignore[return-value]

    def _upload(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array))
        if self._device.type == "cuda":
            return t.pin_memory().to(self._device, non_blocking=True)
        return t.to(self._device)

    def _run(self, prompts: List[Tuple[np.ndarray, np.ndarray]]) -> Tuple[np.ndarray, np.ndarray]:
        """SAM-PT's passes for every prompt at once; ``(B x H x W float32 logits, B float IoU)`` on the host."""
        ad, dec = self.adapter, self.decoder
        b = len(prompts)
        coords = [ad.points_to_input(p) for p, _ in prompts]
        labels = [lab.astype(np.int32) for _, lab in prompts]
        pos = [lab == POSITIVE for lab in labels]
        n_all = [len(c) for c in coords]
        n_pos = [int(m.sum()) for m in pos]

        def pack(lengths, select):
            n = max(lengths)
            xy = np.zeros((b, n, 2), np.float32)
            lab = np.full((b, n), -1, np.int32)  # SAM's "not a point"
            for i in range(b):
                m = select(i)
                xy[i, : lengths[i]] = coords[i][m]
                lab[i, : lengths[i]] = labels[i][m]
            return xy, lab

        everything = slice(None)
        xy_all, lab_all = pack(n_all, lambda i: everything)
        prompt_all = (self._upload(xy_all), self._upload(lab_all), n_all, self._groups(n_all))
        if self.two_pass:
            xy_pos, lab_pos = pack(n_pos, lambda i: pos[i])
            prompt_pos = (self._upload(xy_pos), self._upload(lab_pos), n_pos, self._groups(n_pos))

        trace = [dict(passes=0, iou=[], area=[], box=[]) for _ in range(b)] if self.trace is not None else None
        full_boxes = dec.box_source == "full"

        def record(low, iou, full, box, active):
            if trace is None:
                return
            up = full if full is not None else ad.upsample(low)
            area = (up > 0).flatten(1).sum(1).cpu().numpy()
            for i in range(b):
                if bool(active[i]):
                    t = trace[i]
                    t["passes"] += 1
                    t["iou"].append(float(iou[i]))
                    t["area"].append(int(area[i]))
                    t["box"].append(None if box is None else box[i].float().cpu().numpy())

        everyone = torch.ones(b, dtype=torch.bool, device=self._device)
        if self.two_pass:
            low, iou = self._decode(prompt_pos, None, None)
            record(low, iou, None, None, everyone)
            low, iou = self._decode(prompt_all, None, ad.feedback(low))
        else:
            low, iou = self._decode(prompt_all, None, None)
        self._counts["prompt_passes"] += 1 + int(self.two_pass)
        need_full = full_boxes and dec.refinement_iters > 0
        full = ad.upsample(low) if need_full else None
        record(low, iou, full, None, everyone)

        stopped = torch.zeros(b, dtype=torch.bool, device=self._device)
        for _ in range(dec.refinement_iters):
            if full_boxes:
                # SAM-PT: fewer than MIN_REFINE_PIXELS (2) pixels stop the refinement
                box_img, _, two = _extreme_box(full)
                box_in = ad.boxes_to_input(box_img)
                stopped = stopped | ~two
            else:
                vh, vw = ad.low_res_valid()
                cells, one, _ = _extreme_box(low[:, 0, :vh, :vw])
                # a mask has pixels only where a low-resolution cell is positive (bilinear upsampling)
                box_in = _cells_to_input(cells, ad.cell)
                box_img = None
                stopped = stopped | ~one
            box = box_in if dec.refinement_box else None
            new_low, new_iou = self._decode(prompt_all, box, ad.feedback(low))
            self._counts["prompt_passes"] += 1
            keep = stopped.view(b, 1, 1, 1)
            low = torch.where(keep, low, new_low)
            iou = torch.where(stopped, iou, new_iou)
            if full is not None:
                full = torch.where(stopped.view(b, 1, 1), full, ad.upsample(new_low))
            if trace is not None:
                shown = None if not dec.refinement_box else (box_img if box_img is not None else box_in)
                record(low, iou, full, shown, ~stopped)

        logits = (full if full is not None else ad.upsample(low)).float()
        iou = iou.float()
        if dec.iou_threshold > 0.0:
            logits = torch.where((iou < dec.iou_threshold).view(b, 1, 1), torch.full_like(logits, -math.inf), logits)
        logits_host = logits.cpu().numpy()  # the one synchronisation of the frame
        iou_host = iou.cpu().numpy()
        if trace is not None:
            self.trace.extend(trace)
        return logits_host, iou_host

    def _groups(self, lengths: List[int]):
        """How the objects split into decoder calls: ``[(length, index tensor or None)]``."""
        if self.decoder.batching == "padded" or len(set(lengths)) == 1:
            return [(max(lengths), None)]
        groups: Dict[int, List[int]] = {}
        for i, n in enumerate(lengths):
            groups.setdefault(n, []).append(i)
        return [(n, self._upload(np.asarray(idx, np.int64))) for n, idx in sorted(groups.items())]

    def _decode(self, prompt, boxes, mask_input):
        """One pass for every object: one decoder call per group; ``(Bx1xhxw low-res, B IoU)``."""
        xy, lab, _, groups = prompt
        if len(groups) == 1 and groups[0][1] is None:
            n = groups[0][0]
            self._counts["decoder_calls"] += 1
            return self.adapter.decode(xy[:, :n], lab[:, :n], boxes, mask_input)
        low = iou = None
        for n, idx in groups:
            self._counts["decoder_calls"] += 1
            g_low, g_iou = self.adapter.decode(xy[idx, :n], lab[idx, :n], None if boxes is None else boxes[idx],
                                               None if mask_input is None else mask_input[idx])
            if low is None:
                low = g_low.new_empty((xy.shape[0],) + tuple(g_low.shape[1:]))
                iou = g_iou.new_empty((xy.shape[0],))
            low[idx] = g_low
            iou[idx] = g_iou
        return low, iou


def _extreme_box(values: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixels ``> 0`` of ``BxHxW`` logits: ``(Bx4 float32 [x0, y0, x1, y1] inclusive extreme indices,
    B bool "at least one", B bool "at least two")``, on the device.

    Two reductions over the logits (row and column maxima) give all of it: a mask has at least two
    pixels exactly when it spans at least two rows or two columns. An empty mask gives a
    meaningless (but finite) box; callers mask it out.
    """
    rows = values.amax(dim=2) > 0
    cols = values.amax(dim=1) > 0
    n_rows, n_cols = rows.sum(dim=1), cols.sum(dim=1)
    rows, cols = rows.to(torch.uint8), cols.to(torch.uint8)
    h, w = values.shape[1], values.shape[2]
    y0 = rows.argmax(dim=1)
    y1 = (h - 1) - rows.flip(1).argmax(dim=1)
    x0 = cols.argmax(dim=1)
    x1 = (w - 1) - cols.flip(1).argmax(dim=1)
    box = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
    return box, n_rows >= 1, (n_rows >= 2) | (n_cols >= 2)


def _cells_to_input(cells: torch.Tensor, cell: float) -> torch.Tensor:
    """Low-resolution cell indices ``[c0, r0, c1, r1]`` -> the input-frame pixels they cover (inclusive)."""
    return cells * cell + cells.new_tensor([0.0, 0.0, cell - 1.0, cell - 1.0])


# ============================================================================ one frame, the engine's way
def segment_frame(predictor, image: np.ndarray, tracks: Mapping[int, Tuple[Any, Any, Any]], cfg,
                  trace: Optional[list] = None, segmenter: Optional[SamSegmenter] = None):
    """SAM-PT on one frame through the engine's own code path.

    Args:
        predictor: a ``segment_anything`` / ``segment_anything_hq`` ``SamPredictor`` or a
            ``sam2`` ``SAM2ImagePredictor`` (ignored when ``segmenter`` is given).
        image: ``HxWx3 uint8`` RGB.
        tracks: ``{object_id: (points Nx2 (x, y) px, labels N 1/0, visibility N 0..1)}`` as the
            tracker outputs them (before the visibility threshold and the border rule).
        cfg: the validated config (``engine.processing_long_side``, ``engine.overlap``,
            ``prompting.*``, ``segmenter.decoder``, ``sampling.n_negative``).
        trace: a list that receives every answered object's per-pass trace (see
            :attr:`SamSegmenter.trace`), in ascending object id.
        segmenter: a :class:`SamSegmenter` to use instead of wrapping ``predictor``.

    Returns:
        ``(label, logits, iou)``: ``HxW uint8`` (0 background, k object id), ``{id: HxW float32}``
        (``-inf`` where emptied), ``{id: float}`` (the last pass's raw predicted IoU, ``-inf``
        where SAM was not called) - all at the input image's size.

    The steps are the engine's (:meth:`~sampt_ros.core.engine.SamPtEngine.step`): resize the
    frame to ``engine.processing_long_side`` (:func:`prompting.resize_long_side`) and the points
    with it (:func:`prompting.scale_points`), :func:`prompting.build_requests`,
    ``segmenter.set_image`` + ``segmenter.segment``, :func:`prompting.resize_logits` back to the
    input size and :func:`prompting.compose_labels` with ``engine.overlap``.
    """
    image = as_rgb_image(image)
    if any(int(oid) > 255 or int(oid) < 1 for oid in tracks):
        raise ValueError("object ids must be 1..255 for a uint8 label image")
    seg = segmenter if segmenter is not None else SamSegmenter(cfg, predictor=predictor)
    in_size = (int(image.shape[0]), int(image.shape[1]))
    long_side = cfg.engine.processing_long_side
    proc_size = prompting.processing_size(in_size, long_side)
    proc = prompting.resize_long_side(image, long_side)
    tracked: Dict[int, TrackedPoints] = {}
    labels: Dict[int, np.ndarray] = {}
    for oid, (points, lab, vis) in tracks.items():
        pts = as_points(points, f"object {oid} points")
        tracked[int(oid)] = TrackedPoints(prompting.scale_points(pts, in_size, proc_size),
                                          np.asarray(vis, np.float64).reshape(-1))
        labels[int(oid)] = as_labels(lab, len(pts), f"object {oid} labels")
    p = cfg.prompting
    requests, _ = prompting.build_requests(tracked, labels, proc_size, p)
    seg.set_image(proc)
    batch = [req for _, req in sorted(requests.items()) if req is not None]
    old_trace = seg.trace
    seg.trace = trace
    try:
        answers = seg.segment(batch)
    finally:
        seg.trace = old_trace
    logits: Dict[int, np.ndarray] = {oid: prompting.empty_logits(in_size) for oid in tracked}
    iou: Dict[int, float] = {oid: float("-inf") for oid in tracked}
    for req, ans in zip(batch, answers):
        logits[req.object_id] = prompting.resize_logits(np.asarray(ans.logits, np.float32), in_size)
        iou[req.object_id] = float(ans.predicted_iou)
    label = prompting.compose_labels(logits, in_size, cfg.engine.overlap).astype(np.uint8)
    return label, logits, iou


# ============================================================================ models (compatibility helpers)
def build_tiny_sam(seed: int = 0):
    """A tiny, randomly initialised Segment Anything with the real architecture (tests, benchmarks).

    256 px input, 16 px patches (a 16x16 embedding), width 64, 2 blocks (the second global);
    prompt/decoder width 32; 64x64 low-resolution logits. Deterministic in ``seed``; torch's
    global random state is left alone.
    """
    from .backends.sam import build_tiny_sam as build

    return build(seed)


def detect_model_type(state_dict: Mapping[str, Any]) -> str:
    """The ``segment_anything`` model type (``vit_h``, ``vit_l``, ``vit_b``, ``tiny``) of a state dict;
    :class:`SamCheckpointError` naming the model otherwise (HQ-SAM, MobileSAM, SAM 2, other)."""
    from .backends._sam_common import identify, model_name

    family, kind = identify(state_dict)
    if family == "sam" and kind in ("vit_h", "vit_l", "vit_b", "tiny"):
        return kind
    if family == "unknown":
        raise SamCheckpointError(f"this is {kind}")
    raise SamCheckpointError(f"this is a {model_name(family, kind)} checkpoint, not Segment Anything")


def load_sam(model_type: str, checkpoint: Optional[str], device: str = "auto", allow_random_weights: bool = False):
    """Build ``segment_anything`` model ``model_type`` and load ``checkpoint`` strictly and safely."""
    from .backends.sam import SamConfig, load_model

    return load_model(SamConfig(model_type=model_type, checkpoint=checkpoint or "", device=device,
                                allow_random_weights=allow_random_weights))
