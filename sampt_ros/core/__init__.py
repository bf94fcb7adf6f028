"""The ROS-free SAM-PT engine: point tracking, query sampling, prompted segmentation, metrics.

Nothing in this package imports rclpy or ROS message packages, so evaluation tools and tests
run anywhere. torch is imported only by the modules that need it (PIPS, SAM).
"""
