"""HQ-SAM (``segment_anything_hq`` 0.3): ViT-H/L/B, and Light HQ-SAM (TinyViT, ``vit_tiny``) for Jetsons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..registry import register
from ..settings import setting
from ._sam_common import SamFamilyConfig

#: file names of the official checkpoints, by model type
OFFICIAL_CHECKPOINTS = {
    "vit_h": "sam_hq_vit_h.pth",
    "vit_l": "sam_hq_vit_l.pth",
    "vit_b": "sam_hq_vit_b.pth",
    "vit_tiny": "sam_hq_vit_tiny.pth",
}
SOURCE = "github.com/SysCV/sam-hq"
#: TinyViT builds an ImageNet classifier head that its SAM forward pass never runs; a
#: checkpoint may leave it out (every other parameter must be there)
TINYVIT_UNUSED = ("image_encoder.head.", "image_encoder.norm_head.")


@dataclass
class SamHqConfig(SamFamilyConfig):
    """HQ-SAM model and checkpoint (vit_tiny = Light HQ-SAM)."""

    path: ClassVar[str] = "segmenter.sam_hq"
    model_type: str = setting("vit_h", "vit_h, vit_l, vit_b, vit_tiny (Light HQ-SAM, TinyViT; official "
                                       "checkpoints) or tiny / tiny_light (tests only)",
                              choices=("vit_h", "vit_l", "vit_b", "vit_tiny", "tiny", "tiny_light"))


def build_tiny(model_type: str = "tiny", seed: int = 0):
    """A tiny random HQ-SAM for tests: ``tiny`` (ViT encoder, 256 px input, width 64, 2 blocks,
    decoder width 32) or ``tiny_light`` (Light HQ-SAM's TinyViT with narrow stages and a 32-wide
    neck instead of its 256-wide one; TinyViT's SAM variant is fixed to a 1024 px input, a 64x64
    embedding and 256x256 low-resolution logits). Deterministic in ``seed``."""
    from functools import partial

    import torch
    from segment_anything_hq.modeling import (ImageEncoderViT, MaskDecoderHQ, PromptEncoder, Sam, TinyViT,
                                              TwoWayTransformer)
    from segment_anything_hq.modeling.common import LayerNorm2d

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model_type == "tiny":
            img, patch, dim, vit_dim = 256, 16, 32, 64
            encoder = ImageEncoderViT(img_size=img, patch_size=patch, embed_dim=vit_dim, depth=2, num_heads=2,
                                      mlp_ratio=2.0, out_chans=dim, qkv_bias=True,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                                      window_size=4, global_attn_indexes=(1,))
        elif model_type == "tiny_light":
            img, patch, dim = 1024, 16, 32
            dims = [8, 16, 24, 320]  # the last stage must be 320 wide for TinyViT's SAM strides
            vit_dim = dims[2]
            encoder = TinyViT(img_size=img, in_chans=3, num_classes=10, embed_dims=dims, depths=[1, 1, 1, 1],
                              num_heads=[1, 1, 1, 4], window_sizes=[7, 7, 14, 7], mlp_ratio=1.0, drop_rate=0.0,
                              drop_path_rate=0.0, use_checkpoint=False, mbconv_expand_ratio=2.0,
                              local_conv_size=3, layer_lr_decay=0.8)
            encoder.neck = torch.nn.Sequential(torch.nn.Conv2d(dims[-1], dim, kernel_size=1, bias=False),
                                               LayerNorm2d(dim))
        else:
            raise ValueError(f"unknown tiny HQ-SAM {model_type!r} (tiny or tiny_light)")
        sam = Sam(
            image_encoder=encoder,
            prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(img // patch, img // patch),
                                         input_image_size=(img, img), mask_in_chans=8),
            mask_decoder=MaskDecoderHQ(num_multimask_outputs=3, transformer_dim=dim, iou_head_depth=3,
                                       iou_head_hidden_dim=32, vit_dim=vit_dim,
                                       transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=32,
                                                                     num_heads=1)),
            pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
        )
    return sam.eval()


def build_architecture(model_type: str):
    """The model with random weights (the official builders with ``checkpoint=None`` unpickle nothing)."""
    if model_type in ("tiny", "tiny_light"):
        return build_tiny(model_type)
    from segment_anything_hq import sam_model_registry

    return sam_model_registry[model_type](checkpoint=None).eval()


def load_model(section: SamHqConfig):
    """The model ``section`` names, its official checkpoint loaded strictly and safely."""
    from ._sam_common import load_model as load

    unused = TINYVIT_UNUSED if section.model_type in ("vit_tiny", "tiny_light") else ()
    return load(section, "sam_hq", build_architecture, OFFICIAL_CHECKPOINTS, SOURCE, unused)


@register("segmenter", "sam_hq", SamHqConfig, "HQ-SAM (ViT-H/L/B) and Light HQ-SAM (vit_tiny)",
          requires=("torch", "segment_anything_hq", "timm"))
def build(config):
    from ..sam_segmenter import SamSegmenter

    return SamSegmenter(config)
