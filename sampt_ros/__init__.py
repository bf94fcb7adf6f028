"""sampt_ros: SAM-PT (Segment Anything + point tracking) online, as a ROS 2 node.

``sampt_ros.core`` is the ROS-free engine, ``sampt_ros.ros`` the node, ``sampt_ros.tools`` the
evaluation, bag and benchmark tools.
"""

__version__ = "0.1.0"
