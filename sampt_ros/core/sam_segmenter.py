"""Segment Anything prompted with tracked points, the way SAM-PT prompts it.

:class:`SamSegmenter` implements the :class:`~sampt_ros.core.types.Segmenter` protocol on top of
``segment_anything`` 1.0's ``SamPredictor``:

* :meth:`SamSegmenter.set_image` runs SAM's image encoder once per frame (the expensive part:
  ViT-H ~450 ms on a GPU); every object and every decoder pass of that frame reuses the embedding.
* :meth:`SamSegmenter.segment` prompts the mask decoder for ONE object, as SAM-PT does:

  1. pass 1: the positive points only;
  2. pass 2: positives and negatives, with pass 1's low-resolution mask logits as ``mask_input``;
  3. ``refinement_iters`` more pass-2 iterations, each fed the previous pass's logits and (when
     ``refinement_box``) the bounding box of the current mask.

  Every pass asks for a single mask (``multimask_output=False``), as SAM-PT's code does: with
  several points the prompt is not ambiguous, and single-mask output keeps the logits chain simple.

:func:`load_sam` builds the official ViT-H/L/B architectures and loads the official checkpoints
without unpickling arbitrary objects; :func:`build_tiny_sam` builds a tiny random SAM for tests.

Coordinates: points are ``Nx2 float (x, y)`` pixels of the original image with the centre of the
top-left pixel at ``(0, 0)`` - the convention SAM's prompt encoder uses (it adds 0.5 itself).
"""

from __future__ import annotations

import os
import re
from functools import partial
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from segment_anything import SamPredictor, sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from .types import POSITIVE, as_labels, as_points, as_rgb_image

__all__ = [
    "OFFICIAL_CHECKPOINTS",
    "SamCheckpointError",
    "SamSegmenter",
    "build_tiny_sam",
    "detect_model_type",
    "load_sam",
    "resolve_device",
]

#: file names of the official Segment Anything checkpoints, by model type
OFFICIAL_CHECKPOINTS: Dict[str, str] = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}

#: (image encoder embedding width, number of ViT blocks) of each architecture we can build
_ENCODER_SHAPES: Dict[Tuple[int, int], str] = {
    (1280, 32): "vit_h",
    (1024, 24): "vit_l",
    (768, 12): "vit_b",
    (64, 2): "tiny",
}

_CHECKPOINT_KEY = "segmenter.sam.checkpoint"
_MODEL_TYPE_KEY = "segmenter.sam.model_type"
_RANDOM_KEY = "segmenter.sam.allow_random_weights"

# A mask with fewer pixels than this has no meaningful bounding box; refining it further only
# repeats an empty answer (SAM-PT stops refining there too).
_MIN_REFINE_PIXELS = 2


class SamCheckpointError(ValueError):
    """A SAM checkpoint is missing, unreadable, or does not match the configured model type."""


# --------------------------------------------------------------------------------------------
# Model construction and loading
# --------------------------------------------------------------------------------------------


def resolve_device(device: str) -> torch.device:
    """``'auto'`` -> ``cuda`` when available, else ``cpu``; ``cuda[:N]`` must be available."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"segmenter.sam.device is {device!r} but torch sees no CUDA device; "
            "use 'auto' or 'cpu'"
        )
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"segmenter.sam.device {device!r} is not a torch device: {exc}") from None


def build_tiny_sam(seed: int = 0) -> Sam:
    """A tiny, randomly initialised SAM with the real architecture, for tests and benchmarks.

    Image encoder: ViT with 256 px input, 16 px patches (a 16x16 embedding), width 64, 2 blocks
    (the second with global attention); prompt/decoder width 32. Its low-resolution mask logits
    are 64x64 (SAM's are 256x256). Construction is deterministic in ``seed`` and does not
    disturb torch's global random state.
    """
    img_size, patch, prompt_dim = 256, 16, 32
    grid = img_size // patch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = Sam(
            image_encoder=ImageEncoderViT(
                img_size=img_size,
                patch_size=patch,
                embed_dim=64,
                depth=2,
                num_heads=2,
                mlp_ratio=2.0,
                out_chans=prompt_dim,
                qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True,
                window_size=4,
                global_attn_indexes=(1,),
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=prompt_dim,
                image_embedding_size=(grid, grid),
                input_image_size=(img_size, img_size),
                mask_in_chans=8,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=64, num_heads=2),
                transformer_dim=prompt_dim,
                iou_head_depth=3,
                iou_head_hidden_dim=32,
            ),
        )
    return sam.eval()


def _build_architecture(model_type: str) -> Sam:
    if model_type == "tiny":
        return build_tiny_sam()
    # checkpoint=None: segment_anything then builds random weights and unpickles nothing.
    return sam_model_registry[model_type](checkpoint=None).eval()


def detect_model_type(state_dict: Mapping[str, Any]) -> str:
    """Guess which SAM a state dict belongs to from its keys and shapes.

    Returns ``vit_h``, ``vit_l``, ``vit_b`` or ``tiny``; raises :class:`SamCheckpointError`
    with a description for anything else (MobileSAM, HQ-SAM, SAM 2, other models).
    """
    keys = list(state_dict.keys())
    if any(k.startswith("image_encoder.trunk.") or k.startswith("sam_mask_decoder.") for k in keys):
        raise SamCheckpointError("this looks like a SAM 2 checkpoint; sampt_ros runs Segment Anything 1")
    if any(k.startswith("image_encoder.layers.") for k in keys):
        raise SamCheckpointError("this looks like a MobileSAM (TinyViT encoder) checkpoint, not an official SAM ViT")
    weight = state_dict.get("image_encoder.patch_embed.proj.weight")
    if not isinstance(weight, torch.Tensor) or weight.ndim != 4:
        sample = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
        raise SamCheckpointError(
            f"this is not a Segment Anything state dict (no image_encoder.patch_embed.proj.weight; "
            f"{len(keys)} keys: {sample})"
        )
    block_ids = {int(m.group(1)) for k in keys if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
    width, depth = int(weight.shape[0]), len(block_ids)
    kind = _ENCODER_SHAPES.get((width, depth))
    if kind is None:
        raise SamCheckpointError(
            f"unknown SAM image encoder (width {width}, {depth} blocks); "
            f"known: vit_h (1280, 32), vit_l (1024, 24), vit_b (768, 12)"
        )
    return kind


def _read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    try:
        # weights_only: tensors and plain containers only - a checkpoint cannot run code on load.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - malformed files raise anything from the unpickler
        text = str(exc).strip()
        if "weights only load failed" in text.lower():
            reason = "it holds pickled Python objects besides tensors, which are refused (loading them could run code)"
        else:
            reason = f"it is corrupt or not a torch file ({type(exc).__name__}: {text.splitlines()[0][:200] if text else ''})"
        raise SamCheckpointError(
            f"{path}: cannot be read as a plain state dict with torch.load(weights_only=True): {reason}"
        ) from None
    # Fine-tuning scripts often wrap the state dict; the official files are the bare dict.
    if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("model", "state_dict"):
        obj = next(iter(obj.values()))
    if not isinstance(obj, dict):
        raise SamCheckpointError(f"{path}: expected a state dict (a dict of tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise SamCheckpointError(
            f"{path}: expected a state dict (a dict of tensors); {len(bad)} entries are not tensors, "
            f"e.g. {bad[0]!r}"
        )
    return obj


def load_sam(
    model_type: str,
    checkpoint: Optional[str],
    device: str = "auto",
    allow_random_weights: bool = False,
) -> Sam:
    """Build SAM ``model_type`` and load ``checkpoint`` strictly, on ``device``.

    Args:
        model_type: ``vit_h``, ``vit_l``, ``vit_b`` (official checkpoints) or ``tiny``
            (:func:`build_tiny_sam`; random weights, or a checkpoint saved from it).
        checkpoint: path to the official ``sam_vit_*.pth`` file; empty/None for random weights.
        device: ``auto`` (cuda when available, else cpu), ``cpu``, ``cuda`` or ``cuda:N``.
        allow_random_weights: without a checkpoint, build random weights instead of failing
            (benchmarks and tests only - the masks are meaningless).

    Returns:
        The model in eval mode on ``device``.

    Raises:
        FileNotFoundError: the checkpoint path does not exist.
        SamCheckpointError: no checkpoint and random weights not allowed; an unreadable file; not
            a state dict; a checkpoint of another model type; keys/shapes that do not match.
        ValueError: unknown model type or device.
    """
    known = sorted(OFFICIAL_CHECKPOINTS) + ["tiny"]
    if model_type not in known:
        raise ValueError(f"{_MODEL_TYPE_KEY} must be one of {known}, got {model_type!r}")
    torch_device = resolve_device(device)
    official = ", ".join(f"{k}: {v}" for k, v in OFFICIAL_CHECKPOINTS.items())

    if not checkpoint:
        if not allow_random_weights:
            raise SamCheckpointError(
                f"no SAM checkpoint: set {_CHECKPOINT_KEY} to the official file for {_MODEL_TYPE_KEY} "
                f"{model_type!r} ({official}; from github.com/facebookresearch/segment-anything), "
                f"or set {_RANDOM_KEY}: true to run with random weights (benchmarks/tests only)"
            )
        return _build_architecture(model_type).to(torch_device)

    path = os.path.expanduser(str(checkpoint))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"SAM checkpoint not found: {path!r}. Set {_CHECKPOINT_KEY} to the official file for "
            f"{_MODEL_TYPE_KEY} {model_type!r} ({official})"
        )
    state_dict = _read_state_dict(path)
    found = detect_model_type(state_dict)
    if found != model_type:
        raise SamCheckpointError(
            f"{path}: this looks like {found}, config says {model_type} "
            f"(set {_MODEL_TYPE_KEY}: {found}, or point {_CHECKPOINT_KEY} at the {model_type} file)"
        )
    sam = _build_architecture(model_type)
    try:
        sam.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        detail = " ".join(lines[1:3])[:400] if len(lines) > 1 else lines[0][:400]
        raise SamCheckpointError(f"{path}: does not match the {model_type} architecture: {detail}") from None
    return sam.to(torch_device).eval()


# --------------------------------------------------------------------------------------------
# The segmenter
# --------------------------------------------------------------------------------------------


class SamSegmenter:
    """SAM prompted with tracked points the way SAM-PT prompts it; one image embedding per frame.

    Args:
        config: the validated :class:`~sampt_ros.core.config.Config` (``segmenter.sam`` for the
            model, ``segmenter.decoder`` for the prompt passes).
        predictor: an object with ``SamPredictor``'s ``set_image(image)``, ``features`` and
            ``predict(point_coords, point_labels, box, mask_input, multimask_output, return_logits)``;
            when None, one is built from the config with :func:`load_sam`.
    """

    #: SAM-PT segments every frame from its points alone
    uses_prior = False

    def __init__(self, config, predictor: Optional[Any] = None) -> None:
        self.model_cfg = config.segmenter.sam
        self.decoder = config.segmenter.decoder
        if predictor is None:
            m = self.model_cfg
            predictor = SamPredictor(load_sam(m.model_type, m.checkpoint, m.device, m.allow_random_weights))
        for name in ("set_image", "predict"):
            if not callable(getattr(predictor, name, None)):
                raise ValueError(f"predictor must have a {name}() method like segment_anything.SamPredictor")
        self.predictor = predictor
        self._counts = {"embeddings_computed": 0, "decoder_calls": 0}
        self._image_hw: Optional[Tuple[int, int]] = None

    @property
    def device(self) -> str:
        return str(getattr(self.predictor, "device", "cpu"))

    def stats(self) -> Dict[str, float]:
        """``embeddings_computed`` (one per set_image) and ``decoder_calls`` (mask-decoder passes)."""
        return dict(self._counts)

    def reset(self) -> None:
        self._image_hw = None

    def remove_object(self, object_id: int) -> None:
        """SAM keeps no per-object state."""

    def set_image(self, image: np.ndarray) -> None:
        """Compute the embedding of an ``HxWx3 uint8`` RGB image (once per frame)."""
        image = as_rgb_image(image)
        # Forget the previous frame first: if encoding fails, segment() must not use a stale one.
        self._image_hw = None
        with torch.inference_mode():
            self.predictor.set_image(image)
        self._image_hw = (int(image.shape[0]), int(image.shape[1]))
        self._counts["embeddings_computed"] += 1

    def features(self):
        """The image embedding (``C x 64 x 64`` on the model's device) as a :class:`FeatureMap`."""
        from .types import FeatureMap

        feats = getattr(self.predictor, "features", None)
        if feats is None or self._image_hw is None:
            return None
        h, w = self.predictor.input_size
        grid = feats.shape[-1]
        size = self.predictor.model.image_encoder.img_size
        valid = (max(1, -(-h * grid // size)), max(1, -(-w * grid // size)))
        return FeatureMap(feats[0], self._image_hw, valid)

    def segment(self, requests) -> list:
        """Every request's logits (``HxW float32``, ``-inf`` when emptied) and predicted IoU."""
        from .types import Segmentation

        if self._image_hw is None:
            raise RuntimeError("SamSegmenter.segment() called before set_image()")
        out = []
        with torch.inference_mode():
            for req in requests:
                coords = as_points(req.points)
                lab = as_labels(req.labels, len(coords))
                logits, iou = self._prompt_passes(coords, lab)
                if iou < self.decoder.iou_threshold:
                    logits = np.full(self._image_hw, -np.inf, np.float32)
                out.append(Segmentation(logits, float(min(max(iou, 0.0), 1.0)) if np.isfinite(iou) else 0.0))
        return out

    def _prompt_passes(self, coords: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, float]:
        # Pass 1 finds the object from the positives alone; pass 2 adds the negatives and starts
        # from pass 1's logits; refinement passes feed each pass's logits (and box) to the next.
        positive = labels == POSITIVE
        masks, scores, low = self._decode(coords[positive], labels[positive], None, None)
        masks, scores, low = self._decode(coords, labels, None, low)
        for _ in range(self.decoder.refinement_iters):
            box = _bounding_box(masks[0] > 0)
            if box is None:
                break
            masks, scores, low = self._decode(coords, labels, box if self.decoder.refinement_box else None, low)
        return np.asarray(masks[0], np.float32), float(scores[0])

    def _decode(self, coords, labels, box, mask_input):
        """One mask-decoder pass: ``1xHxW`` logits, ``(1,)`` IoU, ``1xhxw`` low-res logits."""
        self._counts["decoder_calls"] += 1
        return self.predictor.predict(point_coords=coords if len(coords) else None,
                                      point_labels=labels if len(coords) else None,
                                      box=box, mask_input=mask_input, multimask_output=False, return_logits=True)


def _bounding_box(mask: np.ndarray) -> Optional[np.ndarray]:
    """``[x0, y0, x1, y1]`` float pixel indices of the mask's extreme pixels (inclusive), or None
    when the mask has fewer than ``_MIN_REFINE_PIXELS`` pixels.

    Given to ``SamPredictor.predict``, which maps it into the encoder's resized frame. (SAM-PT's
    code hands the original-resolution box to ``predict_torch`` untransformed, which shrinks it
    towards the origin by the resize factor; we give the box where the mask actually is.)
    """
    if np.count_nonzero(mask) < _MIN_REFINE_PIXELS:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)
