"""detections_adapter: a detector's boxes in, the sensor node's prompts out.

Subscribes to ``detections`` (``detection_type``, default vision_msgs/msg/Detection2DArray;
yolo_ros's yolo_msgs/msg/DetectionArray works too), keeps the detections of the wanted
classes above ``min_score``, the best ``top_k`` of them, and publishes them as one
``picosam3_msgs/RoiPromptArray`` on ``prompts`` with the detections' header (so the
sensor node checks the frame_id). Prompt ids follow the detector's tracking ids where it
gives them. An empty detection array publishes an empty prompt set (it clears the prompts).

The message type is loaded by name when the node starts: vision_msgs need not be
installed to build or test this package. The logic is in picosam3_ros/core/detections.py.

No message can stop it or hold it long: the subscription takes the serialized bytes, a
message over ``max_message_bytes`` is dropped unread, only the first ``max_detections``
detections are deserialized (core/prompt_wire.py rewrites the count; rclpy used to take
1.8 s for 10,000), every number is checked (core/detections.py), and what is dropped is
counted and logged at most every 5 s. Anything else a message raises is logged (throttled)
and the next message is read as usual.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message

from picosam3_msgs.msg import RoiPrompt, RoiPromptArray
from picosam3_ros.core.detections import (
    DEFAULT_MAX_COORDINATE,
    DetectionFilter,
    Dropped,
    TrackIds,
    read_detections,
    select,
    to_prompts,
)
from picosam3_ros.core.prompt_wire import WireFormatError, limit_array
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
    Param("max_detections", 1000, "detections read from one message (the first ones); the rest are "
          "dropped and counted", (1, 65535), True),
    Param("max_coordinate", DEFAULT_MAX_COORDINATE, "boxes with a centre or size beyond this many pixels "
          "are dropped and counted (no camera frame is that large)", (1.0, 1e6), True),
    Param("max_message_bytes", 8 << 20, "a detections message larger than this is dropped unread "
          "(serialized size)", (1024, 1 << 30), True),
])
DROP_LOG_PERIOD_S = 5.0


class DetectionsAdapterNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.params = PARAMS.declare(self)
        self.rule = self._rule()
        PARAMS.watch(self, lambda: self.params, self.parameters_changed)
        msg_type = load_message_type(self.params["detection_type"])
        self.msg_type = msg_type
        self.tracks = TrackIds()
        self.dropped = Dropped()  # since the last log line about them
        self._dropped_logged = -DROP_LOG_PERIOD_S
        self.publisher = self.create_publisher(RoiPromptArray, "prompts", QoSProfile(depth=10))
        # Raw: the bytes are bounded before rclpy turns them into Python objects.
        self.create_subscription(msg_type, "detections", self.detections_callback, QoSProfile(depth=10),
                                 raw=True)
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

    def detections_callback(self, data: bytes) -> None:
        try:
            self._read(data)
        except Exception as exc:  # never die of a message: say it, read the next one
            self.get_logger().error(f"cannot read a detections message ({len(data)} bytes): "
                                    f"{type(exc).__name__}: {str(exc)[:200]}", throttle_duration_sec=5.0)
        self._log_dropped()

    def _read(self, data: bytes) -> None:
        params = self.params
        if len(data) > params["max_message_bytes"]:
            self.dropped[f"in messages over max_message_bytes ({len(data)} bytes), unread"] += 1
            return
        try:
            cut, total = limit_array(data, params["max_detections"])
        except WireFormatError as exc:
            raise ValueError(f"not a Header-then-detections message: {exc}") from None
        if total > params["max_detections"]:
            self.dropped["past max_detections in a message"] += total - params["max_detections"]
        msg = deserialize_message(cut, self.msg_type)
        read = read_detections(msg, self.rule.classes, self.dropped, params["max_coordinate"])
        out = RoiPromptArray(header=msg.header)
        for prompt_id, (x, y, w, h) in to_prompts(select(read, self.rule), self.tracks, self.dropped):
            prompt = RoiPrompt(header=msg.header, id=prompt_id)
            prompt.roi.x_offset, prompt.roi.y_offset, prompt.roi.width, prompt.roi.height = x, y, w, h
            out.prompts.append(prompt)
        self.publisher.publish(out)

    def _log_dropped(self) -> None:
        now = time.monotonic()
        if self.dropped and now - self._dropped_logged >= DROP_LOG_PERIOD_S:
            self.get_logger().warning(f"detections dropped since the last such line: {self.dropped.line()}")
            self.dropped = Dropped()
            self._dropped_logged = now


def main(args: list[str] | None = None) -> int:
    return run_node(DetectionsAdapterNode, NODE_NAME, (ConfigError,), args)


if __name__ == "__main__":
    sys.exit(main())
