"""One side of the large-image test (test_large_images.py), run as its own process.

    python test/large_image_peer.py pub NONCE --frames 30 --rate 10
        # wait for a subscriber, publish 640x480 rgb8 frames (best-effort, depth 1), exit
    python test/large_image_peer.py sub NONCE
        # until SIGINT, count intact frames whose frame_id is NONCE/<index>; then print
        # one JSON line {"received": N, "corrupt": M}

Frame i is filled with the byte i % 251, so a frame patched together from other
frames' fragments shows up as corrupt. The environment (ROS_DOMAIN_ID, discovery
range, Fast DDS profile) comes from the test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

TOPIC = "picosam3_test/large_image"
WIDTH, HEIGHT = 640, 480
QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)


def publish(nonce: str, frames: int, rate: float) -> int:
    rclpy.init()
    node = rclpy.create_node("large_image_pub")
    pub = node.create_publisher(Image, TOPIC, QOS)
    deadline = time.monotonic() + 60.0
    while pub.get_subscription_count() < 1:
        if time.monotonic() > deadline:
            print("no subscriber matched", file=sys.stderr)
            return 2
        time.sleep(0.05)
    time.sleep(1.0)  # the match is known here; give the subscriber's side time to settle too
    next_t = time.monotonic()
    for i in range(frames):
        msg = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3)
        msg.header.frame_id = f"{nonce}/{i}"
        msg.data = np.full(HEIGHT * WIDTH * 3, i % 251, np.uint8).tobytes()
        pub.publish(msg)
        next_t += 1.0 / rate
        time.sleep(max(0.0, next_t - time.monotonic()))
    time.sleep(1.0)  # frames still in flight
    node.destroy_node()
    rclpy.shutdown()
    return 0


def subscribe(nonce: str) -> int:
    rclpy.init()
    node = rclpy.create_node("large_image_sub")
    received: set[int] = set()
    corrupt = [0]

    def image_callback(msg: Image) -> None:
        prefix, _, index = msg.header.frame_id.rpartition("/")
        if prefix != nonce:
            return
        data = np.frombuffer(msg.data, np.uint8)
        i = int(index)
        if data.size == HEIGHT * WIDTH * 3 and data[0] == data[-1] == i % 251 and (data == i % 251).all():
            received.add(i)
        else:
            corrupt[0] += 1

    node.create_subscription(Image, TOPIC, image_callback, QOS)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    print(json.dumps({"received": len(received), "corrupt": corrupt[0]}), flush=True)
    node.destroy_node()
    if rclpy.ok():
        rclpy.shutdown()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["pub", "sub"])
    parser.add_argument("nonce")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args()
    if args.role == "pub":
        return publish(args.nonce, args.frames, args.rate)
    return subscribe(args.nonce)


if __name__ == "__main__":
    sys.exit(main())
