"""The camera-frame input of a node: one subscription rule for the sensor node and the teleop page.

Both follow the same two parameters (rows in nodes/node_config.py, :data:`IMAGE_INPUT_PARAMS`):

* ``image_transport``: ``raw`` reads ``sensor_msgs/Image`` on the base topic; ``compressed``
  reads ``sensor_msgs/CompressedImage`` on ``<base>/compressed`` (image_transport's naming,
  after remapping), for a camera that only publishes compressed frames or one whose raw
  frames are lost between processes.
* ``image_qos``: ``auto`` subscribes reliable when every publisher on the topic is reliable
  (between two processes a reliable reader of a reliable driver gets every frame, a
  best-effort one lost two of three at 640x480), else best effort (SensorDataQoS matches every
  publisher); it is re-checked every ``recheck_period`` seconds on the steady clock (so also
  under sim time), so a driver started later or replaced is followed. ``sensor_data``,
  ``reliable`` and ``system_default`` pin it.
"""

from __future__ import annotations

from typing import Any, Callable

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data, qos_profile_system_default
from sensor_msgs.msg import CompressedImage, Image

from picosam3_ros.core.input_monitor import choose_image_reliability


def input_topic(node: Node, base: str, transport: str) -> str:
    """The resolved topic the frames come on: ``base`` (remapped) or ``<base>/compressed``."""
    topic = node.resolve_topic_name(base)
    return topic.rstrip("/") + "/compressed" if transport == "compressed" else topic


class ImageInput:
    """The image subscription of ``node``; ``callback`` gets Image or CompressedImage messages."""

    def __init__(
        self,
        node: Node,
        base: str,
        transport: str,
        qos_mode: str,
        callback: Callable[[Any], None],
        event_callbacks: Any = None,
        recheck_period: float = 1.0,
    ) -> None:
        self.node = node
        self.mode = qos_mode
        self.topic = input_topic(node, base, transport)
        self.msg_type = CompressedImage if transport == "compressed" else Image
        self.reliability = ""  # reliable | best_effort | system_default, once subscribed
        self._callback = callback
        self._event_callbacks = event_callbacks
        self._subscription = None
        self._timer = None
        self.refresh()
        if qos_mode == "auto":
            self._timer = node.create_timer(
                recheck_period, self.refresh, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def refresh(self) -> None:
        """(Re)subscribe with the QoS ``image_qos`` asks for (auto: what the publishers offer)."""
        if self.mode == "auto":
            infos = self.node.get_publishers_info_by_topic(self.topic)
            if not infos and self.reliability:
                return  # the driver went away: keep the subscription until another one shows up
            reliability = choose_image_reliability(
                ["reliable" if i.qos_profile.reliability == ReliabilityPolicy.RELIABLE else "best_effort"
                 for i in infos]
            )
        else:
            pinned = {"sensor_data": "best_effort", "reliable": "reliable"}
            reliability = pinned.get(self.mode, "system_default")
        if reliability == self.reliability:
            return
        if self._subscription is not None:
            self.node.destroy_subscription(self._subscription)
        if reliability == "reliable":  # depth 2: the consumers keep the newest frame only anyway
            qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        elif reliability == "best_effort":
            qos = qos_profile_sensor_data
        else:
            qos = qos_profile_system_default
        self._subscription = self.node.create_subscription(
            self.msg_type, self.topic, self._callback, qos, event_callbacks=self._event_callbacks
        )
        self.reliability = reliability
        self.node.get_logger().info(f"subscribed to {self.topic} ({reliability}, image_qos={self.mode})")

    def publisher_count(self) -> int:
        return self.node.count_publishers(self.topic)

    def close(self) -> None:
        """Unsubscribe and stop re-checking (a lifecycle node's deactivate); idempotent."""
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None
        if self._subscription is not None:
            self.node.destroy_subscription(self._subscription)
            self._subscription = None
        self.reliability = ""
