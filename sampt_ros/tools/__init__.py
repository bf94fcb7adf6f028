"""Command-line tools: evaluation, rosbag conversion and replay, benchmarks, the demo."""
