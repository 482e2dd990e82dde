"""Start the PicoSAM3 sensor node (and optionally the teleop web UI).

    ros2 launch picosam3_ros sensor.launch.py backend:=auto camera:=picamera2
    ros2 launch picosam3_ros sensor.launch.py camera:=emulator teleop:=true

backend, camera and model override the config file (config_file, default config/sensor.yaml).
Unless you already chose a Fast DDS profile or transports, the launched processes get
config/fastdds_large_images.xml (large images over shared memory; README "Large images
over DDS"); fastdds_profile:='' turns that off.
"""

import os

from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from picosam3_ros.nodes.fastdds_profile import PROFILE_VARIABLE, USER_FASTDDS_SETTINGS


def large_images_profile(context):
    """Point Fast DDS at the large-images profile, unless disabled or the user has their own."""
    profile = LaunchConfiguration("fastdds_profile").perform(context)
    if not profile or any(os.environ.get(name) for name in USER_FASTDDS_SETTINGS):
        return []
    return [SetEnvironmentVariable(PROFILE_VARIABLE, profile)]


def generate_launch_description():
    default_profile = PathJoinSubstitution(
        [FindPackageShare("picosam3_ros"), "config", "fastdds_large_images.xml"]
    )
    default_config = PathJoinSubstitution([FindPackageShare("picosam3_ros"), "config", "sensor.yaml"])
    arguments = [
        DeclareLaunchArgument("backend", default_value="auto", description="auto | imx500 | onnx"),
        DeclareLaunchArgument("camera", default_value="none", description="none | picamera2 | emulator"),
        DeclareLaunchArgument(
            "model", default_value="", description="directory with model_card.json ('' = packaged model)"
        ),
        DeclareLaunchArgument(
            "config_file", default_value=default_config, description="node parameters (YAML)"
        ),
        DeclareLaunchArgument(
            "namespace", default_value="", description="namespace of the node and its topics"
        ),
        DeclareLaunchArgument("teleop", default_value="false", description="also start the teleop web UI"),
        DeclareLaunchArgument(
            "teleop_port", default_value="8088", description="teleop UI port (http://127.0.0.1:PORT/)"
        ),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=default_profile,
            description="Fast DDS XML profile for large images ('' = none); "
            "ignored when FASTDDS_DEFAULT_PROFILES_FILE or FASTDDS_BUILTIN_TRANSPORTS is set",
        ),
    ]
    overrides = {
        "backend": LaunchConfiguration("backend"),
        "camera": LaunchConfiguration("camera"),
        "model": LaunchConfiguration("model"),
    }
    sensor = Node(
        package="picosam3_ros",
        executable="sensor_node",
        name="picosam3_sensor",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("config_file"), overrides],
        output="screen",
        emulate_tty=True,
    )
    teleop_config = PathJoinSubstitution([FindPackageShare("picosam3_ros"), "config", "teleop_ui.yaml"])
    # The page shows the frames the sensor node segments: `image_raw` when it owns the camera.
    teleop_image = PythonExpression(
        ["'image' if '", LaunchConfiguration("camera"), "' == 'none' else 'image_raw'"]
    )
    teleop = Node(
        package="picosam3_ros",
        executable="teleop_ui",
        name="picosam3_teleop",
        namespace=LaunchConfiguration("namespace"),
        parameters=[teleop_config, {"image_topic": teleop_image, "port": LaunchConfiguration("teleop_port")}],
        output="screen",
        condition=IfCondition(LaunchConfiguration("teleop")),
    )
    return LaunchDescription([*arguments, OpaqueFunction(function=large_images_profile), sensor, teleop])
