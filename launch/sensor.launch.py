"""Start the PicoSAM3 sensor node (and optionally the teleop web UI, the detections adapter, objects_3d).

    ros2 launch picosam3_ros sensor.launch.py                          # frames from image_raw
    ros2 launch picosam3_ros sensor.launch.py image_topic:=/camera/color/image_raw
    ros2 launch picosam3_ros sensor.launch.py image_transport:=compressed
    ros2 launch picosam3_ros sensor.launch.py backend:=auto camera:=picamera2
    ros2 launch picosam3_ros sensor.launch.py camera:=emulator teleop:=true
    ros2 launch picosam3_ros sensor.launch.py detections:=true detections_topic:=/detections
    ros2 launch picosam3_ros sensor.launch.py image_topic:=/camera/camera/color/image_raw objects_3d:=true \
        depth_topic:=/camera/camera/aligned_depth_to_color/image_raw \
        depth_info_topic:=/camera/camera/aligned_depth_to_color/camera_info
    ros2 launch picosam3_ros sensor.launch.py lifecycle:=true    # a managed node: configure/activate it

backend, camera, model, image_transport, image_qos and lifecycle, when given, override the config file
(config_file, default config/sensor.yaml, keyed `/**/picosam3_sensor` so namespace:= keeps it);
not given, the config file's values stand (an edited `image_transport: compressed` is kept). The node's
`image` input is remapped to image_topic (with image_transport:=compressed it reads
`<image_topic>/compressed`, as image_transport does); the teleop page reads the same frames the
same way. Unless you already chose a Fast DDS profile or transports, the launched processes get
config/fastdds_large_images.xml (large images over shared memory; README "Large images over
DDS"); fastdds_profile:=none turns that off.

Every launched node gets use_sim_time and log_level, the same output settings, and takes the
launch down when it exits: a node that cannot start (a bad parameter, a busy port) stops the
launch with its one-line reason instead of leaving the others running without it. Log lines are
coloured in a terminal and plain when the launch's output goes to a file or journald (unless
RCUTILS_COLORIZED_OUTPUT says otherwise).
"""

import os
import sys
from pathlib import Path

import yaml
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, Shutdown
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from picosam3_ros.nodes.fastdds_profile import DISABLED_VALUES, PROFILE_VARIABLE, USER_FASTDDS_SETTINGS
from picosam3_ros.nodes.sensor_params import SENSOR_PARAMS


def large_images_profile(context):
    """Point Fast DDS at the large-images profile, unless disabled or the user has their own."""
    profile = LaunchConfiguration("fastdds_profile").perform(context)
    if profile.strip().lower() in DISABLED_VALUES or any(os.environ.get(n) for n in USER_FASTDDS_SETTINGS):
        return []
    return [SetEnvironmentVariable(PROFILE_VARIABLE, profile)]


def log_colours(context):
    """Plain log lines when the launch's output is not a terminal (a file, journald), unless the
    user set RCUTILS_COLORIZED_OUTPUT; every node emulates a tty, so this one rule decides."""
    if COLOUR_VARIABLE in os.environ or sys.stdout.isatty():
        return []
    return [SetEnvironmentVariable(COLOUR_VARIABLE, "0")]


COLOUR_VARIABLE = "RCUTILS_COLORIZED_OUTPUT"


def _config_default(name: str) -> str:
    """A sensor parameter's default as the config file (and the table) has it: written once."""
    value = SENSOR_PARAMS.params[name].default
    return {True: "true", False: "false"}.get(value, value) if isinstance(value, bool) else (value or "''")


def _choices(name: str) -> str:
    return " | ".join(SENSOR_PARAMS.params[name].choices)


# name -> (default, description); every argument is listed in docs/parameters.md "Launch arguments".
ARGUMENTS = {
    "backend": ("", f"{_choices('backend')} ('' = the config file's: {_config_default('backend')})"),
    "camera": ("", f"none (subscribe to image_topic) | picamera2 | emulator ('' = the config file's: "
                   f"{_config_default('camera')})"),
    "model": ("", "directory with model_card.json ('' = the config file's: the packaged model)"),
    "namespace": ("", "namespace of the nodes and their topics"),
    "image_topic": ("image_raw", "camera:=none: the frames' topic (remaps the node's `image` input)"),
    "image_transport": ("", f"{_choices('image_transport')} (<image_topic>/compressed, jpeg/png; "
                            f"'' = the config file's: {_config_default('image_transport')})"),
    "image_qos": ("", f"{_choices('image_qos')} (input QoS; '' = the config file's: "
                      f"{_config_default('image_qos')})"),
    "teleop": ("false", "also start the teleop web UI"),
    "teleop_port": ("8088", "teleop UI port (http://127.0.0.1:PORT/)"),
    "detections": ("false", "also start detections_adapter (detector boxes -> prompts)"),
    "detections_topic": ("detections", "the detector's output topic"),
    "detection_type": ("vision_msgs/msg/Detection2DArray", "its type (or yolo_msgs/msg/DetectionArray)"),
    "use_sim_time": ("false", "true: every node uses /clock (a simulator, `ros2 bag play --clock`)"),
    "log_level": ("info", "debug | info | warn | error | fatal, for every node"),
    "lifecycle": ("", "true: the sensor node is a managed (lifecycle) node ('' = the config file's: "
                      f"{_config_default('lifecycle')})"),
    "objects_3d": ("false", "also start objects_3d (masks + aligned depth -> objects in 3D)"),
    "depth_topic": ("aligned_depth_to_color/image_raw", "objects_3d: depth aligned to image_topic"),
    "depth_info_topic": ("aligned_depth_to_color/camera_info", "objects_3d: that depth image's camera_info"),
}


OVERRIDES = ("backend", "camera", "model", "image_transport", "image_qos", "lifecycle")  # sensor parameters


def config_file_values(path: str) -> dict:
    """The sensor node's parameters as the config file sets them (over the code's defaults)."""
    values = SENSOR_PARAMS.defaults()
    for key, block in (yaml.safe_load(Path(path).read_text()) or {}).items():
        if str(key).rsplit("/", 1)[-1] == "picosam3_sensor":
            values.update((block or {}).get("ros__parameters", {}))
    return values


def node_settings(name: str) -> dict:
    """What every launched node gets alike: log level, output, and the launch ends with it."""
    return {
        "ros_arguments": ["--log-level", LaunchConfiguration("log_level")],
        "output": "screen",
        "emulate_tty": True,  # line-buffered output; colours: log_colours()
        "on_exit": Shutdown(reason=f"{name} exited"),
    }


def generate_launch_description():
    default_profile = PathJoinSubstitution(
        [FindPackageShare("picosam3_ros"), "config", "fastdds_large_images.xml"]
    )
    default_config = PathJoinSubstitution([FindPackageShare("picosam3_ros"), "config", "sensor.yaml"])
    arguments = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, (default, description) in ARGUMENTS.items()
    ] + [
        DeclareLaunchArgument(
            "config_file", default_value=default_config, description="node parameters (YAML)"
        ),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=default_profile,
            description="Fast DDS XML profile for large images (none = do not set one); "
            "ignored when FASTDDS_DEFAULT_PROFILES_FILE or FASTDDS_BUILTIN_TRANSPORTS is set",
        ),
    ]
    return LaunchDescription([
        *arguments,
        OpaqueFunction(function=large_images_profile),
        OpaqueFunction(function=log_colours),
        OpaqueFunction(function=nodes),
    ])


def nodes(context):
    """The nodes, once the arguments are known: only the overrides given reach the sensor node."""
    given = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDES}
    overrides = {name: value for name, value in given.items() if value}
    sensor_values = {**config_file_values(LaunchConfiguration("config_file").perform(context)), **overrides}
    sim_time = {"use_sim_time": LaunchConfiguration("use_sim_time")}
    image_topic = LaunchConfiguration("image_topic")
    sensor = Node(
        package="picosam3_ros",
        executable="sensor_node",
        name="picosam3_sensor",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("config_file"), overrides, sim_time],
        # The node derives `<image>/compressed` from the remapped name, as image_transport does.
        remappings=[("image", image_topic)],
        **node_settings("picosam3_sensor"),
    )
    teleop_config = PathJoinSubstitution([FindPackageShare("picosam3_ros"), "config", "teleop_ui.yaml"])
    # The page shows the frames the sensor node segments, read as the node reads them; when the
    # node owns the camera, its own (raw, reliable) `image_raw`.
    if sensor_values["camera"] != "none":
        teleop_input = {"image_topic": "image_raw", "image_transport": "raw", "image_qos": "auto"}
    else:
        teleop_input = {"image_topic": image_topic, "image_transport": sensor_values["image_transport"],
                        "image_qos": sensor_values["image_qos"]}
    teleop = Node(
        package="picosam3_ros",
        executable="teleop_ui",
        name="picosam3_teleop",
        namespace=LaunchConfiguration("namespace"),
        parameters=[teleop_config, {**teleop_input, "port": LaunchConfiguration("teleop_port")}, sim_time],
        condition=IfCondition(LaunchConfiguration("teleop")),
        **node_settings("picosam3_teleop"),
    )
    detections = Node(
        package="picosam3_ros",
        executable="detections_adapter",
        name="detections_adapter",
        namespace=LaunchConfiguration("namespace"),
        parameters=[{"detection_type": LaunchConfiguration("detection_type")}, sim_time],
        remappings=[("detections", LaunchConfiguration("detections_topic"))],
        condition=IfCondition(LaunchConfiguration("detections")),
        **node_settings("detections_adapter"),
    )
    objects_3d = Node(
        package="picosam3_ros",
        executable="objects_3d",
        name="picosam3_objects_3d",
        namespace=LaunchConfiguration("namespace"),
        parameters=[PathJoinSubstitution([FindPackageShare("picosam3_ros"), "config", "objects_3d.yaml"]),
                    sim_time],
        remappings=[("depth", LaunchConfiguration("depth_topic")),
                    ("depth/camera_info", LaunchConfiguration("depth_info_topic"))],
        condition=IfCondition(LaunchConfiguration("objects_3d")),
        **node_settings("picosam3_objects_3d"),
    )
    return [sensor, teleop, detections, objects_3d]
