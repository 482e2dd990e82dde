"""One side of the DDS exchange test (test_dds_exchange.py), run as its own process.

    python test/dds_peer.py pub NONCE   # publish RoiPromptArray + SegmentationArray until Ctrl-C/SIGTERM
    python test/dds_peer.py sub NONCE --timeout S
        # print one JSON line per type received with header.frame_id == NONCE, exit 0
        # when both arrived, 2 when the timeout passes first

Only messages carrying NONCE count, so another run of the suite on the same domain
cannot make the test pass or fail. The environment (ROS_DOMAIN_ID, discovery range)
comes from the test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from picosam3_msgs.msg import RoiPrompt, RoiPromptArray, Segmentation, SegmentationArray

PROMPTS_TOPIC = "picosam3_test/prompts"
SEGMENTATIONS_TOPIC = "picosam3_test/segmentations"
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def build_messages(nonce: str) -> tuple[RoiPromptArray, SegmentationArray]:
    prompts = RoiPromptArray()
    prompts.header.frame_id = nonce
    prompts.header.stamp.sec = 42
    for prompt_id, roi in [(3, (100, 50, 64, 32)), (9, (0, 0, 4056, 3040))]:
        prompt = RoiPrompt(id=prompt_id)
        prompt.header.frame_id = nonce
        prompt.roi.x_offset, prompt.roi.y_offset, prompt.roi.width, prompt.roi.height = roi
        prompts.prompts.append(prompt)

    segs = SegmentationArray()
    segs.header.frame_id = nonce
    segs.header.stamp.sec = 43
    ok = Segmentation(prompt_id=3, score=0.75, status=Segmentation.OK, backend="onnx", latency_ms=11.5)
    ok.header = segs.header
    ok.crop.x_offset, ok.crop.y_offset, ok.crop.width, ok.crop.height = 90, 32, 84, 84
    ok.mask.height, ok.mask.width, ok.mask.encoding, ok.mask.step = 2, 3, "mono8", 3
    ok.mask.data = bytes([0, 255, 0, 255, 255, 255])
    stale = Segmentation(prompt_id=9, status=Segmentation.STALE_PROMPT, backend="imx500")
    stale.header = segs.header
    segs.segmentations = [ok, stale]
    return prompts, segs


def describe(msg: RoiPromptArray | SegmentationArray) -> dict:
    """The received values, as plain JSON for the test to check."""
    if isinstance(msg, RoiPromptArray):
        return {
            "type": "RoiPromptArray",
            "stamp": msg.header.stamp.sec,
            "prompts": [
                [p.id, p.header.frame_id == msg.header.frame_id,
                 [p.roi.x_offset, p.roi.y_offset, p.roi.width, p.roi.height]]
                for p in msg.prompts
            ],
        }
    return {
        "type": "SegmentationArray",
        "stamp": msg.header.stamp.sec,
        "segmentations": [
            {
                "prompt_id": s.prompt_id,
                "crop": [s.crop.x_offset, s.crop.y_offset, s.crop.width, s.crop.height],
                "mask": [s.mask.height, s.mask.width, s.mask.encoding, list(bytes(s.mask.data))],
                "score": s.score,
                "status": s.status,
                "backend": s.backend,
                "latency_ms": s.latency_ms,
            }
            for s in msg.segmentations
        ],
    }


class Publisher(Node):
    def __init__(self, nonce: str):
        super().__init__("picosam3_test_pub")
        self.prompts, self.segs = build_messages(nonce)
        self.prompts_pub = self.create_publisher(RoiPromptArray, PROMPTS_TOPIC, QOS)
        self.segs_pub = self.create_publisher(SegmentationArray, SEGMENTATIONS_TOPIC, QOS)
        self.create_timer(0.1, self.timer_callback)

    def timer_callback(self) -> None:
        self.prompts_pub.publish(self.prompts)
        self.segs_pub.publish(self.segs)


class Subscriber(Node):
    def __init__(self, nonce: str):
        super().__init__("picosam3_test_sub")
        self.nonce = nonce
        self.seen: set[str] = set()
        self.create_subscription(RoiPromptArray, PROMPTS_TOPIC, self.message_callback, QOS)
        self.create_subscription(SegmentationArray, SEGMENTATIONS_TOPIC, self.message_callback, QOS)

    def message_callback(self, msg) -> None:
        if msg.header.frame_id != self.nonce:
            return  # someone else's run on the same domain
        info = describe(msg)
        if info["type"] not in self.seen:
            self.seen.add(info["type"])
            print(json.dumps(info), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["pub", "sub"])
    parser.add_argument("nonce")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    rclpy.init()  # installs SIGINT and SIGTERM handlers: spin() then raises ExternalShutdownException
    try:
        if args.role == "pub":
            node = Publisher(args.nonce)
            print("READY", flush=True)
            rclpy.spin(node)
            return 0
        node = Subscriber(args.nonce)
        print("READY", flush=True)
        deadline = time.monotonic() + args.timeout
        while len(node.seen) < 2 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        return 0 if len(node.seen) == 2 else 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
