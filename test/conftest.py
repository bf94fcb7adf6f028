"""Shared pytest fixtures: the repository on sys.path and the optional ../shared folder."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SAMPT_SHARED", REPO.parent / "shared"))

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def shared_path(*parts: str) -> Path:
    """Path under ../shared, or skip the calling test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared evaluation data beside the checkout); absent here")
    return path


def _ros_missing():
    """Why the ROS tests cannot run here, or None: they need rclpy and the generated messages."""
    try:
        import rclpy  # noqa: F401

        from sampt_ros.msg import PointPrompt  # noqa: F401
        from sampt_ros.srv import RemoveObject  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
        return f"needs rclpy and the generated sampt_ros messages (run scripts/build_msgs.sh): {exc}"
    return None


ROS_MISSING = _ros_missing()
needs_ros = pytest.mark.skipif(ROS_MISSING is not None, reason=ROS_MISSING or "")


def ros_context(domain_id: int):
    """An rclpy context on its own domain, localhost discovery only (a generator for module fixtures)."""
    if ROS_MISSING:
        pytest.skip(ROS_MISSING)
    import rclpy

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    yield context
    context.try_shutdown()


def torch_threads(n: int):
    """Run the test with ``n`` torch threads, restoring the count after (a generator for fixtures)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def shared_dir() -> Path:
    return shared_path()


@pytest.fixture
def davis_root() -> Path:
    return shared_path("data", "davis2016")
