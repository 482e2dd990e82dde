"""A camera driver stand-in for test_node_robot.py, run as its own process (its own Fast DDS
settings, as a real driver's would be).

    python test/camera_driver_peer.py NONCE IMAGE.png --topic camera/image_raw --qos reliable
        [--format raw|jpeg|png] [--frames 60] [--rate 10] [--settle 2]

Waits for a subscriber, then ``--settle`` seconds (a driver runs long before anyone looks),
then publishes ``--frames`` frames of IMAGE at ``--rate`` Hz with header.frame_id = NONCE and
the current time as stamp: rgb8 ``sensor_msgs/Image`` (raw) or ``sensor_msgs/CompressedImage`` on
``<topic>/compressed``. QoS: reliable = a driver's ``qos 10`` (SystemDefaults), best_effort =
SensorDataQoS. Prints "published N" and exits.
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from picosam3_ros.core.image_conversion import encode_compressed, fill_image


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("nonce")
    parser.add_argument("image")
    parser.add_argument("--topic", default="camera/image_raw")
    parser.add_argument("--qos", choices=["reliable", "best_effort"], default="reliable")
    parser.add_argument("--format", choices=["raw", "jpeg", "png"], default="raw")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=2.0)
    args = parser.parse_args()
    rgb = cv2.cvtColor(cv2.imread(args.image), cv2.COLOR_BGR2RGB)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE) if args.qos == "reliable" \
        else qos_profile_sensor_data
    rclpy.init()
    node = rclpy.create_node("camera_driver_peer")
    if args.format == "raw":
        pub = node.create_publisher(Image, args.topic, qos)
    else:
        pub = node.create_publisher(CompressedImage, args.topic + "/compressed", qos)
        payload = encode_compressed(rgb, args.format)
    deadline = time.monotonic() + 60.0
    while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(args.settle)
    next_t = time.monotonic()
    for _ in range(args.frames):
        if args.format == "raw":
            msg = fill_image(Image(), rgb, "rgb8")
        else:
            msg = CompressedImage(format=args.format, data=payload)
        msg.header.frame_id = args.nonce
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        next_t += 1.0 / args.rate
        time.sleep(max(0.0, next_t - time.monotonic()))
    time.sleep(1.0)  # the last frames in flight
    print(f"published {args.frames}", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
