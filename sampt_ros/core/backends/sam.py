"""Segment Anything 1 (``segment_anything`` 1.0: ViT-H/L/B), prompted the way SAM-PT prompts it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..registry import register
from ..settings import setting
from ._sam_common import SamFamilyConfig

#: file names of the official checkpoints, by model type
OFFICIAL_CHECKPOINTS = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
}
SOURCE = "github.com/facebookresearch/segment-anything"


@dataclass
class SamConfig(SamFamilyConfig):
    """Segment Anything 1 model and checkpoint."""

    path: ClassVar[str] = "segmenter.sam"
    model_type: str = setting("vit_h", "vit_h, vit_l, vit_b (official checkpoints) or tiny (tests only)",
                              choices=("vit_h", "vit_l", "vit_b", "tiny"))


def build_tiny_sam(seed: int = 0):
    """A tiny random Segment Anything (256 px input, width 64, 2 blocks; decoder width 32), for tests.

    Deterministic in ``seed``; torch's global random state is left alone.
    """
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    img, patch, dim = 256, 16, 32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = Sam(
            image_encoder=ImageEncoderViT(img_size=img, patch_size=patch, embed_dim=64, depth=2, num_heads=2,
                                          mlp_ratio=2.0, out_chans=dim, qkv_bias=True,
                                          norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                                          window_size=4, global_attn_indexes=(1,)),
            prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(img // patch, img // patch),
                                         input_image_size=(img, img), mask_in_chans=8),
            mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=dim, iou_head_depth=3,
                                     iou_head_hidden_dim=32,
                                     transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=64,
                                                                   num_heads=2)),
        )
    return sam.eval()


def build_architecture(model_type: str):
    """The model with random weights (``checkpoint=None``: segment_anything unpickles nothing)."""
    if model_type == "tiny":
        return build_tiny_sam()
    from segment_anything import sam_model_registry

    return sam_model_registry[model_type](checkpoint=None).eval()


def load_model(section: SamConfig):
    """The model ``section`` names, its official checkpoint loaded strictly and safely."""
    from ._sam_common import load_model as load

    return load(section, "sam", build_architecture, OFFICIAL_CHECKPOINTS, SOURCE)


@register("segmenter", "sam", SamConfig, "Segment Anything 1 (ViT-H/L/B)", requires=("torch", "segment_anything"))
def build(config):
    from ..sam_segmenter import SamSegmenter

    return SamSegmenter(config)
