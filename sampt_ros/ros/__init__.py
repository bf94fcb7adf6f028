"""The ROS 2 adapter: a thin node over :mod:`sampt_ros.core`."""
