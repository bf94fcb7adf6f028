"""Launch the SAM-PT node (and optionally RViz).

    ros2 launch sampt_ros sampt.launch.py image_topic:=/camera/color/image_raw profile:=cpu
    ros2 launch sampt_ros sampt.launch.py profile:=fast_gpu rviz:=true
    ros2 launch sampt_ros sampt.launch.py use_sim_time:=true mode:=lockstep   # bag replay

Parameters come from ``config_file`` (default ``share/sampt_ros/config/sampt.yaml``), then the
profile ``share/sampt_ros/config/<profile>.yaml`` laid over it (or a profile given as a path to a
``.yaml`` file), then ``use_sim_time`` and ``mode`` from the command line.  A profile may be a
plain YAML tree (``engine: {reinit_horizon: 8}``, the form ``sampt_ros.core.config.load_config``
reads) or a ROS parameter file (``/**: {ros__parameters: ...}``): both become node parameters with
dotted names (``engine.reinit_horizon``).

The node's topics are relative (``image``, ``prompt``, ``mask``, ``overlay``, ...) and live in
``namespace``; ``image`` (and ``image/compressed``, ``depth``, ``camera_info``) are remapped to
the camera's topics given here.

Transport: by default (``fastdds_profile:=true``) every process this file starts uses
``config/fastdds.xml`` (a 16 MiB shared-memory segment and 4 MiB UDP buffers), which camera-size
images need between processes with Fast DDS; a profile the environment already names
(``FASTRTPS_DEFAULT_PROFILES_FILE``) is kept. The camera driver's side adds the same line:
``export FASTRTPS_DEFAULT_PROFILES_FILE=$(ros2 pkg prefix sampt_ros)/share/sampt_ros/config/fastdds.xml``.
"""

import os

from pathlib import Path

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "sampt_ros"
# The RViz config shows these topics under the default namespace.
RVIZ_NAMESPACE = "sampt"
RVIZ_TOPICS = ("overlay", "mask", "markers")
MODES = ("live", "lockstep")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _flag(context: LaunchContext, name: str) -> bool:
    """A boolean launch argument; anything but true/false (1/0, yes/no, on/off) is an error."""
    text = LaunchConfiguration(name).perform(context).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"launch argument {name}:={text!r} must be true or false")


def _share_dir() -> Path:
    return Path(get_package_share_directory(PACKAGE))


def _profile_parameters(profile: str, share: Path):
    """The profile as a node parameter entry: a file path (ROS parameter file) or a dict.

    ``profile`` is a name (``cpu`` -> ``share/sampt_ros/config/cpu.yaml``), a path to a ``.yaml``
    file, or ``''``/``none`` for no profile.  Returns ``None`` for no profile.
    """
    if profile.lower() in ("", "none"):
        return None
    if profile.endswith((".yaml", ".yml")) or "/" in profile:
        path = Path(profile).expanduser()
    else:
        path = share / "config" / f"{profile}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (share / "config").glob("*.yaml") if p.stem != "sampt")
        raise ValueError(
            f"profile {profile!r}: no file {path}; give one of {available} or a path to a .yaml file")
    with open(path, encoding="utf-8") as stream:
        tree = yaml.safe_load(stream)
    if tree is None:
        return None
    if not isinstance(tree, dict):
        raise ValueError(f"profile {path} must hold a YAML mapping, not {type(tree).__name__}")
    if any(isinstance(v, dict) and "ros__parameters" in v for v in tree.values()):
        return str(path)  # already a ROS parameter file: rcl reads it as it is
    # A plain tree: launch_ros turns nested mappings into dotted parameter names.
    return tree


def _launch_setup(context: LaunchContext):
    share = _share_dir()
    namespace = LaunchConfiguration("namespace").perform(context).strip().strip("/")
    image_topic = LaunchConfiguration("image_topic").perform(context).strip()
    if not image_topic:
        raise ValueError("launch argument image_topic must not be empty")
    config_file = Path(LaunchConfiguration("config_file").perform(context)).expanduser()
    if not config_file.is_file():
        raise ValueError(f"launch argument config_file: no file {config_file}")
    mode = LaunchConfiguration("mode").perform(context).strip()
    if mode not in MODES and mode != "":
        raise ValueError(f"launch argument mode:={mode!r} must be one of {MODES} or empty")

    parameters = [str(config_file)]
    profile = _profile_parameters(LaunchConfiguration("profile").perform(context).strip(), share)
    if profile is not None:
        parameters.append(profile)
    overrides = {"use_sim_time": _flag(context, "use_sim_time")}
    if mode:
        overrides["node.mode"] = mode
    autostart = LaunchConfiguration("autostart").perform(context).strip()
    if autostart:
        overrides["node.autostart"] = _flag(context, "autostart")
    parameters.append(overrides)

    remappings = [
        ("image", image_topic),
        # image_transport's naming: the compressed stream of <topic> is <topic>/compressed.
        ("image/compressed", f"{image_topic.rstrip('/')}/compressed"),
        ("depth", LaunchConfiguration("depth_topic").perform(context)),
        ("camera_info", LaunchConfiguration("camera_info_topic").perform(context)),
    ]
    actions = [
        # sampt_node is a lifecycle node (it configures and activates itself unless
        # node.autostart is false); as a LifecycleNode action, launch files and lifecycle
        # managers can drive its transitions (launch_ros.events.lifecycle.ChangeState).
        LifecycleNode(
            package=PACKAGE,
            executable="sampt_node",
            name="sampt_node",
            namespace=namespace,
            parameters=parameters,
            remappings=remappings,
            ros_arguments=["--log-level", LaunchConfiguration("log_level").perform(context)],
            output="screen",
            emulate_tty=True,
        )
    ]
    if _flag(context, "rviz"):
        # The RViz config names /sampt/...; follow the node into another namespace by remapping.
        node_prefix = f"/{namespace}" if namespace else ""
        rviz_remaps = [] if namespace == RVIZ_NAMESPACE else [
            (f"/{RVIZ_NAMESPACE}/{topic}", f"{node_prefix}/{topic}") for topic in RVIZ_TOPICS]
        actions.append(Node(
            package="rviz2",
            executable="rviz2",
            name="sampt_rviz",
            arguments=["-d", str(share / "config" / "sampt.rviz")],
            parameters=[{"use_sim_time": overrides["use_sim_time"]}],
            remappings=rviz_remaps,
            output="log",
        ))
    return actions


def _fastdds_setup(context: LaunchContext):
    # Large shared-memory segment and UDP buffers so camera-size images are not dropped between
    # processes; set before the nodes start so every process of this launch uses it. A profile
    # chosen in the environment wins.
    if not _flag(context, "fastdds_profile"):
        return []
    if os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE") or os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return []
    return [
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", str(_share_dir() / "config" / "fastdds.xml")),
        # the profile's data_reader/data_writer settings (DYNAMIC sample buffers) apply only with this
        SetEnvironmentVariable("RMW_FASTRTPS_USE_QOS_FROM_XML", "1"),
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument(
            "image_topic", default_value="/camera/image_raw",
            description="camera image topic (sensor_msgs/Image); its /compressed is used when "
                        "node.compressed is true"),
        DeclareLaunchArgument(
            "namespace", default_value="sampt",
            description="namespace of the node and its topics (empty: the root namespace)"),
        DeclareLaunchArgument(
            "config_file",
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "sampt.yaml"]),
            description="ROS parameter file with the node's parameters"),
        DeclareLaunchArgument(
            "profile", default_value="cpu",
            description="parameter profile laid over config_file: a name from "
                        "share/sampt_ros/config (cpu, paper, paper_reinit, fast_gpu), a path to a "
                        ".yaml file, or none"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false",
            description="use /clock (bag replay)"),
        DeclareLaunchArgument(
            "rviz", default_value="false",
            description="start rviz2 with config/sampt.rviz"),
        DeclareLaunchArgument(
            "mode", default_value="", choices=["", *MODES],
            description="node.mode: live (newest frame wins) or lockstep (every frame, in "
                        "order); empty keeps the parameter files' value"),
        DeclareLaunchArgument(
            "autostart", default_value="", choices=["", "true", "false"],
            description="node.autostart: configure and activate at start (false: wait for a "
                        "lifecycle manager); empty keeps the parameter files' value"),
        DeclareLaunchArgument(
            "fastdds_profile", default_value="true",
            description="set FASTRTPS_DEFAULT_PROFILES_FILE to config/fastdds.xml (16 MiB "
                        "shared memory, 4 MiB UDP buffers) for the processes of this launch, "
                        "unless the environment names a profile (false: leave the transport alone)"),
        DeclareLaunchArgument(
            "depth_topic", default_value="/camera/depth/image_raw",
            description="depth image registered to the camera (used when node.use_depth is true)"),
        DeclareLaunchArgument(
            "camera_info_topic", default_value="/camera/camera_info",
            description="camera_info of the image (used when node.use_depth is true)"),
        DeclareLaunchArgument(
            "log_level", default_value="info", choices=["debug", "info", "warn", "error", "fatal"],
            description="the node's log level"),
        OpaqueFunction(function=_fastdds_setup),
        OpaqueFunction(function=_launch_setup),
    ])
