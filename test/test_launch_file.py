"""launch/sampt.launch.py: static checks everywhere; with launch/launch_ros installed, its
declared arguments, and a real LaunchService run against a throw-away install prefix whose
``sampt_node`` is a stand-in that reports the name, namespace, parameters, remappings and
environment it was started with.
"""

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "sampt.launch.py"
ARGUMENTS = {"image_topic": "/camera/image_raw", "namespace": "sampt", "profile": "cpu",
             "use_sim_time": "false", "rviz": "false", "mode": "", "fastdds_profile": "true"}


def test_launch_file_compiles_without_eval():
    text = LAUNCH_FILE.read_text(encoding="utf-8")
    compile(text, str(LAUNCH_FILE), "exec")
    calls = {node.func.id for node in ast.walk(ast.parse(text))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not calls & {"eval", "exec"}
    assert "PythonExpression" not in text and "eval(" not in text


def test_installed_files_exist():
    # CMakeLists.txt installs launch/ and config/; the launch file points at these.
    for name in ("sampt.yaml", "cpu.yaml", "fastdds.xml", "sampt.rviz"):
        assert (REPO / "config" / name).is_file(), name


def _launch_modules():
    # launch.actions, not launch: from the repository root `launch` alone would import this
    # repository's launch/ folder as a namespace package.
    pytest.importorskip("launch.actions", reason="needs ROS 2 launch (not on PyPI; see docs/ros.md)")
    pytest.importorskip("launch_ros.actions",
                        reason="needs ROS 2 launch_ros (not on PyPI; see docs/ros.md)")


def _load_launch_module():
    spec = importlib.util.spec_from_file_location("sampt_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_declared_arguments_and_defaults():
    _launch_modules()
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch.utilities import perform_substitutions

    description = _load_launch_module().generate_launch_description()
    declared = {entity.name: entity for entity in description.entities
                if isinstance(entity, DeclareLaunchArgument)}
    assert set(ARGUMENTS) | {"config_file"} <= set(declared)
    context = LaunchContext()
    for name, default in ARGUMENTS.items():
        assert perform_substitutions(context, declared[name].default_value) == default, name
    assert declared["config_file"].default_value  # share/sampt_ros/config/sampt.yaml at launch time


STANDIN_NODE = """\
#!{python}
# Stand-in sampt_node: writes what launch gave it as JSON, then exits.
import json, os, sys
import rclpy
from rclpy.node import Node
from std_msgs.msg import Header
rclpy.init(args=sys.argv)
node = Node("standin", automatically_declare_parameters_from_overrides=True)
topics = {{t: node.create_subscription(Header, t, lambda m: None, 1).topic_name
          for t in ("image", "image/compressed", "prompt")}}
with open(os.environ["SAMPT_STANDIN_REPORT"], "w") as f:
    json.dump({{"name": node.get_name(), "namespace": node.get_namespace(), "topics": topics,
               "params": {{n: p.value for n, p in node._parameters.items()}},
               "fastdds": os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE"),
               "qos_from_xml": os.environ.get("RMW_FASTRTPS_USE_QOS_FROM_XML")}}, f)
node.destroy_node()
rclpy.shutdown()
"""

RUN_LAUNCH = """\
import sys
import launch
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
service = launch.LaunchService()
service.include_launch_description(IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]),
    launch_arguments=[a.split(":=", 1) for a in sys.argv[2:]]))
sys.exit(service.run())
"""


@pytest.fixture
def standin_prefix(tmp_path):
    """An install prefix with sampt_ros registered, its config, and a stand-in node."""
    prefix = tmp_path / "prefix"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "sampt_ros").touch()
    shutil.copytree(REPO / "config", prefix / "share" / "sampt_ros" / "config")
    executable = prefix / "lib" / "sampt_ros" / "sampt_node"
    executable.parent.mkdir(parents=True)
    executable.write_text(STANDIN_NODE.format(python=sys.executable))
    executable.chmod(0o755)
    return prefix


def _run_launch(prefix, tmp_path, *arguments, env_extra=None):
    report = tmp_path / "report.json"
    script = tmp_path / "run_launch.py"
    script.write_text(textwrap.dedent(RUN_LAUNCH))
    env = dict(os.environ, AMENT_PREFIX_PATH=str(prefix), SAMPT_STANDIN_REPORT=str(report),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(tmp_path / "log"))
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    env.pop("RMW_FASTRTPS_USE_QOS_FROM_XML", None)
    env.update(env_extra or {})
    done = subprocess.run([sys.executable, str(script), str(LAUNCH_FILE), *arguments], env=env,
                          capture_output=True, text=True, timeout=120)
    return done, (json.loads(report.read_text()) if report.exists() else None)


@pytest.mark.slow
def test_launch_applies_namespace_parameters_and_remapping(standin_prefix, tmp_path):
    _launch_modules()
    done, report = _run_launch(standin_prefix, tmp_path, "namespace:=robot/cam",
                               "image_topic:=/cam/color/image_raw", "mode:=lockstep",
                               "use_sim_time:=true", "fastdds_profile:=true")
    assert done.returncode == 0 and report is not None, done.stdout + done.stderr
    assert (report["name"], report["namespace"]) == ("sampt_node", "/robot/cam")
    assert report["topics"] == {"image": "/cam/color/image_raw",
                                "image/compressed": "/cam/color/image_raw/compressed",
                                "prompt": "/robot/cam/prompt"}
    params = report["params"]
    # sampt.yaml first, the cpu profile over it, the command line last.
    assert params["profile"] == "cpu" and params["tracker.kind"] == "lk"
    assert params["segmenter.kind"] == "classic" and params["engine.reinit_horizon"] == 8
    assert params["node.compressed"] is False  # from sampt.yaml, untouched by the profile
    assert params["node.mode"] == "lockstep" and params["use_sim_time"] is True
    assert report["fastdds"] == str(standin_prefix / "share" / "sampt_ros" / "config" / "fastdds.xml")


@pytest.mark.slow
def test_launch_sets_the_transport_by_default_and_keeps_a_chosen_one(standin_prefix, tmp_path):
    """Large images need config/fastdds.xml between processes: the default launch sets it for the
    processes it starts; fastdds_profile:=false leaves the transport alone; a profile the
    environment already names is kept."""
    _launch_modules()
    ours = str(standin_prefix / "share" / "sampt_ros" / "config" / "fastdds.xml")
    done, report = _run_launch(standin_prefix, tmp_path, "mode:=lockstep")
    assert done.returncode == 0 and report is not None, done.stdout + done.stderr
    assert report["fastdds"] == ours and report["params"]["node.mode"] == "lockstep"
    assert report["qos_from_xml"] == "1"  # the profile's DYNAMIC sample buffers apply only with it
    done, report = _run_launch(standin_prefix, tmp_path, "fastdds_profile:=false")
    assert done.returncode == 0 and report["fastdds"] is None, done.stdout + done.stderr
    assert report["qos_from_xml"] is None
    mine = str(tmp_path / "mine.xml")
    done, report = _run_launch(standin_prefix, tmp_path, env_extra={"FASTRTPS_DEFAULT_PROFILES_FILE": mine})
    assert done.returncode == 0 and report["fastdds"] == mine, done.stdout + done.stderr


@pytest.mark.slow
def test_launch_rejects_unknown_profile(standin_prefix, tmp_path):
    _launch_modules()
    done, report = _run_launch(standin_prefix, tmp_path, "profile:=no_such_profile")
    assert done.returncode != 0 and report is None
    assert "no_such_profile" in done.stdout + done.stderr
