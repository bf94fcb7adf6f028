"""sampt_ros: SAM-PT (Segment Anything + point tracking) online, as a ROS 2 node.

``sampt_ros.core`` is the ROS-free engine, ``sampt_ros.ros`` the node, ``sampt_ros.tools`` the
evaluation, bag and benchmark tools.
"""

import pkgutil

# The rosidl-generated ``sampt_ros.msg`` / ``sampt_ros.srv`` may be installed in another
# ``sampt_ros`` folder (a venv's site-packages) than this source tree (an editable install,
# a checkout on sys.path): merge every ``sampt_ros`` folder on sys.path into this package.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
