"""teleop_ui: a web page to drag prompt boxes on the live camera view and watch the masks.

Subscribes: <image_topic> (sensor_msgs/Image; with image_transport:=compressed
`<image_topic>/compressed`, sensor_msgs/CompressedImage; QoS by image_qos: the sensor node's
input rule, nodes/image_input.py), `mask` (sensor_msgs/Image mono8),
`segmentations` (picosam3_msgs/SegmentationArray). Publishes: `prompts`
(picosam3_msgs/RoiPromptArray: on every change, and again every republish_period while
the page has prompts, so a sensor node started later, or a prompt timeout, loses nothing).
The HTTP side lives in teleop_server.py; this file only bridges it to ROS.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from picosam3_msgs.msg import RoiPrompt, RoiPromptArray, Segmentation, SegmentationArray
from picosam3_ros.core.carry import stamp_age_ms
from picosam3_ros.core.image_conversion import (
    ImageConversionError,
    image_array,
)
from picosam3_ros.nodes.image_input import ImageInput
from picosam3_ros.nodes.node_config import IMAGE_INPUT_PARAMS, ConfigError, Param, ParamTable
from picosam3_ros.nodes.node_main import run_node
from picosam3_ros.teleop.frames import FrameHub, PromptResult
from picosam3_ros.teleop.prompt_book import PromptBook, RateLimiter, describe_stream
from picosam3_ros.teleop.server import ServerConfig, TeleopServer

STATUS_NAMES = {
    Segmentation.OK: "OK",
    Segmentation.INVALID_ROI: "INVALID_ROI",
    Segmentation.STALE_PROMPT: "STALE_PROMPT",
    Segmentation.BACKEND_ERROR: "BACKEND_ERROR",
    Segmentation.NOT_SERVED: "NOT_SERVED",
    Segmentation.TOO_MANY_PROMPTS: "TOO_MANY_PROMPTS",
    Segmentation.LOST: "LOST",
}


@dataclass(frozen=True)
class TeleopConfig:
    port: int
    bind_address: str
    image_topic: str
    image_transport: str
    image_qos: str
    max_fps: float
    jpeg_quality: int
    mask_alpha: float
    max_prompts: int
    min_box_size: int
    max_prompt_rate: float
    prompt_burst: int
    republish_period: float


def _not_empty(value: str) -> str | None:
    return None if value else "must not be empty"


# The stream's look is tunable at run time (the hub reads it per frame); the rest builds the
# HTTP server, the prompt book and the rate limiter once.
PARAMS = ParamTable([
    Param("port", 8088, "HTTP port of the page (0 = any free port, logged at start-up)", (0, 65535)),
    Param("bind_address", "127.0.0.1",
          "Address the page is served on; 127.0.0.1 keeps it on this machine "
          "(use 0.0.0.0 only on a trusted network: anyone reaching it can set prompts)",
          check=_not_empty),
    Param("image_topic", "image_raw",
          "Frames to show: image_raw when the sensor node owns the camera, else image", check=_not_empty),
    *IMAGE_INPUT_PARAMS,
    Param("max_fps", 15.0, "Most frames per second sent to the page (Hz)", (0.5, 60.0), True),
    Param("jpeg_quality", 80, "JPEG quality of the stream (1-100)", (1, 100), True),
    Param("mask_alpha", 0.45, "Opacity of the mask tint (0-1)", (0.0, 1.0), True),
    Param("max_prompts", 8, "Most prompts the page may keep at once", (1, 255)),
    Param("min_box_size", 4, "Smallest box side accepted from the page (stream pixels)", (1, 1000)),
    Param("max_prompt_rate", 5.0, "Prompt changes accepted per second on average (Hz)", (0.1, 100.0)),
    Param("prompt_burst", 10, "Prompt changes accepted in a quick burst", (1, 1000)),
    Param("republish_period", 1.0,
          "Re-send the prompt set this often while it is not empty (s; 0 = only on change)", (0.0, 60.0)),
])


class TeleopUiNode(Node):
    def __init__(self) -> None:
        super().__init__("picosam3_teleop")  # the launch file's name too (config key)
        self.config = self._read_parameters()
        cfg = self.config
        self.hub = FrameHub(max_fps=cfg.max_fps, jpeg_quality=cfg.jpeg_quality, mask_alpha=cfg.mask_alpha)
        self.book = PromptBook(max_prompts=cfg.max_prompts)
        self._publish_lock = threading.Lock()
        self.prompts_pub = self.create_publisher(RoiPromptArray, "prompts", QoSProfile(depth=10))
        # Best effort on the result topics matches any publisher; a lost mask just skips a frame.
        results_qos = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.BEST_EFFORT)
        self.image_input = ImageInput(self, cfg.image_topic, cfg.image_transport, cfg.image_qos,
                                      self.image_callback)
        self.create_subscription(Image, "mask", self.mask_callback, results_qos)
        self.create_subscription(SegmentationArray, "segmentations", self.segmentations_callback, results_qos)
        if cfg.republish_period > 0:  # the wall clock: under use_sim_time without /clock too
            self.create_timer(cfg.republish_period, self.republish_callback,
                              clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.server = TeleopServer(
            ServerConfig(cfg.bind_address, cfg.port, cfg.min_box_size, self.image_input.topic),
            self.hub, self.book, RateLimiter(cfg.max_prompt_rate, cfg.prompt_burst),
            on_change=self.publish_prompts, log=self.get_logger().info,
        )
        self._stream: tuple[int, int, str] = (0, 0, "")
        self._bad_mask_logged = False
        self.hub.start()
        self.server.start()
        self.get_logger().info(
            f"teleop UI: open {self.server.url} (frames from '{self.image_input.topic}')")

    def _read_parameters(self) -> TeleopConfig:
        config = TeleopConfig(**PARAMS.declare(self))
        PARAMS.watch(self, lambda: dataclasses.asdict(self.config), self.parameters_changed)
        return config

    def parameters_changed(self, changes: dict) -> None:
        self.config = dataclasses.replace(self.config, **changes)
        self.hub.max_fps = self.config.max_fps
        self.hub.jpeg_quality = self.config.jpeg_quality
        self.hub.mask_alpha = self.config.mask_alpha

    # ---- ROS callbacks: hand data to the hub, nothing heavy here -------------------------------
    def image_callback(self, msg: Image | CompressedImage, info=None) -> None:
        # A compressed frame goes to the hub as it is: decoded (behind the payload guard) only
        # when it is shown, on the hub's thread, never here on the executor.
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if not self.hub.put_frame(stamp, msg):  # invalid: it changes neither the stream nor the prompts
            self.get_logger().warning(self.hub.last_error, throttle_duration_sec=5.0)
            return
        stream = self.hub.stream_key()
        if stream != self._stream:
            # The prompts stay with the stream they were drawn on (and its frame_id): one odd
            # frame, or another camera on the topic, must not delete the operator's prompts.
            prompts_stream = self.book.stream
            if prompts_stream is not None and prompts_stream != stream:
                self.get_logger().warning(
                    f"the stream changed from {describe_stream(prompts_stream)} to "
                    f"{describe_stream(stream)}; the prompts stay as they are until the operator clears "
                    "them", throttle_duration_sec=5.0)
            self._stream = stream

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
        results = []
        for s in msg.segmentations:
            age, carried = -1.0, None
            if s.status == Segmentation.NOT_SERVED and s.mask.data and s.header.stamp != msg.header.stamp:
                try:  # the prompt's last mask, computed on an older frame (the entry's header)
                    crop = s.crop
                    carried = (crop.x_offset, crop.y_offset, crop.width, crop.height, image_array(s.mask))
                    age = stamp_age_ms(msg.header.stamp, s.header.stamp)
                except ImageConversionError:
                    carried = None
            box = (s.box.x_offset, s.box.y_offset, s.box.width, s.box.height) if s.box.width > 0 else None
            results.append(PromptResult(s.prompt_id, STATUS_NAMES.get(s.status, f"UNKNOWN({s.status})"),
                                        float(s.score), s.backend, float(s.latency_ms), age, carried, box))
        self.hub.put_results(stamp, results)

    def republish_callback(self) -> None:
        if self.book.snapshot():
            self.publish_prompts()

    def publish_prompts(self) -> None:
        """Publish the whole prompt set (called from the HTTP threads and the timer)."""
        stream, prompts = self.book.view()
        msg = RoiPromptArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        # The frame_id of the stream the prompts were drawn on, whatever frame came last.
        msg.header.frame_id = stream[2] if stream is not None else self.hub.frame_id
        for prompt_id, box in prompts:
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


def main(args: list[str] | None = None) -> int:
    # A busy port or a bad parameter: one line and exit 2, no traceback.
    return run_node(TeleopUiNode, "teleop_ui", (OSError, ValueError, ConfigError, ParameterException), args)


if __name__ == "__main__":
    raise SystemExit(main())
