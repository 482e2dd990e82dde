"""Start the PicoSAM3 sensor node (and optionally the teleop web UI and the detections adapter).

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

backend, camera, model, image_transport, image_qos and lifecycle override the config file (config_file,
default config/sensor.yaml, keyed `/**/picosam3_sensor` so namespace:= keeps it). The node's
`image` input is remapped to image_topic (with image_transport:=compressed it reads
`<image_topic>/compressed`, as image_transport does). Unless you already chose a Fast DDS
profile or transports, the launched processes get config/fastdds_large_images.xml (large
images over shared memory; README "Large images over DDS"); fastdds_profile:=none turns that off.
"""

import os

from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from picosam3_ros.nodes.fastdds_profile import DISABLED_VALUES, PROFILE_VARIABLE, USER_FASTDDS_SETTINGS


def large_images_profile(context):
    """Point Fast DDS at the large-images profile, unless disabled or the user has their own."""
    profile = LaunchConfiguration("fastdds_profile").perform(context)
    if profile.strip().lower() in DISABLED_VALUES or any(os.environ.get(n) for n in USER_FASTDDS_SETTINGS):
        return []
    return [SetEnvironmentVariable(PROFILE_VARIABLE, profile)]


# name -> (default, description); every argument is listed in README "Launch arguments".
ARGUMENTS = {
    "backend": ("auto", "auto | imx500 | onnx"),
    "camera": ("none", "none (subscribe to image_topic) | picamera2 | emulator"),
    "model": ("", "directory with model_card.json ('' = packaged model)"),
    "namespace": ("", "namespace of the nodes and their topics"),
    "image_topic": ("image_raw", "camera:=none: the frames' topic (remaps the node's `image` input)"),
    "image_transport": ("raw", "raw | compressed (reads <image_topic>/compressed, jpeg/png)"),
    "image_qos": ("auto", "auto | sensor_data | reliable | system_default (input subscription QoS)"),
    "teleop": ("false", "also start the teleop web UI"),
    "teleop_port": ("8088", "teleop UI port (http://127.0.0.1:PORT/)"),
    "detections": ("false", "also start detections_adapter (detector boxes -> prompts)"),
    "detections_topic": ("detections", "the detector's output topic"),
    "detection_type": ("vision_msgs/msg/Detection2DArray", "its type (or yolo_msgs/msg/DetectionArray)"),
    "lifecycle": ("false", "the sensor node as a managed (lifecycle) node: it waits for configure/activate"),
    "objects_3d": ("false", "also start objects_3d (masks + aligned depth -> objects in 3D)"),
    "depth_topic": ("aligned_depth_to_color/image_raw", "objects_3d: depth aligned to image_topic"),
    "depth_info_topic": ("aligned_depth_to_color/camera_info", "objects_3d: that depth image's camera_info"),
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
    overrides = {
        name: LaunchConfiguration(name)
        for name in ("backend", "camera", "model", "image_transport", "image_qos", "lifecycle")
    }
    image_topic = LaunchConfiguration("image_topic")
    sensor = Node(
        package="picosam3_ros",
        executable="sensor_node",
        name="picosam3_sensor",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("config_file"), overrides],
        # The node derives `<image>/compressed` from the remapped name, as image_transport does.
        remappings=[("image", image_topic)],
        output="screen",
        emulate_tty=True,
    )
    teleop_config = PathJoinSubstitution([FindPackageShare("picosam3_ros"), "config", "teleop_ui.yaml"])
    # The page shows the frames the sensor node segments: `image_raw` when it owns the camera.
    teleop_image = PythonExpression(
        ["'", image_topic, "' if '", LaunchConfiguration("camera"), "' == 'none' else 'image_raw'"]
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
    detections = Node(
        package="picosam3_ros",
        executable="detections_adapter",
        name="detections_adapter",
        namespace=LaunchConfiguration("namespace"),
        parameters=[{"detection_type": LaunchConfiguration("detection_type")}],
        remappings=[("detections", LaunchConfiguration("detections_topic"))],
        output="screen",
        condition=IfCondition(LaunchConfiguration("detections")),
    )
    objects_3d = Node(
        package="picosam3_ros",
        executable="objects_3d",
        name="picosam3_objects_3d",
        namespace=LaunchConfiguration("namespace"),
        parameters=[PathJoinSubstitution([FindPackageShare("picosam3_ros"), "config", "objects_3d.yaml"])],
        remappings=[("depth", LaunchConfiguration("depth_topic")),
                    ("depth/camera_info", LaunchConfiguration("depth_info_topic"))],
        output="screen",
        condition=IfCondition(LaunchConfiguration("objects_3d")),
    )
    return LaunchDescription(
        [*arguments, OpaqueFunction(function=large_images_profile), sensor, teleop, detections, objects_3d]
    )
