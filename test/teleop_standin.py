"""A stand-in for the sensor node with known output, for the teleop UI tests (its own process).

    python test/teleop_standin.py NONCE --width 640 --height 360 [--rate 10] [--frames-only]

Publishes uniform grey rgb8 frames on `image` (header.frame_id = NONCE) and, for every
frame, a `mask` and `segmentations` answering the latest RoiPromptArray received on
`prompts`: entry k (1-based) covers the middle half of prompt k's box with value k,
status OK, score 0.9, backend "standin", latency 7.5 ms. Prints one JSON line per
RoiPromptArray whose frame_id is NONCE: {"prompts": [[id, x, y, w, h], ...]}, so the test
sees exactly what reached ROS. Messages from other runs (other nonces) are ignored.
--frames-only: publish frames (grey, with a white square in the middle) and log prompts,
but no results: the real sensor node answers instead.
--textured: frames with photo-like texture (for bench/bench_teleop.py: grey JPEGs are too cheap).
--follow-shift DX: answer as a following node would: each prompt's box (Segmentation.box) and its
mask moved DX px right of where the prompt's box is (the object moved, the node followed it).
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image

from picosam3_msgs.msg import RoiPromptArray, Segmentation, SegmentationArray

GREY = 128


class StandIn(Node):
    def __init__(self, nonce: str, width: int, height: int, rate: float, frames_only: bool,
                 textured: bool = False, follow_shift: int = 0) -> None:
        super().__init__("teleop_standin")
        self.nonce, self.width, self.height = nonce, width, height
        self.follow_shift = follow_shift
        self.prompts: list[tuple[int, int, int, int, int]] = []
        self.image_pub = self.create_publisher(Image, "image", qos_profile_sensor_data)
        self.mask_pub = self.create_publisher(Image, "mask", QoSProfile(depth=5))
        self.seg_pub = self.create_publisher(SegmentationArray, "segmentations", QoSProfile(depth=5))
        self.create_subscription(RoiPromptArray, "prompts", self.prompts_callback, QoSProfile(depth=10))
        self.frames_only = frames_only
        frame = np.full((height, width, 3), GREY, dtype=np.uint8)
        if frames_only:
            frame[height // 3: 2 * height // 3, width // 3: 2 * width // 3] = 255
        if textured:
            noise = np.random.default_rng(0).normal(0, 60, (height, width, 3)).astype(np.float32)
            smooth = cv2.GaussianBlur(noise, (0, 0), 3) * 4 + cv2.GaussianBlur(noise, (0, 0), 0.7) * 0.5
            frame = np.clip(smooth + GREY, 0, 255).astype(np.uint8)
        self.frame = frame.tobytes()
        if rate > 0:  # --rate 0: no frames, only the prompt log
            self.create_timer(1.0 / rate, self.timer_callback)

    def prompts_callback(self, msg: RoiPromptArray) -> None:
        if msg.header.frame_id != self.nonce:
            return
        self.prompts = [(p.id, p.roi.x_offset, p.roi.y_offset, p.roi.width, p.roi.height)
                        for p in msg.prompts]
        print(json.dumps({"prompts": self.prompts}), flush=True)

    def timer_callback(self) -> None:
        image = Image(height=self.height, width=self.width, encoding="rgb8", step=3 * self.width)
        image.header.stamp = self.get_clock().now().to_msg()
        image.header.frame_id = self.nonce
        image.data = self.frame
        self.image_pub.publish(image)
        if self.frames_only:
            return

        mask = np.zeros((self.height, self.width), dtype=np.uint8)
        segs = SegmentationArray(header=image.header)
        for k, (pid, x, y, w, h) in enumerate(self.prompts, start=1):
            if self.follow_shift:  # followed: the box (and the mask) where the object went
                x = min(x + self.follow_shift, self.width - w)
            mask[y + h // 4: y + h - h // 4, x + w // 4: x + w - w // 4] = k
            seg = Segmentation(header=image.header, prompt_id=pid, score=0.9, status=Segmentation.OK,
                               backend="standin", latency_ms=7.5)
            seg.crop.x_offset, seg.crop.y_offset, seg.crop.width, seg.crop.height = x, y, w, h
            seg.box.x_offset, seg.box.y_offset, seg.box.width, seg.box.height = x, y, w, h
            segs.segmentations.append(seg)
        mask_msg = Image(header=image.header, height=self.height, width=self.width, encoding="mono8",
                         step=self.width)
        mask_msg.data = mask.tobytes()
        # Results first, then the mask, like a node that fills both from one batch.
        self.seg_pub.publish(segs)
        self.mask_pub.publish(mask_msg)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("nonce")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--frames-only", action="store_true")
    parser.add_argument("--textured", action="store_true")
    parser.add_argument("--follow-shift", type=int, default=0)
    args = parser.parse_args()
    rclpy.init()
    node = StandIn(args.nonce, args.width, args.height, args.rate, args.frames_only, args.textured,
                   args.follow_shift)
    print(json.dumps({"ready": True}), flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return None


if __name__ == "__main__":
    sys.exit(main())
