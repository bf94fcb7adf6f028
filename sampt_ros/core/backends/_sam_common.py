"""What the SAM-family backends (``sam``, ``sam_hq``, ``sam2``) share: their common settings,
device and precision choice, and telling which model a checkpoint belongs to.

Not a backend (the leading ``_`` keeps it out of registry discovery). Importing it costs no
torch: the functions that need torch import it themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Tuple

from ..checkpoints import CheckpointError
from ..devices import resolve_device
from ..settings import Section, check, check_device, expand_path, setting

#: precision choices: fp32 (reference numerics), auto (bf16 where the GPU has it, else fp16; fp32 on the CPU),
#: bf16, fp16 (autocast of the image encoder and the decoder passes)
PRECISIONS = ("fp32", "auto", "bf16", "fp16")


class SamCheckpointError(CheckpointError):
    """A SAM-family checkpoint is missing, unreadable, or belongs to another model."""


@dataclass
class SamFamilyConfig(Section):
    """Settings every SAM-family backend has (a backend adds ``model_type`` and its ``path``)."""

    checkpoint: str = setting("", "path to the official checkpoint (~ and $VARS expand)")
    allow_random_weights: bool = setting(False, "run with random weights when no checkpoint is given (tests, benchmarks)")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    precision: str = setting("fp32", "autocast of the image encoder and the decoder passes: fp32, auto (bf16 where "
                                     "the GPU supports it, else fp16; fp32 on the CPU), bf16 or fp16 (CUDA only)",
                             choices=PRECISIONS)
    channels_last: bool = setting(False, "keep the image encoder's weights channels-last (GPU convolutions)")
    compile_encoder: bool = setting(False, "torch.compile the image encoder (the first frames compile it: call "
                                           "warmup() at configure time)")

    def validate(self) -> None:
        self.checkpoint = expand_path(self.checkpoint)
        check_device(f"{self.path}.device", self.device)
        check(not (self.precision == "fp16" and self.device == "cpu"),
              f"{self.path}.precision fp16 needs a CUDA device (device is cpu); use bf16 or fp32")


# ------------------------------------------------------------------------------------------ precision
def autocast_dtype(precision: str, device, setting_name: str = "segmenter.sam.precision"):
    """The autocast dtype for ``precision`` on ``device`` (a torch.device), or None for float32.

    ``auto``: bfloat16 on a CUDA device that supports it, float16 on other CUDA devices, float32
    on the CPU. ``bf16`` runs on CUDA devices with bfloat16 support and on the CPU; ``fp16``
    needs CUDA. Anything a device cannot do is a ``ValueError`` naming the setting.
    """
    import torch

    cuda = getattr(device, "type", str(device)) == "cuda"
    if precision == "fp32":
        return None
    if precision == "auto":
        if not cuda:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "bf16":
        if cuda and not torch.cuda.is_bf16_supported():
            raise ValueError(f"{setting_name} bf16: this GPU has no bfloat16 support; use fp16 or auto")
        return torch.bfloat16
    if precision == "fp16":
        if not cuda:
            raise ValueError(f"{setting_name} fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        return torch.float16
    raise ValueError(f"{setting_name} must be one of {list(PRECISIONS)}, got {precision!r}")


def prepare_encoder(model, encoder_attr: str, section) -> None:
    """Apply the GPU execution settings to ``model.<encoder_attr>``: channels-last weights and
    ``torch.compile`` (weights must be loaded before: compiling wraps the module)."""
    import torch

    enc = getattr(model, encoder_attr)
    if section.channels_last:
        enc.to(memory_format=torch.channels_last)
    if section.compile_encoder:
        setattr(model, encoder_attr, torch.compile(enc))


# ------------------------------------------------------------------------------------------ checkpoints
#: (ViT width, depth) of SAM's and HQ-SAM's ViT image encoders, and the tiny test encoder
VIT_SHAPES: Dict[Tuple[int, int], str] = {(1280, 32): "vit_h", (1024, 24): "vit_l", (768, 12): "vit_b", (64, 2): "tiny"}
#: (trunk width, blocks) of SAM 2's Hiera image encoders
HIERA_SHAPES: Dict[Tuple[int, int], str] = {(96, 12): "hiera_t", (96, 16): "hiera_s", (112, 24): "hiera_b+",
                                            (144, 48): "hiera_l"}

#: the settings that select each family (for messages)
FAMILY_SETTING = {"sam": "segmenter.kind: sam", "sam_hq": "segmenter.kind: sam_hq", "sam2": "segmenter.kind: sam2"}
FAMILY_NAME = {"sam": "Segment Anything", "sam_hq": "HQ-SAM", "sam2": "SAM 2.1", "sam2.0": "SAM 2 (2.0)",
               "mobile_sam": "MobileSAM"}


def _count_blocks(keys: Iterable[str], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({int(m.group(1)) for k in keys if (m := rx.match(k))})


def identify(state_dict: Mapping[str, Any]) -> Tuple[str, str]:
    """Which model a state dict belongs to: ``(family, model_type)``.

    ``family`` is ``sam``, ``sam_hq``, ``sam2``, ``sam2.0`` (SAM 2 before 2.1), ``mobile_sam``
    or ``unknown``; ``model_type`` the backend's model type (``vit_h``, ``vit_tiny``,
    ``hiera_t``, ``tiny``, ...) or a short description when unknown.
    """
    keys = list(state_dict.keys())
    if any(k.startswith("image_encoder.trunk.") for k in keys) or any(k.startswith("sam_mask_decoder.") for k in keys):
        family = "sam2" if "no_obj_embed_spatial" in state_dict or "obj_ptr_tpos_proj.weight" in state_dict \
            else "sam2.0"
        w = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
        width = int(w.shape[0]) if getattr(w, "ndim", 0) == 4 else -1
        depth = _count_blocks(keys, r"image_encoder\.trunk\.blocks\.(\d+)\.")
        return family, HIERA_SHAPES.get((width, depth), "tiny" if width < 96 else f"hiera (width {width}, {depth} blocks)")
    hq = any(k.startswith("mask_decoder.hf_token.") for k in keys)
    if any(k.startswith("image_encoder.layers.") for k in keys):  # TinyViT encoder
        if not hq:
            return "mobile_sam", "vit_t"
        w = state_dict.get("image_encoder.patch_embed.seq.0.c.weight")
        first = int(w.shape[0]) * 2 if getattr(w, "ndim", 0) == 4 else -1  # the stem's first conv has half the width
        return "sam_hq", "vit_tiny" if first == 64 else "tiny_light"
    w = state_dict.get("image_encoder.patch_embed.proj.weight")
    if getattr(w, "ndim", 0) != 4:
        return "unknown", f"not a SAM-family state dict ({describe_keys(keys)})"
    depth = _count_blocks(keys, r"image_encoder\.blocks\.(\d+)\.")
    kind = VIT_SHAPES.get((int(w.shape[0]), depth), f"ViT (width {int(w.shape[0])}, {depth} blocks)")
    return ("sam_hq" if hq else "sam"), kind


def describe_keys(keys, n: int = 3) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "") + f"; {len(keys)} keys"


def model_name(family: str, model_type: str) -> str:
    """``HQ-SAM vit_h``, ``SAM 2.1 hiera_t``, ..."""
    return f"{FAMILY_NAME.get(family, family)} {model_type}"


def check_identity(state_dict: Mapping[str, Any], path: str, family: str, model_type: str, section_path: str,
                   error: type) -> None:
    """Raise ``error`` naming the model a checkpoint belongs to unless it is ``family`` ``model_type``."""
    found_family, found_type = identify(state_dict)
    if (found_family, found_type) == (family, model_type):
        return
    want = model_name(family, model_type)
    if found_family == "unknown":
        raise error(f"{path}: not a {want} checkpoint: {found_type}")
    got = model_name(found_family, found_type)
    if found_family == family:
        hint = f"set {section_path}.model_type: {found_type}, or point {section_path}.checkpoint at the {model_type} file"
    elif found_family in FAMILY_SETTING:
        hint = f"it belongs to {FAMILY_SETTING[found_family]} (model_type {found_type})"
    else:
        hint = f"sampt_ros does not run {FAMILY_NAME.get(found_family, found_family)}"
    raise error(f"{path}: this is a {got} checkpoint, not {want} ({hint})")


def load_strict(model, state_dict: Mapping[str, Any], path: str, what: str, error: type,
                unused: Tuple[str, ...] = ()) -> None:
    """``model.load_state_dict(state_dict, strict=True)``, except that parameters of modules the
    forward pass never runs (key prefixes in ``unused``) may be missing from the file."""
    expected = set(model.state_dict().keys())
    given = set(state_dict.keys())
    missing = sorted(k for k in expected - given if not k.startswith(unused))
    unexpected = sorted(given - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise error(f"{path}: does not match the {what} architecture: keys " + "; ".join(parts))
    shapes = model.state_dict()
    bad = [k for k in given if tuple(shapes[k].shape) != tuple(state_dict[k].shape)]
    if bad:
        k = sorted(bad)[0]
        raise error(f"{path}: does not match the {what} architecture: {len(bad)} shape mismatches, e.g. {k} "
                    f"{tuple(state_dict[k].shape)} in the file, {tuple(shapes[k].shape)} in the model")
    model.load_state_dict(dict(state_dict), strict=not unused)


def read_checked(path: str, family: str, model_type: str, section_path: str, error: type) -> Dict[str, Any]:
    """Read a checkpoint safely (no pickled code) and check it is ``family`` ``model_type``."""
    from ..checkpoints import CheckpointError, read_state_dict

    what = model_name(family, model_type)
    try:
        sd = read_state_dict(path, what, f"{section_path}.checkpoint")
    except CheckpointError as exc:
        raise error(str(exc)) from None
    check_identity(sd, path, family, model_type, section_path, error)
    return sd


def missing_checkpoint(section, family: str, official: Mapping[str, str], source: str, error: type):
    """The error for a model section with no checkpoint and random weights not allowed."""
    files = ", ".join(f"{k}: {v}" for k, v in official.items())
    return error(f"no {FAMILY_NAME[family]} checkpoint: set {section.path}.checkpoint to the official file for "
                 f"{section.path}.model_type {section.model_type!r} ({files}; from {source}), or set "
                 f"{section.path}.allow_random_weights: true to run with random weights (benchmarks/tests only)")


def load_model(section, family: str, build_architecture, official: Mapping[str, str], source: str,
               unused: Tuple[str, ...] = ()):
    """Build ``section.model_type`` of ``family`` and load ``section.checkpoint`` strictly and safely.

    Args:
        section: the backend's settings (``model_type``, ``checkpoint``, ``allow_random_weights``,
            ``device``, ``channels_last``, ``compile_encoder``).
        family: ``sam``, ``sam_hq`` or ``sam2``.
        build_architecture: ``model_type -> model`` with random weights (nothing is unpickled).
        official: ``model_type -> official file name`` (for messages).
        source: where the official files come from (for messages).
        unused: key prefixes of modules the forward pass never runs, which the file may lack.

    Returns the model in eval mode on the device, with the GPU execution settings applied.
    Raises ``FileNotFoundError`` (no such file) or :class:`SamCheckpointError` (no checkpoint and
    random weights not allowed; unreadable or unsafe file; another model's file, named; keys or
    shapes that do not match).
    """
    device = resolve_device(section.device, f"{section.path}.device")
    if not section.checkpoint:
        if not section.allow_random_weights:
            raise missing_checkpoint(section, family, official, source, SamCheckpointError)
        model = build_architecture(section.model_type)
    else:
        try:
            sd = read_checked(section.checkpoint, family, section.model_type, section.path, SamCheckpointError)
        except FileNotFoundError:
            want = official.get(section.model_type)
            raise FileNotFoundError(
                f"{model_name(family, section.model_type)} checkpoint not found: {section.checkpoint!r} "
                f"(set {section.path}.checkpoint" + (f" to the official {want}" if want else "") + ")") from None
        model = build_architecture(section.model_type)
        load_strict(model, sd, section.checkpoint, model_name(family, section.model_type), SamCheckpointError,
                    unused)
    model = model.to(device).eval()
    prepare_encoder(model, "image_encoder", section)
    return model
