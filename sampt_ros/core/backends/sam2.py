"""SAM 2.1 (``sam2`` 1.1.0) image predictor, Hiera t/s/b+/l, prompted the way SAM-PT prompts SAM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..registry import register
from ..settings import setting
from ._sam_common import SamFamilyConfig

#: the package's config file of each model type
CONFIGS = {
    "hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
}
#: file names of the official checkpoints, by model type
OFFICIAL_CHECKPOINTS = {
    "hiera_t": "sam2.1_hiera_tiny.pt",
    "hiera_s": "sam2.1_hiera_small.pt",
    "hiera_b+": "sam2.1_hiera_base_plus.pt",
    "hiera_l": "sam2.1_hiera_large.pt",
}
SOURCE = "github.com/facebookresearch/sam2"
#: hydra overrides of the tiny test model: 256 px input, a 5-block Hiera of width 8 (the global
#: attention block may not be a stage's first, pooling block)
TINY_OVERRIDES = [
    "++model.image_size=256",
    "++model.image_encoder.trunk.embed_dim=8",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_spec=[8,4,4,4]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "++model.memory_attention.num_layers=1",
]


@dataclass
class Sam2Config(SamFamilyConfig):
    """SAM 2.1 image predictor model and checkpoint."""

    path: ClassVar[str] = "segmenter.sam2"
    model_type: str = setting("hiera_t", "hiera_t, hiera_s, hiera_b+, hiera_l (official SAM 2.1 checkpoints) "
                                         "or tiny (tests only)",
                              choices=("hiera_t", "hiera_s", "hiera_b+", "hiera_l", "tiny"))


def build_architecture(model_type: str, seed: int = 0):
    """The model with random weights, built from the package's hydra config (``tiny``: overridden small)."""
    import torch
    from sam2.build_sam import build_sam2

    overrides = list(TINY_OVERRIDES) if model_type == "tiny" else []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_sam2(CONFIGS[model_type], None, device="cpu", mode="eval", hydra_overrides_extra=overrides)


def load_model(section: Sam2Config):
    """The model ``section`` names, its official checkpoint loaded strictly and safely."""
    from ._sam_common import load_model as load

    return load(section, "sam2", build_architecture, OFFICIAL_CHECKPOINTS, SOURCE)


@register("segmenter", "sam2", Sam2Config, "SAM 2.1 image predictor (Hiera t/s/b+/l)",
          requires=("torch", "sam2"))
def build(config):
    from ..sam_segmenter import SamSegmenter

    return SamSegmenter(config)
