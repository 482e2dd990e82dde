"""prompt_publisher: stands in for a detector in the demo.

Watches the image stream (``image_raw`` by default), recognises which image of
the demo clip a frame shows (``picosam3_ros.core.clip``), and publishes that
image's ground-truth boxes as a ``picosam3_msgs/RoiPromptArray`` on
``prompts`` (ids = annotation ids, boxes scaled to the stream size), when the
shown image changes and every ``republish_period`` seconds (so prompts never go
stale). Like a real detector, it answers a frame after seeing it, so the
sensor node gets the new boxes a few frames after a scene cut.

Parameters: ``clip_dir`` ('' = the packaged clip), ``image_topic``,
``republish_period`` (s), ``max_prompts`` (0 = every instance of the image),
``max_match_distance`` (mean grey-level difference of 32x24 thumbnails above
which a frame is "not a clip image" and nothing is published).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, RegionOfInterest

from picosam3_msgs.msg import RoiPrompt, RoiPromptArray
from picosam3_ros.core.clip import DEFAULT_CLIP_DIR, Clip
from picosam3_ros.core.image_conversion import ImageConversionError, image_to_rgb
from picosam3_ros.nodes.node_config import ConfigError, Param, ParamTable
from picosam3_ros.nodes.node_main import run_node

NODE_NAME = "prompt_publisher"
PARAMS = ParamTable([
    Param("clip_dir", "", "demo clip folder ('' = the packaged clip)"),
    Param("image_topic", "image_raw", "frames to recognise"),
    Param("republish_period", 1.0, "seconds between repeats of the same prompt set", (0.05, 3600.0), True),
    Param("max_prompts", 0, "prompts per image (0 = all)", (0, 255), True),
    Param("max_match_distance", 40.0, "thumbnail grey difference above which a frame is unknown",
          (0.0, 255.0), True),
])


class PromptPublisherNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.params = PARAMS.declare(self)
        PARAMS.watch(self, lambda: self.params, self.parameters_changed)
        self.clip_dir = self.params["clip_dir"]
        image_topic = self.params["image_topic"]
        self.clip = Clip(self.clip_dir or DEFAULT_CLIP_DIR)
        self.publisher = self.create_publisher(RoiPromptArray, "prompts", QoSProfile(depth=10))
        self.create_subscription(Image, image_topic, self.image_callback, qos_profile_sensor_data)
        self.current: int | None = None
        self.last_publish = 0.0
        self.get_logger().info(
            f"standing in for a detector: {len(self.clip)} clip images from {self.clip.directory}, "
            f"watching '{image_topic}'"
        )

    def parameters_changed(self, changes: dict[str, Any]) -> None:
        self.params.update(changes)

    def image_callback(self, msg: Image) -> None:
        try:
            frame = image_to_rgb(msg)
        except ImageConversionError as exc:
            self.get_logger().warning(f"ignoring a frame: {exc}", throttle_duration_sec=5.0)
            return
        index, distance = self.clip.match(frame)
        if distance > self.params["max_match_distance"]:
            return
        now = time.monotonic()
        if index == self.current and now - self.last_publish < self.params["republish_period"]:
            return
        if index != self.current:
            self.get_logger().info(f"frame shows clip image {index} ({self.clip.images[index].file_name})")
        self.current, self.last_publish = index, now
        self.publisher.publish(self.prompt_array(index, (msg.width, msg.height), msg.header.frame_id))

    def prompt_array(self, index: int, frame_size: tuple[int, int], frame_id: str) -> RoiPromptArray:
        out = RoiPromptArray()
        out.header.stamp = self.get_clock().now().to_msg()
        out.header.frame_id = frame_id
        prompts = self.clip.images[index].prompts(frame_size)
        if self.params["max_prompts"]:
            prompts = prompts[: self.params["max_prompts"]]
        for prompt_id, (x, y, w, h) in prompts:
            prompt = RoiPrompt()
            prompt.header = out.header
            prompt.id = int(prompt_id)
            prompt.roi = RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)
            out.prompts.append(prompt)
        return out


def main(args: list[str] | None = None) -> int:
    return run_node(PromptPublisherNode, NODE_NAME, (ConfigError, ValueError, OSError), args)


if __name__ == "__main__":
    sys.exit(main())
