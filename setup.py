"""picosam3_ros: the ROS 2 node and runtime, plus the picosam3_train pipeline."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "picosam3_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["picosam3_ros", "picosam3_ros.*", "picosam3_train", "picosam3_train.*"]),
    package_data={
        PACKAGE: ["models/*.onnx", "models/*.json", "models/*.zip", "models/*.rpk", "demo/demo_clip/*",
                  "teleop/page/*"]
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    # Runtime dependencies come from package.xml (rosdep) or requirements/*.txt;
    # torch and friends are an extra so that a robot install never pulls them.
    install_requires=["setuptools"],
    extras_require={
        "train": ["torch", "onnx", "pycocotools", "tqdm", "matplotlib", "model-compression-toolkit"],
        # colcon picks pytest (not unittest) for `colcon test` from this extra.
        "test": ["pytest"],
    },
    zip_safe=True,
    maintainer="PicoSAM3-ROS maintainers",
    maintainer_email="maintainers@picosam3-ros.dev",
    description="Promptable in-sensor segmentation for ROS 2 (IMX500 or CPU).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sensor_node = picosam3_ros.nodes.sensor_node:main",
            "bag_eval = picosam3_ros.evaluation.bag_eval:main",
            "imx500_check = picosam3_ros.evaluation.imx500_check:main",
            "coco_to_bag = picosam3_ros.evaluation.coco_to_bag:main",
            "prompt_publisher = picosam3_ros.nodes.prompt_publisher_node:main",
            "teleop_ui = picosam3_ros.nodes.teleop_ui_node:main",
            "detections_adapter = picosam3_ros.nodes.detections_adapter_node:main",
            "objects_3d = picosam3_ros.nodes.objects_3d_node:main",
            "demo = picosam3_ros.demo.demo:main",
            "picosam3_train = picosam3_train.cli:main",
        ],
    },
)
