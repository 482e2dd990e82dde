"""teleop_ui: a web page to drag prompt boxes on the live camera view and watch the masks.

Subscribes: <image_topic> (sensor_msgs/Image), `mask` (sensor_msgs/Image mono8),
`segmentations` (picosam3_msgs/SegmentationArray). Publishes: `prompts`
(picosam3_msgs/RoiPromptArray: on every change, and again every republish_period while
the page has prompts, so a sensor node started later, or a prompt timeout, loses nothing).
The HTTP side lives in teleop_server.py; this file only bridges it to ROS.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from picosam3_msgs.msg import RoiPrompt, RoiPromptArray, Segmentation, SegmentationArray
from picosam3_ros.core.image_conversion import ImageConversionError, image_array
from picosam3_ros.teleop.frames import FrameHub, PromptResult
from picosam3_ros.teleop.prompt_book import PromptBook, RateLimiter
from picosam3_ros.teleop.server import ServerConfig, TeleopServer

STATUS_NAMES = {
    Segmentation.OK: "OK",
    Segmentation.INVALID_ROI: "INVALID_ROI",
    Segmentation.STALE_PROMPT: "STALE_PROMPT",
    Segmentation.BACKEND_ERROR: "BACKEND_ERROR",
    Segmentation.NOT_SERVED: "NOT_SERVED",
    Segmentation.TOO_MANY_PROMPTS: "TOO_MANY_PROMPTS",
}


@dataclass(frozen=True)
class TeleopConfig:
    port: int
    bind_address: str
    image_topic: str
    max_fps: float
    jpeg_quality: int
    mask_alpha: float
    max_prompts: int
    min_box_size: int
    max_prompt_rate: float
    prompt_burst: int
    republish_period: float


def _int_range(low: int, high: int) -> list[IntegerRange]:
    return [IntegerRange(from_value=low, to_value=high, step=1)]


def _float_range(low: float, high: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=low, to_value=high, step=0.0)]


class TeleopUiNode(Node):
    def __init__(self) -> None:
        super().__init__("picosam3_teleop_ui")
        self.config = self._read_parameters()
        cfg = self.config
        self.hub = FrameHub(max_fps=cfg.max_fps, jpeg_quality=cfg.jpeg_quality, mask_alpha=cfg.mask_alpha)
        self.book = PromptBook(max_prompts=cfg.max_prompts)
        self._publish_lock = threading.Lock()
        self.prompts_pub = self.create_publisher(RoiPromptArray, "prompts", QoSProfile(depth=10))
        # Best effort on the result topics matches any publisher; a lost mask just skips a frame.
        results_qos = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.BEST_EFFORT)
        self.create_subscription(Image, cfg.image_topic, self.image_callback, qos_profile_sensor_data)
        self.create_subscription(Image, "mask", self.mask_callback, results_qos)
        self.create_subscription(SegmentationArray, "segmentations", self.segmentations_callback, results_qos)
        if cfg.republish_period > 0:
            self.create_timer(cfg.republish_period, self.republish_callback)
        self.server = TeleopServer(
            ServerConfig(cfg.bind_address, cfg.port, cfg.min_box_size,
                         self.resolve_topic_name(cfg.image_topic)),
            self.hub, self.book, RateLimiter(cfg.max_prompt_rate, cfg.prompt_burst),
            on_change=self.publish_prompts, log=self.get_logger().info,
        )
        self._stream_size = (0, 0)
        self._bad_mask_logged = False
        self.hub.start()
        self.server.start()
        self.get_logger().info(
            f"teleop UI: open {self.server.url} (frames from '{self.resolve_topic_name(cfg.image_topic)}')")

    def _read_parameters(self) -> TeleopConfig:
        def declare(name, default, description, **ranges):
            return self.declare_parameter(name, default, ParameterDescriptor(
                description=description, read_only=True, **ranges)).value

        port = declare("port", 8088, "HTTP port of the page (0 = any free port, logged at start-up)",
                       type=ParameterType.PARAMETER_INTEGER, integer_range=_int_range(0, 65535))
        bind = declare("bind_address", "127.0.0.1",
                       "Address the page is served on; 127.0.0.1 keeps it on this machine "
                       "(use 0.0.0.0 only on a trusted network: anyone reaching it can set prompts)",
                       type=ParameterType.PARAMETER_STRING)
        topic = declare("image_topic", "image_raw",
                        "Frames to show: image_raw when the sensor node owns the camera, else image",
                        type=ParameterType.PARAMETER_STRING)
        max_fps = declare("max_fps", 15.0, "Most frames per second sent to the page (Hz)",
                          type=ParameterType.PARAMETER_DOUBLE, floating_point_range=_float_range(0.5, 60.0))
        quality = declare("jpeg_quality", 80, "JPEG quality of the stream (1-100)",
                          type=ParameterType.PARAMETER_INTEGER, integer_range=_int_range(1, 100))
        alpha = declare("mask_alpha", 0.45, "Opacity of the mask tint (0-1)",
                        type=ParameterType.PARAMETER_DOUBLE, floating_point_range=_float_range(0.0, 1.0))
        max_prompts = declare("max_prompts", 8, "Most prompts the page may keep at once",
                              type=ParameterType.PARAMETER_INTEGER, integer_range=_int_range(1, 255))
        min_box = declare("min_box_size", 4, "Smallest box side accepted from the page (stream pixels)",
                          type=ParameterType.PARAMETER_INTEGER, integer_range=_int_range(1, 1000))
        rate = declare("max_prompt_rate", 5.0, "Prompt changes accepted per second on average (Hz)",
                       type=ParameterType.PARAMETER_DOUBLE, floating_point_range=_float_range(0.1, 100.0))
        burst = declare("prompt_burst", 10, "Prompt changes accepted in a quick burst",
                        type=ParameterType.PARAMETER_INTEGER, integer_range=_int_range(1, 1000))
        republish = declare("republish_period", 1.0,
                            "Re-send the prompt set this often while it is not empty (s; 0 = only on change)",
                            type=ParameterType.PARAMETER_DOUBLE, floating_point_range=_float_range(0.0, 60.0))
        if not topic:
            raise ValueError("parameter image_topic must not be empty")
        if not bind:
            raise ValueError("parameter bind_address must not be empty")
        return TeleopConfig(int(port), str(bind), str(topic), float(max_fps), int(quality), float(alpha),
                            int(max_prompts), int(min_box), float(rate), int(burst), float(republish))

    # ---- ROS callbacks: hand data to the hub, nothing heavy here -------------------------------
    def image_callback(self, msg: Image) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if not self.hub.put_frame(stamp, msg):  # invalid: it changes neither the stream nor the prompts
            self.get_logger().warning(self.hub.last_error, throttle_duration_sec=5.0)
            return
        size = (msg.width, msg.height)
        if size != self._stream_size:
            if self._stream_size != (0, 0):
                self.get_logger().warning(f"stream size changed {self._stream_size} -> {size}")
            self._stream_size = size
            gone = self.book.drop_outside(*size)
            if gone:
                self.get_logger().warning(f"removed prompts {gone}: they do not fit the new frame size")
                self.publish_prompts()

    def mask_callback(self, msg: Image) -> None:
        try:
            if msg.encoding not in ("mono8", "8UC1"):
                raise ImageConversionError(f"expected mono8, got '{msg.encoding}'")
            mask = image_array(msg)
        except ImageConversionError as exc:
            if not self._bad_mask_logged:  # once: a wrong publisher would flood the log
                self.get_logger().error(f"ignoring masks on '{self.resolve_topic_name('mask')}': {exc}")
                self._bad_mask_logged = True
            return
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.hub.put_mask(stamp, mask)

    def segmentations_callback(self, msg: SegmentationArray) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        results = [
            PromptResult(s.prompt_id, STATUS_NAMES.get(s.status, f"UNKNOWN({s.status})"), float(s.score),
                         s.backend, float(s.latency_ms))
            for s in msg.segmentations
        ]
        self.hub.put_results(stamp, results)

    def republish_callback(self) -> None:
        if self.book.snapshot():
            self.publish_prompts()

    def publish_prompts(self) -> None:
        """Publish the whole prompt set (called from the HTTP threads and the timer)."""
        msg = RoiPromptArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.hub.frame_id
        for prompt_id, box in self.book.snapshot():
            prompt = RoiPrompt()
            prompt.header = msg.header
            prompt.id = prompt_id
            prompt.roi.x_offset, prompt.roi.y_offset = box.x, box.y
            prompt.roi.width, prompt.roi.height = box.width, box.height
            msg.prompts.append(prompt)
        with self._publish_lock:
            self.prompts_pub.publish(msg)

    def destroy_node(self) -> None:
        self.server.stop()
        self.hub.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    try:
        node = TeleopUiNode()
    except (OSError, ValueError, ParameterException) as exc:
        # A busy port or a bad parameter: say so and stop, no traceback.
        print(f"[teleop_ui] cannot start: {exc}", flush=True)
        rclpy.try_shutdown()
        raise SystemExit(1) from None
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
