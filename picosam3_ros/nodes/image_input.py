"""The camera-frame input of a node: one subscription rule for the sensor node and the teleop page.

Both follow the same two parameters (rows in nodes/node_config.py, :data:`IMAGE_INPUT_PARAMS`):

* ``image_transport``: ``raw`` reads ``sensor_msgs/Image`` on the base topic; ``compressed``
  reads ``sensor_msgs/CompressedImage`` on ``<base>/compressed`` (image_transport's naming,
  after remapping), for a camera that only publishes compressed frames or one whose raw
  frames are lost between processes.
* ``image_qos``: ``auto`` subscribes reliable when every publisher on the topic is reliable
  (between two processes a reliable reader of a reliable driver gets every frame, a
  best-effort one lost two of three at 640x480), else best effort (SensorDataQoS matches every
  publisher). It is re-checked when a publisher comes or goes (the subscription's matched
  event) and every ``recheck_period`` seconds on the steady clock (so also under sim time).
  ``sensor_data``, ``reliable`` and ``system_default`` pin it.

Make before break: a new QoS gets its own subscription while the old one keeps delivering;
the first frame through the new one makes it the source, and the old one is destroyed on the
next tick (replacing it at once lost 1-3 s of frames while the new reader was matched, and the
silence read as a QoS mismatch). A frame that comes through both while switching is taken
once (the writer's publication sequence number).
"""

from __future__ import annotations

from typing import Any, Callable

from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data, qos_profile_system_default
from sensor_msgs.msg import CompressedImage, Image

from picosam3_ros.core.input_monitor import choose_image_reliability

# Writers come and go with drivers: at most this many sequence counters are kept.
MAX_WRITERS = 64


def input_topic(node: Node, base: str, transport: str) -> str:
    """The resolved topic the frames come on: ``base`` (remapped) or ``<base>/compressed``."""
    topic = node.resolve_topic_name(base)
    return topic.rstrip("/") + "/compressed" if transport == "compressed" else topic


def frame_writer(info: Any) -> tuple[bytes, int | None]:
    """(writer gid, publication sequence number) of a received frame's message info."""
    info = info or {}
    gid = info.get("publisher_gid") or {}
    return bytes(gid.get("data") or b""), info.get("publication_sequence_number")


class ImageInput:
    """The image subscription of ``node``.

    ``callback(msg, info)`` gets each Image or CompressedImage once, with its message info
    (``frame_writer(info)`` reads the writer and sequence number); ``lost_callback(info)``
    gets the DDS sample-lost events of the subscription in use.
    """

    def __init__(
        self,
        node: Node,
        base: str,
        transport: str,
        qos_mode: str,
        callback: Callable[[Any, Any], None],
        lost_callback: Callable[[Any], None] | None = None,
        recheck_period: float = 1.0,
    ) -> None:
        self.node = node
        self.mode = qos_mode
        self.topic = input_topic(node, base, transport)
        self.msg_type = CompressedImage if transport == "compressed" else Image
        self.reliability = ""  # reliable | best_effort | system_default, once subscribed
        self._callback = callback
        self._lost_callback = lost_callback
        self._subscription = None
        self._pending: tuple[Any, str] | None = None  # a new QoS, until its first frame arrives
        self._retired: list = []  # replaced subscriptions, destroyed on the next tick
        self._last_sequence: dict[bytes, int] = {}
        self.refresh()
        self._timer = node.create_timer(
            recheck_period, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _tick(self) -> None:
        while self._retired:
            self.node.destroy_subscription(self._retired.pop())
        if self.mode == "auto":
            self.refresh()

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
        pending = self._pending
        if pending is not None and pending[1] == reliability:
            return  # waiting for its first frame
        if pending is not None:  # the publishers changed again before it delivered
            self._retired.append(pending[0])
            self._pending = None
        if reliability == self.reliability:
            return
        subscription = self._subscribe(reliability)
        if self._subscription is None:
            self._subscription, self.reliability = subscription, reliability
            self.node.get_logger().info(f"subscribed to {self.topic} ({reliability}, image_qos={self.mode})")
        else:
            self._pending = (subscription, reliability)
            self.node.get_logger().info(
                f"subscribing to {self.topic} {reliability} (image_qos={self.mode}, as its publishers "
                f"are); frames come through the {self.reliability} subscription until then")

    def _subscribe(self, reliability: str):
        if reliability == "reliable":  # depth 2: the consumers keep the newest frame only anyway
            qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        elif reliability == "best_effort":
            qos = qos_profile_sensor_data
        else:
            qos = qos_profile_system_default
        holder: list = []  # the subscription, for its callbacks to know where a frame came from

        def frame(msg, info) -> None:
            self._frame_from(holder[0], msg, info)

        def lost(info) -> None:
            if holder[0] is self._subscription and self._lost_callback is not None:
                self._lost_callback(info)  # a retired or pending reader's losses are not ours

        def matched(info) -> None:  # a driver came or went: follow it now, not at the next tick
            if holder[0] is self._subscription and self.mode == "auto":
                self.refresh()

        holder.append(self.node.create_subscription(
            self.msg_type, self.topic, frame, qos,
            event_callbacks=SubscriptionEventCallbacks(message_lost=lost, matched=matched),
        ))
        return holder[0]

    def _frame_from(self, subscription, msg, info) -> None:
        if subscription is not self._subscription:
            pending = self._pending
            if pending is None or subscription is not pending[0]:
                return  # a replaced subscription's last frames
            old = self.reliability
            self._retired.append(self._subscription)
            self._subscription, self.reliability = pending
            self._pending = None
            self.node.get_logger().info(
                f"subscribed to {self.topic} ({self.reliability}, image_qos={self.mode}); "
                f"the {old} subscription is closed")
        writer, sequence = frame_writer(info)
        if sequence is not None:
            if sequence <= self._last_sequence.get(writer, 0):
                return  # this frame came already (through the other subscription, while switching)
            if len(self._last_sequence) > MAX_WRITERS:
                self._last_sequence.clear()
            self._last_sequence[writer] = sequence
        self._callback(msg, info)

    def publisher_count(self) -> int:
        return self.node.count_publishers(self.topic)

    def close(self) -> None:
        """Unsubscribe and stop re-checking (a lifecycle node's deactivate); idempotent."""
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None
        for subscription in [self._subscription, *(self._pending or ())[:1], *self._retired]:
            if subscription is not None:
                self.node.destroy_subscription(subscription)
        self._subscription, self._pending, self._retired = None, None, []
        self._last_sequence.clear()
        self.reliability = ""
