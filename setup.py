"""pip install path for sampt_ros (the ROS 2 build uses CMakeLists.txt + package.xml).

``pip install -e .`` gives the command-line tools and the node's console script; the ROS message
types are generated separately (scripts/build_msgs.sh, or colcon).
"""

from setuptools import find_packages, setup

setup(
    name="sampt_ros",
    version="0.1.0",
    description="SAM-PT (Segment Anything + PIPS point tracking) online, as a ROS 2 node",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["sampt_ros", "sampt_ros.*"]),
    install_requires=["numpy", "opencv-python-headless", "PyYAML", "tqdm", "Pillow"],
    extras_require={
        "models": ["torch", "torchvision", "segment-anything"],
        "hq": ["segment-anything-hq", "timm"],  # sam2: SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2
        "eval": ["scikit-image", "matplotlib", "imageio", "imageio-ffmpeg", "vos-benchmark"],
        "bags": ["rosbags", "rosbags-image"],
    },
    entry_points={
        "console_scripts": [
            "sampt-eval = sampt_ros.tools.eval:main",
            "sampt-benchmark = sampt_ros.tools.benchmark:main",
            "sampt-bag = sampt_ros.tools.bags:main",
            "sampt-replay = sampt_ros.tools.replay:main",
            "sampt-demo = sampt_ros.tools.demo:main",
            "sampt-node = sampt_ros.ros.node:main",
        ],
    },
)
