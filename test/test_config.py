"""The configuration tree: profiles load, ROS parameter files load, errors are helpful."""

from pathlib import Path

import pytest
import yaml

from sampt_ros.core.config import Config, config_from_dict, describe, load_config, profile_path

CONFIG = Path(__file__).resolve().parents[1] / "config"
PROFILES = ["paper", "paper_reinit", "fast_gpu", "cpu", "random_weights"]


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_loads_over_the_node_defaults(name):
    cfg = load_config([CONFIG / "sampt.yaml", profile_path(name)])
    assert cfg.profile == name


def test_paper_profiles_hold_the_published_hyperparameters():
    """SysCV/sam-pt's DAVIS configuration (commit 33f66f5, configs/model/sam_pt.yaml) and its code."""
    for name in ("paper", "paper_reinit"):
        paper = load_config([CONFIG / "sampt.yaml", CONFIG / f"{name}.yaml"])
        assert (paper.tracker.kind, paper.tracker.window, paper.tracker.pips.stride, paper.tracker.pips.iters) == ("pips", 8, 4, 6)
        assert (paper.tracker.pips.next_window_visibility, paper.tracker.pips.next_window_step) == (0.9, 0.02)
        p = paper.prompting
        assert (p.visibility_threshold, p.border_margin, p.others_as_negatives, p.require_own_positive) == (0.5, 0.01, True, False)
        d = paper.segmenter.decoder
        assert (paper.segmenter.kind, paper.segmenter.sam.model_type) == ("sam", "vit_h")
        assert (d.refinement_iters, d.refinement_box, d.box_source, d.iou_threshold, d.batching) == (12, True, "full", 0.7, "exact")
        assert (paper.engine.processing_long_side, paper.engine.overlap) == (1024, "confidence")
        assert (paper.sampling.positive_method, paper.sampling.n_positive, paper.sampling.negative_method) == ("kmedoids", 8, "mixed")
        assert paper.reid.kind == "none"  # SAM-PT has no re-detection
    paper = load_config([CONFIG / "paper.yaml"])
    assert (paper.engine.reinit_horizon, paper.sampling.n_negative) == (0, 1)
    reinit = load_config([CONFIG / "paper_reinit.yaml"])
    assert (reinit.engine.reinit_horizon, reinit.engine.reinit_resegment, reinit.sampling.n_negative) == (8, True, 72)
    assert load_config([CONFIG / "fast_gpu.yaml"]).segmenter.sam.model_type == "vit_b"
    cpu = load_config([CONFIG / "cpu.yaml"])
    assert (cpu.tracker.kind, cpu.segmenter.kind) == ("lk", "classic")


def test_component_sections_come_from_the_registry():
    from sampt_ros.core import registry

    cfg = Config()
    for family, section in registry.FAMILIES.items():
        names = set(registry.backends(family))
        sub = getattr(cfg, section)
        for name in names:
            assert isinstance(getattr(sub, name), registry.get(family, name).config)
    assert {"pips", "lk"} <= set(registry.backends("tracker"))
    assert {"sam", "classic"} <= set(registry.backends("segmenter"))
    with pytest.raises(ValueError, match="unknown segmenter 'nope'"):
        registry.get("segmenter", "nope")
    described = describe(cfg)
    assert "tracker.pips.next_window_visibility" in described and "segmenter.decoder.batching" in described
    assert described["tracker.kind"]["choices"] == tuple(registry.backends("tracker"))


def test_node_defaults_file_is_a_ros_parameter_file():
    data = yaml.safe_load((CONFIG / "sampt.yaml").read_text())
    (params,) = [v["ros__parameters"] for v in data.values()]
    cfg = load_config([CONFIG / "sampt.yaml"])
    assert cfg.node["mode"] in ("live", "lockstep")
    assert isinstance(params, dict)


def test_dotted_names_and_overrides():
    cfg = config_from_dict({"tracker.kind": "lk", "sampling.n_positive": 3})
    assert cfg.tracker.kind == "lk" and cfg.sampling.n_positive == 3
    flat = cfg.flat()
    assert flat["tracker.pips.iters"] == 6 and flat["segmenter.sam.model_type"] == "vit_h"
    assert config_from_dict(flat).to_dict() == cfg.to_dict()  # round trip through ROS names
    cfg2 = load_config([CONFIG / "cpu.yaml"], overrides={"engine.reinit_horizon": 0})
    assert cfg2.engine.reinit_horizon == 0


@pytest.mark.parametrize(
    "data, match",
    [
        ({"tracker": {"kind": "raft"}}, r"tracker.kind must be one of \[.*'pips'.*\], got 'raft'"),
        ({"tracker": {"pips": {"iters": 0}}}, "tracker.pips.iters must be in 1..32"),
        ({"prompting": {"visibility_threshold": 1.5}}, "prompting.visibility_threshold must be in 0.0..0.999"),
        ({"engine": {"overlap": "biggest"}}, "engine.overlap must be one of"),
        ({"segmenter": {"decoder": {"batching": "some"}}}, "segmenter.decoder.batching must be one of"),
        ({"reid": {"kind": "magic"}}, "reid.kind must be one of"),
        ({"segmenter": {"sam": {"model_type": "vit_x"}}}, "model_type"),
        ({"sampling": {"n_positive": "8"}}, "sampling.n_positive must be an integer"),
        ({"sampling": {"n_positive": 0}}, "n_positive must be in 1..256"),
        ({"sampling": {"positive_method": "grid"}}, "positive_method"),
        ({"engine": {"reinit_horizon": 1}}, "reinit_horizon"),
        ({"engine": {"reinit_horizon": 9}, "tracker": {"kind": "pips"}}, "cannot exceed the PIPS window"),
        ({"segmenter": {"decoder": {"refinement_box": "yes"}}}, "true or false"),
        ({"tracker": {"pips": {"device": "tpu"}}}, "device"),
        ({"trackr": {}}, "unknown config key 'trackr'"),
        ({"tracker": {"pips": {"iter": 3}}}, "unknown config key 'tracker.pips.iter'"),
        ({"tracker": 3}, "tracker must be a mapping"),
    ],
)
def test_invalid_values_name_the_key(data, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict(data)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config([tmp_path / "nope.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("tracker: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config([bad])
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("sampling: {n_negative: -1}\n")
    with pytest.raises(ValueError, match=r"wrong.yaml: sampling.n_negative"):
        load_config([wrong])
    with pytest.raises(FileNotFoundError, match="known profiles"):
        profile_path("no_such_profile")


def test_checkpoint_paths_expand_user_and_variables(monkeypatch):
    monkeypatch.setenv("SAMPT_WEIGHTS", "/data/w")
    cfg = config_from_dict({"segmenter": {"sam": {"checkpoint": "$SAMPT_WEIGHTS/sam.pth"}},
                            "tracker": {"pips": {"checkpoint": "~/p.pth"}}})
    assert cfg.segmenter.sam.checkpoint == "/data/w/sam.pth"
    assert not cfg.tracker.pips.checkpoint.startswith("~")


def test_defaults_are_the_paper_method():
    cfg = Config()
    assert cfg.tracker.kind == "pips" and cfg.segmenter.kind == "sam"
    assert cfg.segmenter.decoder.refinement_iters == 12 and cfg.sampling.n_positive == 8
