"""The node's parameters: declaration, defaults, validation (in the core), live changes, lifecycle."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from sampt_ros.core.config import Config, config_from_dict, load_config
from sampt_ros.ros.parameters import LIVE_NODE_KEYS, NodeSettings, core_defaults, parameter_specs

REPO = Path(__file__).resolve().parents[1]
CPU = [str(REPO / "config" / "sampt.yaml"), str(REPO / "config" / "cpu.yaml")]


from conftest import ros_context  # noqa: E402

DOMAIN_ID = 10 + (os.getpid() * 11 + 5) % 80
_ns = itertools.count()
#: ``name -> (from, to, step)`` of every declared parameter with a range
RANGES = {name: spec["range"] for name, spec in parameter_specs().items() if spec["range"]}


# ---------------------------------------------------------------------------- no ROS needed
def test_every_core_setting_has_a_parameter_spec():
    specs = parameter_specs()
    for name in core_defaults():
        assert name in specs, name
        assert specs[name]["read_only"] is True
        assert specs[name]["description"] and specs[name]["description"] != name
    for key in LIVE_NODE_KEYS:
        assert specs[f"node.{key}"]["read_only"] is False
    assert specs["node.mode"]["read_only"] is True
    # descriptions and ranges come from the settings' own declarations
    assert "odd" in specs["tracker.lk.win_size"]["description"]
    assert specs["tracker.pips.iters"]["range"] == (1, 32, 1)
    assert specs["sampling.n_negative"]["range"] == (0, 256, 1)
    assert "vit_b" in specs["segmenter.sam.model_type"]["description"]


def _cpu_flat(**changes):
    flat = load_config(CPU).flat()
    flat = {k: v for k, v in flat.items() if not k.startswith("node")}
    flat.update(changes)
    return flat


def _core_accepts(name, value) -> bool:
    try:
        config_from_dict(_cpu_flat(**{name: value}))
        return True
    except ValueError:
        return False


def _node_accepts(name, value) -> bool:
    try:
        NodeSettings.from_dict({name[len("node."):]: value})
        return True
    except ValueError:
        return False


# bounds the core excludes although the ROS range (closed intervals only) includes them
_OPEN_BOUNDS = {("segmenter.classic.band", 0.0), ("node.marker_scale", 0.0)}


@pytest.mark.parametrize("name", sorted(RANGES))
def test_ros_ranges_agree_with_the_validation(name):
    lo, hi, step = RANGES[name]
    accepts = _node_accepts if name.startswith("node.") else _core_accepts
    is_int = isinstance(lo, int)
    eps = 1 if is_int else 1e-6
    for bound in (lo, hi):
        assert accepts(name, bound) != ((name, bound) in _OPEN_BOUNDS), f"{name} = {bound}"
    assert not accepts(name, lo - eps), f"{name} below its range accepted"
    assert not accepts(name, hi + eps), f"{name} above its range accepted"
    assert accepts(name, (lo + hi) // 2 if is_int else (lo + hi) / 2)


def test_node_settings_validation():
    assert NodeSettings.from_dict({}) == NodeSettings()
    for values, reason in [({"mode": "fast"}, "node.mode must be one of"),
                           ({"image_qos": "best_effort"}, "node.image_qos"),
                           ({"click_label": 2}, "node.click_label"),
                           ({"queue_size": 0}, "node.queue_size"),
                           ({"autostart": "yes"}, "true or false"),
                           ({"sync_slop": "0.1"}, "a number"),
                           ({"qos_depth": 2.5}, "an integer"),
                           ({"mdoe": "live"}, "unknown config key 'node.mdoe'")]:
        with pytest.raises(ValueError, match=reason):
            NodeSettings.from_dict(values)
    assert NodeSettings.from_dict({"sync_slop": 1}).sync_slop == 1.0


# ---------------------------------------------------------------------------- in a ROS context
@pytest.fixture(scope="module")
def ctx():
    yield from ros_context(DOMAIN_ID)


def make_node(ctx, overrides=None, cli_args=None):
    from rclpy.parameter import Parameter

    from sampt_ros.ros.node import SamptNode

    params = [Parameter(k, value=v) for k, v in (overrides or {}).items()]
    return SamptNode(context=ctx, namespace=f"/sampt_param_test_{os.getpid()}_{next(_ns)}",
                     parameter_overrides=params, cli_args=cli_args)


@pytest.mark.ros
def test_declared_parameters_have_descriptors(ctx):
    node = make_node(ctx, {"profile": "cpu"})
    try:
        for name in Config().flat():
            if name == "node":
                continue
            assert node.has_parameter(name), name
            d = node.describe_parameter(name)
            assert d.description and d.read_only, name
        d = node.describe_parameter("tracker.pips.iters")
        assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (1, 32)
        d = node.describe_parameter("segmenter.classic.band")
        assert d.floating_point_range[0].to_value == 2.0
        d = node.describe_parameter("node.click_object_id")
        assert not d.read_only and d.integer_range[0].to_value == 255
        assert node.params.errors == [] and node.params.unknown_overrides == []
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_defaults_come_from_the_package_files_and_the_profile(ctx):
    shipped = make_node(ctx)
    cpu = make_node(ctx, {"profile": "cpu"})
    try:
        def core(c):
            return {k: v for k, v in c.flat().items() if not k.startswith("node")}

        cfg, settings = shipped.params.build()
        shipped_cfg = load_config(CPU[:1])
        assert core(cfg) == core(shipped_cfg)
        assert settings == NodeSettings.from_dict(shipped_cfg.node)
        cfg, settings = cpu.params.build()
        assert core(cfg) == core(load_config(CPU))
        assert (cfg.tracker.kind, cfg.segmenter.kind) == ("lk", "classic")
        assert isinstance(settings, NodeSettings)
    finally:
        shipped.destroy_node()
        cpu.destroy_node()


@pytest.mark.ros
def test_parameter_file_and_overrides_win(ctx, tmp_path):
    extra = tmp_path / "mine.yaml"
    extra.write_text("/**:\n  ros__parameters:\n    tracker:\n      lk:\n        win_size: 31\n"
                     "    node:\n      mode: lockstep\n    segmenter:\n      classic:\n        band: 1\n")
    node = make_node(ctx, {"profile": "cpu"},
                     cli_args=["--ros-args", "--params-file", CPU[0], "--params-file", str(extra),
                               "-p", "sampling.n_positive:=5"])
    try:
        cfg, settings = node.params.build()
        assert cfg.tracker.lk.win_size == 31 and cfg.sampling.n_positive == 5
        assert cfg.segmenter.classic.band == 1.0  # a YAML int for a float setting is fine
        assert settings.mode == "lockstep"
        # sampt.yaml given as a file says `tracker.kind: pips`: an explicit file beats the profile's
        # defaults; where it is silent (segmenter.classic) the profile's values stay
        assert cfg.tracker.kind == "pips"
        assert cfg.segmenter.classic.work_size == load_config(CPU).segmenter.classic.work_size
    finally:
        node.destroy_node()


@pytest.mark.ros
@pytest.mark.parametrize("overrides,reason", [
    ({"tracker.kind": "foo"}, "tracker.kind must be one of"),
    ({"engine.reinit_horizon": 1}, "engine.reinit_horizon must be 0"),  # only the core knows "0 or 2..64"
    ({"tracker.lk.win_size": 20}, "must be odd"),
    ({"tracker.lk.max_level": 99}, "tracker.lk.max_level"),  # out of the ROS range at start-up
    ({"tracker.window": "eight"}, "tracker.window"),  # wrong type at start-up
    ({"node.mode": "turbo"}, "node.mode must be one of"),
])
def test_invalid_values_refuse_to_configure_with_the_reason(ctx, overrides, reason):
    from rclpy.lifecycle import TransitionCallbackReturn

    node = make_node(ctx, {"profile": "cpu", **overrides})
    try:
        with pytest.raises(ValueError, match=reason):
            node.params.build()
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.state_label == "unconfigured" and node.engine is None
        assert node._state_machine.current_state[1] == "unconfigured"
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_unknown_overrides_are_reported(ctx):
    node = make_node(ctx, {"profile": "cpu", "tracker.lk.winsize": 31, "node.mdoe": "live"})
    try:
        assert node.params.unknown_overrides == ["node.mdoe", "tracker.lk.winsize"]
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_live_changes_and_the_lifecycle(ctx):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    node = make_node(ctx, {"profile": "cpu", "node.publish_overlay": False})
    try:
        assert node.autostart() and node.state_label == "active"
        assert node.worker is not None and node.worker.running
        ok, bad, ro, ro_core = node.set_parameters([
            Parameter("node.click_label", value=0), Parameter("node.click_label", value=5),
            Parameter("node.mode", value="lockstep"), Parameter("tracker.kind", value="pips")])
        assert ok.successful and node.settings.click_label == 0
        assert not bad.successful and "click_label" in bad.reason
        assert not ro.successful and "read-only" in ro.reason
        assert not ro_core.successful and "read-only" in ro_core.reason
        res = node.set_parameters([Parameter("node.publish_overlay", value=True)])[0]
        assert res.successful and node.settings.publish_overlay is True
        # deactivate / cleanup free the worker and the models; configure builds them again
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.worker is not None and not node.worker.running
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.engine is None and node.worker is None
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.engine is not None
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS and node.worker.running
    finally:
        node._stop_inputs()
        node.destroy_node()


@pytest.mark.ros
def test_autostart_false_waits_for_a_manager(ctx):
    node = make_node(ctx, {"profile": "cpu", "node.autostart": False})
    try:
        assert node.autostart() is False
        assert node.state_label == "unconfigured" and node.engine is None
    finally:
        node.destroy_node()
