"""Start the PicoSAM3 sensor node (and optionally the teleop web UI).

    ros2 launch picosam3_ros sensor.launch.py backend:=auto camera:=picamera2
    ros2 launch picosam3_ros sensor.launch.py camera:=emulator teleop:=true

backend, camera and model override the config file (config_file, default config/sensor.yaml).
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description():
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
    teleop = Node(
        package="picosam3_ros",
        executable="teleop_ui",
        name="picosam3_teleop",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        condition=IfCondition(LaunchConfiguration("teleop")),
    )
    return LaunchDescription([*arguments, sensor, teleop])
