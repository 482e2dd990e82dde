"""detections_adapter: a detector's boxes in, the sensor node's prompts out.

Subscribes to ``detections`` (``detection_type``, default vision_msgs/msg/Detection2DArray;
yolo_ros's yolo_msgs/msg/DetectionArray works too), keeps the detections of the wanted
classes above ``min_score``, the best ``top_k`` of them, and publishes them as one
``picosam3_msgs/RoiPromptArray`` on ``prompts`` with the detections' header (so the
sensor node checks the frame_id). Prompt ids follow the detector's tracking ids where it
gives them. An empty detection array publishes an empty prompt set (it clears the prompts).

The message type is loaded by name when the node starts: vision_msgs need not be
installed to build or test this package. The logic is in picosam3_ros/core/detections.py.
"""

from __future__ import annotations

import sys
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile

from picosam3_msgs.msg import RoiPrompt, RoiPromptArray
from picosam3_ros.core.detections import DetectionFilter, TrackIds, read_detections, select, to_prompts
from picosam3_ros.nodes.message_types import load_message_type
from picosam3_ros.nodes.node_config import ConfigError, Param, ParamTable, type_name_check
from picosam3_ros.nodes.node_main import run_node

NODE_NAME = "detections_adapter"


PARAMS = ParamTable([
    Param("detection_type", "vision_msgs/msg/Detection2DArray",
          "message type of `detections`: vision_msgs/msg/Detection2DArray, yolo_msgs/msg/DetectionArray, "
          "or any type with the same fields", check=type_name_check("detection_type")),
    Param("classes", "", "comma-separated class ids/names to keep ('' = every class)", None, True),
    Param("min_score", 0.5, "detections scoring below this are ignored", (0.0, 1.0), True),
    Param("top_k", 8, "keep the best k detections (0 = all)", (0, 255), True),
])


class DetectionsAdapterNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.params = PARAMS.declare(self)
        self.rule = self._rule()
        PARAMS.watch(self, lambda: self.params, self.parameters_changed)
        msg_type = load_message_type(self.params["detection_type"])
        self.tracks = TrackIds()
        self.publisher = self.create_publisher(RoiPromptArray, "prompts", QoSProfile(depth=10))
        self.create_subscription(msg_type, "detections", self.detections_callback, QoSProfile(depth=10))
        self.get_logger().info(
            f"{self.resolve_topic_name('detections')} ({self.params['detection_type']}) -> "
            f"{self.resolve_topic_name('prompts')}"
        )

    def _rule(self) -> DetectionFilter:
        params = self.params
        return DetectionFilter(
            DetectionFilter.parse_classes(params["classes"]), params["min_score"], params["top_k"]
        )

    def parameters_changed(self, changes: dict[str, Any]) -> None:
        self.params.update(changes)
        self.rule = self._rule()

    def detections_callback(self, msg: Any) -> None:
        try:
            detections = select(read_detections(msg, self.rule.classes), self.rule)
        except (AttributeError, TypeError, ValueError) as exc:  # a type without the expected fields
            self.get_logger().error(f"cannot read detections: {exc}", throttle_duration_sec=5.0)
            return
        out = RoiPromptArray(header=msg.header)
        for prompt_id, (x, y, w, h) in to_prompts(detections, self.tracks):
            prompt = RoiPrompt(header=msg.header, id=prompt_id)
            prompt.roi.x_offset, prompt.roi.y_offset, prompt.roi.width, prompt.roi.height = x, y, w, h
            out.prompts.append(prompt)
        self.publisher.publish(out)


def main(args: list[str] | None = None) -> int:
    return run_node(DetectionsAdapterNode, NODE_NAME, (ConfigError,), args)


if __name__ == "__main__":
    sys.exit(main())
