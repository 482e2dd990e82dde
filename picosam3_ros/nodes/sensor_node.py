"""The PicoSAM3 sensor node (`picosam3_sensor`): ROI prompts in, masks out.

Thin ROS layer over the ROS-free core (pipeline, prompts, backends). Frames
come from the `image` topic (camera:=none; raw or, with image_transport:=compressed,
`image/compressed`) or from a camera the node owns (camera:=picamera2|emulator,
republished on `image_raw` with `camera_info`). Heavy work runs on a worker thread fed
by a one-slot buffer that drops the oldest frame. Parameters: nodes/sensor_params.py
(the run-time ones change through set_parameters). With ``lifecycle:=true`` it is a managed
node (configure, activate, deactivate, cleanup through the lifecycle services); by default
it runs those steps itself at start-up. ``detections`` (vision_msgs/Detection2DArray when
installed) repeats each mask's box, prompt id and score for vision_msgs consumers.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import traceback
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNodeMixin, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from picosam3_msgs.msg import RoiPromptArray, SegmentationArray
from picosam3_ros.backends import BackendError, ModelLoadError
from picosam3_ros.backends.frame_server import ServedFrame, build_frame_server
from picosam3_ros.core.carry import LastResults
from picosam3_ros.core.diagnostics import WARN, NodeStats
from picosam3_ros.core.frame_slot import FrameSlot
from picosam3_ros.core.image_conversion import (
    ImageConversionError,
    compressed_to_rgb,
    fill_image,
    image_to_rgb,
)
from picosam3_ros.core.input_monitor import InputMonitor
from picosam3_ros.core.pipeline import Prompt, PromptResult, Status, compose_frame_mask
from picosam3_ros.core.prompt_wire import WireFormatError, read_prompt_array
from picosam3_ros.core.prompts import MAX_MESSAGE_PROMPTS, FramePlan, PromptChange, PromptStore
from picosam3_ros.nodes.image_input import ImageInput, frame_writer, input_topic
from picosam3_ros.nodes.message_types import optional_detections
from picosam3_ros.nodes.node_config import ConfigError
from picosam3_ros.nodes.node_main import run_node
from picosam3_ros.nodes.sensor_messages import (
    detection_entries,
    label_image,
    overlay_image,
    segmentation_array,
)
from picosam3_ros.nodes.sensor_params import SENSOR_PARAMS, NodeConfig, declare_and_read

NODE_NAME = "picosam3_sensor"
INPUT_FIX = (
    "export FASTDDS_DEFAULT_PROFILES_FILE=<picosam3_ros share>/config/fastdds_large_images.xml in the "
    "camera driver's environment (README 'Large images over DDS'), or publish reliable frames, or "
    "subscribe to the driver's compressed topic (image_transport:=compressed)"
)


class StartupError(RuntimeError):
    """The node cannot start; the message says what to do."""


class SensorNode(LifecycleNodeMixin, Node):
    """The sensor node; its set-up is the lifecycle's steps (configure, activate, deactivate, cleanup).

    Plain mode (the default) runs configure and activate at start-up: a failure stops the
    process with exit code 2 and one line. ``lifecycle:=true`` makes it a managed node: it
    starts unconfigured and offers the lifecycle services (``change_state``, ``get_state``).
    configure builds the frame server (loads the model, checks the card, opens the IMX500) and
    the publishers; activate subscribes, starts the camera and the worker; deactivate stops
    them (nothing is published) and keeps the model; cleanup frees the model and the publishers.
    """

    def __init__(self, **kwargs: Any):
        Node.__init__(self, NODE_NAME, **kwargs)
        try:
            self.config: NodeConfig = declare_and_read(self)
        except ConfigError as exc:
            raise StartupError(str(exc)) from exc
        LifecycleNodeMixin.__init__(self, enable_communication_interface=self.config.lifecycle)
        self.stats = NodeStats()
        self._running = False
        self._slot = FrameSlot()
        self._last_warned: dict[str, tuple[float, int]] = {}  # kind -> (last logged, suppressed since)
        self._clock_offset_ns = self.get_clock().now().nanoseconds - time.monotonic_ns()
        self._failure = ""
        self.server = self.sensor = None
        self._worker = self._camera_thread = None
        self._input_subscriptions: list = []
        self._active_timers: list = []
        self._publishers_made: list = []
        SENSOR_PARAMS.watch(self, lambda: self.config.values(), self.parameters_changed)
        if self.config.lifecycle:
            self.get_logger().info("lifecycle mode: unconfigured; configure and activate it through "
                                   f"{self.get_fully_qualified_name()}/change_state")
            return
        for step in (self.trigger_configure, self.trigger_activate):
            if step() != TransitionCallbackReturn.SUCCESS:
                self._stop_all()
                raise StartupError(self._failure or "start-up failed (see the log)")

    # --- lifecycle transitions -------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        return self._transition("configure", self._configure, undo=self._stop_all)

    def on_activate(self, state) -> TransitionCallbackReturn:
        return self._transition("activate", self._activate, undo=self._deactivate)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        return self._transition("deactivate", self._deactivate, undo=self._deactivate)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        return self._transition("cleanup", self._cleanup, undo=self._cleanup)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        return self._transition("shutdown", self._stop_all, undo=self._stop_all)

    def on_error(self, state) -> TransitionCallbackReturn:
        self._stop_all()  # back to unconfigured with nothing held
        return TransitionCallbackReturn.SUCCESS

    def _transition(self, name: str, step, undo) -> TransitionCallbackReturn:
        """Run one step; on failure ``undo`` leaves the node in the state the lifecycle goes back to."""
        try:
            step()
            return TransitionCallbackReturn.SUCCESS
        except StartupError as exc:
            self._failure, code = str(exc), TransitionCallbackReturn.FAILURE
        except Exception as exc:  # a bug, not bad input: show it (rclpy would swallow it)
            self._failure, code = f"{type(exc).__name__}: {exc}", TransitionCallbackReturn.ERROR
            self.get_logger().error(f"{name}: {traceback.format_exc()}")
        if self.config.lifecycle:  # plain mode says it once, on exit
            self.get_logger().error(f"{name} failed: {self._failure}")
        undo()
        return code

    def _configure(self) -> None:
        """Load the model (and the camera's network), check the card, make the publishers."""
        cfg = self.config
        self.store = PromptStore(cfg.max_prompts, cfg.prompt_timeout)
        self.last_results: LastResults[Header] = LastResults()
        self.postprocess = cfg.postprocess()
        try:
            self.server = build_frame_server(
                cfg.backend,
                cfg.camera,
                cfg.backend_config(),
                self.postprocess,
                cfg.roi_policy,
                warn=self.get_logger().warning,
                follow=cfg.follow,
            )
        except (ModelLoadError, BackendError) as exc:
            raise StartupError(str(exc)) from exc
        self.stats.backend = self.server.backend
        self.sensor = self.server.sensor

        # Reliable outputs reach default (reliable) subscribers such as rviz and recorders, and
        # best-effort ones too; keep-last history never blocks the publisher.
        self.output_qos = (
            qos_profile_sensor_data if cfg.output_qos == "sensor_data" else QoSProfile(depth=5)
        )
        self.mask_pub = self._publisher(Image, "mask")
        self.seg_pub = self._publisher(SegmentationArray, "segmentations")
        self.overlay_pub = self._publisher(Image, "overlay") if cfg.overlay else None
        self.detections = optional_detections(cfg.detections_type, self.get_logger().info)
        self.detections_pub = None
        if self.detections is not None:
            self.detections_pub = self._publisher(self.detections.array, "detections")
        self.diag_pub = self._publisher(DiagnosticArray, "/diagnostics", 10)
        self.image_raw_pub = self.camera_info_pub = None
        if cfg.camera != "none":
            self.image_raw_pub = self._publisher(Image, "image_raw")
            self.camera_info_pub = self._publisher(CameraInfo, "camera_info")
        self.image_input: ImageInput | None = None  # subscribed while active
        self.input_monitor: InputMonitor | None = None
        self._input_warned = False
        self._started = time.monotonic()
        self._clock_warned = False
        topic = ""
        if cfg.camera == "none":
            topic = input_topic(self, "image", cfg.image_transport)
            self.input_monitor = InputMonitor(topic, INPUT_FIX)
        # Namespaced, so two cameras (namespace:=robot1, robot2) are told apart on /diagnostics.
        self.diagnostic_name = f"{self.get_fully_qualified_name()}: segmentation"
        self.hardware_id = f"{self.get_fully_qualified_name()} ({topic or cfg.camera})"
        if cfg.lifecycle:
            self.get_logger().info(f"configured: backend={self.stats.backend} model loaded")

    def _publisher(self, msg_type, topic: str, qos=None):
        publisher = self.create_publisher(msg_type, topic, self.output_qos if qos is None else qos)
        self._publishers_made.append(publisher)
        return publisher

    def _activate(self) -> None:
        """Subscribe, start the worker and the camera: frames in, results out."""
        self._running = True
        self._slot = FrameSlot()
        cfg = self.config
        if self.input_monitor is not None:
            self.image_input = ImageInput(
                self, "image", cfg.image_transport, cfg.image_qos, self.image_callback,
                self.message_lost_callback, cfg.diagnostics_period,
            )
        self._input_subscriptions.append(
            self.create_subscription(RegionOfInterest, "roi", self.roi_callback, QoSProfile(depth=10)))
        # Raw: prompts_callback reads only the entries it keeps from the bytes (core/prompt_wire.py).
        self._input_subscriptions.append(self.create_subscription(
            RoiPromptArray, "prompts", self.prompts_callback, QoSProfile(depth=10), raw=True))
        # The wall clock: with use_sim_time and no /clock, a ROS-time timer never fires (no
        # /diagnostics, no QoS re-check); the stamps stay ROS time.
        self._active_timers.append(self.create_timer(
            self.config.diagnostics_period, self.diagnostics_callback,
            clock=Clock(clock_type=ClockType.STEADY_TIME)))
        self._worker = threading.Thread(target=self._work_loop, name="picosam3-worker", daemon=True)
        self._worker.start()
        if self.sensor is not None:
            try:
                self.sensor.start()
            except BackendError as exc:
                raise StartupError(f"cannot start the camera: {exc}") from exc
            self._camera_thread = threading.Thread(
                target=self._camera_loop, name="picosam3-camera", daemon=True
            )
            self._camera_thread.start()
        self.get_logger().info(
            f"ready: backend={self.stats.backend} camera={cfg.camera} max_prompts={cfg.max_prompts} "
            f"post-processing: {self.postprocess.label()}"
        )

    def _deactivate(self) -> None:
        """Stop the camera, the worker and the subscriptions; the model stays loaded."""
        self._running = False
        self._slot.close()
        # The camera thread first (it returns within one frame timeout), then the sensor under it.
        if self._camera_thread is not None:
            self._camera_thread.join(timeout=3.0)
        if self.sensor is not None:
            try:
                self.sensor.pause()
            except BackendError as exc:
                self.get_logger().warning(str(exc))
        if self._camera_thread is not None:
            self._camera_thread.join(timeout=3.0)
            self._camera_thread = None
        if self._worker is not None:
            self._worker.join(timeout=3.0)
            self._worker = None
        if self.image_input is not None:
            self.image_input.close()
            self.image_input = None
        for subscription in self._input_subscriptions:
            self.destroy_subscription(subscription)
        for timer in self._active_timers:
            self.destroy_timer(timer)
        self._input_subscriptions, self._active_timers = [], []

    def _cleanup(self) -> None:
        """Free the model, the camera and the publishers (back to unconfigured)."""
        if self.server is not None:
            self.server.close()
        self.server = self.sensor = None
        for publisher in self._publishers_made:
            self.destroy_publisher(publisher)
        self._publishers_made = []

    def _stop_all(self) -> None:
        """Whatever state the node is in: stop and free everything (idempotent)."""
        if self._running or self._worker is not None or self._input_subscriptions:
            self._deactivate()
        self._cleanup()

    def parameters_changed(self, changes: dict[str, Any]) -> None:
        """Run-time parameters accepted by the table's validation take effect here."""
        self.config = dataclasses.replace(self.config, **changes)
        if self.server is not None:  # unconfigured: configure reads self.config
            self._apply(changes)

    def _apply(self, changes: dict[str, Any]) -> None:
        cfg = self.config
        if "max_prompts" in changes or "prompt_timeout" in changes:
            self.store.configure(cfg.max_prompts, cfg.prompt_timeout)
        if "threshold" in changes or "box_margin" in changes:
            self.postprocess = cfg.postprocess()
        self.server.configure(
            self.postprocess,
            cfg.roi_policy if "roi_policy" in changes else None,
            cfg.follow if "follow" in changes else None,
        )
        if cfg.overlay and self.overlay_pub is None:
            self.overlay_pub = self._publisher(Image, "overlay")
        if not cfg.carry_results:
            self.last_results.clear()

    # --- callbacks (executor thread: cheap only) -------------------------------------------
    def image_callback(self, msg: Image | CompressedImage, info: dict | None = None) -> None:
        arrival = time.monotonic_ns()
        writer, sequence = frame_writer(info)
        self.stats.frames_in.tick()
        self.input_monitor.frame(arrival, writer, sequence)
        if self._slot.put(("image", msg, arrival)):
            with self.stats.lock:
                self.stats.drops += 1

    def message_lost_callback(self, info) -> None:
        self.input_monitor.lost(time.monotonic_ns(), int(info.total_count_change))

    def roi_callback(self, msg: RegionOfInterest) -> None:
        prompt = Prompt(0, (msg.x_offset, msg.y_offset, msg.width, msg.height), time.monotonic_ns())
        self._log_prompt_problems(self.store.set_one(prompt))

    def prompts_callback(self, data: bytes) -> None:
        now = time.monotonic_ns()
        try:
            wire = read_prompt_array(data, MAX_MESSAGE_PROMPTS)
        except WireFormatError as exc:
            self._log_prompt_problems(PromptChange(1, [f"prompts message ignored: {exc}"]))
            return
        prompts = [
            Prompt(p.prompt_id, p.box_xywh, now, p.frame_id or wire.frame_id, p.follow) for p in wire.prompts
        ]
        self._log_prompt_problems(self.store.set_all(prompts, unread=wire.total - len(prompts)))

    def _log_prompt_problems(self, change: PromptChange) -> None:
        """Count rejected prompts (/diagnostics bad_prompts, last_error) and say why, throttled."""
        if change.rejected:
            reason = "; ".join(change.lines)[:500]
            with self.stats.lock:
                self.stats.bad_prompts += change.rejected
                self.stats.last_error = f"prompts: {reason}"
            self._warn_limited("prompts", reason)

    def _warn_limited(self, kind: str, message: str, period_s: float = 2.0) -> None:
        """Log one ``kind`` of message ("prompts", "image") at most once per ``period_s``, counting the rest.

        The kind is named by the caller: keying on the text itself let every message
        with a different number through (11 lines/s under fuzzing).
        """
        now = time.monotonic()
        last, suppressed = self._last_warned.get(kind, (-1e9, 0))
        if now - last < period_s:
            self._last_warned[kind] = (last, suppressed + 1)
            return
        self._last_warned[kind] = (now, 0)
        if suppressed:
            message += f" ({suppressed} more like this in the last {now - last:.0f} s)"
        self.get_logger().warning(message)

    def diagnostics_callback(self) -> None:
        self._check_clock()
        level, message, values = self.stats.summary()
        if self.image_input is not None:
            health = self.input_monitor.assess(
                time.monotonic_ns(), self.image_input.publisher_count(), self.config.input_warn_fraction
            )
            values += [
                ("input_topic", self.image_input.topic),
                ("input_qos", self.image_input.reliability),
                ("input_published_hz", f"{health.published_hz:.2f}"),
                ("input_delivered_fraction", f"{health.delivered_fraction:.2f}"),
            ]
            if health.level == WARN:
                if level < WARN:
                    level, message = WARN, health.message
                if not self._input_warned:  # once per episode: the fix, not a flood
                    self.get_logger().warning(health.message)
                    self._input_warned = True
            else:
                self._input_warned = False
        status = DiagnosticStatus(
            level=bytes([level]),
            name=self.diagnostic_name,
            hardware_id=self.hardware_id,
            message=message,
            values=[KeyValue(key=k, value=v) for k, v in values],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)

    def _check_clock(self) -> None:
        """Say it once when use_sim_time is on and no /clock has come (ROS time stays 0)."""
        clock = self.get_clock()
        if self._clock_warned or not getattr(clock, "ros_time_is_active", False):
            return
        if clock.now().nanoseconds == 0 and time.monotonic() - self._started > 3.0:
            self._clock_warned = True
            self.get_logger().warning(
                "use_sim_time is true but no /clock has arrived: the stamps of /diagnostics (and of "
                "image_raw when the node owns the camera) are 0 until it does; /diagnostics and the "
                "input QoS check run on the wall clock meanwhile. Publish /clock (e.g. ros2 bag play "
                "--clock) or set use_sim_time:=false")

    # --- camera thread ------------------------------------------------------------------------
    def _camera_loop(self) -> None:
        sensor = self.sensor
        failures = 0
        while self._running:
            try:
                frame = sensor.next_frame(timeout_s=1.0)
            except BackendError as exc:
                if not self._running:
                    return
                failures += 1
                with self.stats.lock:
                    self.stats.last_error = str(exc)
                self.get_logger().error(f"camera: {exc}", throttle_duration_sec=5.0)
                time.sleep(min(1.0, 0.1 * failures))
                continue
            if frame is None:
                continue
            failures = 0
            # Program the next ROI at once: the sooner it is written, the sooner it is in effect.
            roi_error = self.server.program_next_roi(
                self.store.snapshot(), self.config.frame_id, frame.sequence
            )
            frame.error = frame.error or roi_error or None
            header = Header(frame_id=self.config.frame_id)
            stamp_ns = frame.sensor_timestamp_ns + self._clock_offset_ns
            header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            self.stats.frames_in.tick()
            if self.image_raw_pub is not None and self._running:
                msg = Image(header=header)
                fill_image(msg, frame.image_rgb, "rgb8")
                height, width = frame.image_rgb.shape[:2]
                # Uncalibrated (K all zero, REP-104); a calibrated driver's camera_info goes with its frames.
                self.camera_info_pub.publish(CameraInfo(header=header, width=width, height=height))
                self.image_raw_pub.publish(msg)
            if self._slot.put(("sensor", frame, header, frame.sensor_timestamp_ns)):
                with self.stats.lock:
                    self.stats.drops += 1

    # --- worker thread ------------------------------------------------------------------------
    def _work_loop(self) -> None:
        while self._running:
            item = self._slot.get(timeout=0.5)
            if item is None:
                continue
            try:
                if item[0] == "image":
                    self._process_image(item[1], item[2])
                else:
                    self._process_sensor_frame(item[1], item[2], item[3])
            except Exception as exc:  # never let one frame kill the worker
                with self.stats.lock:
                    self.stats.backend_errors += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self.get_logger().error(
                    f"frame failed: {type(exc).__name__}: {exc}", throttle_duration_sec=2.0
                )

    def _process_image(self, msg: Image | CompressedImage, arrival_ns: int) -> None:
        limit = self.config.max_image_pixels
        damage: list[str] = []
        try:
            if isinstance(msg, CompressedImage):  # the header is checked before anything is decoded
                rgb = compressed_to_rgb(msg, limit, damage)
            else:
                rgb = image_to_rgb(msg, limit)
        except ImageConversionError as exc:
            with self.stats.lock:
                self.stats.bad_images += 1
                self.stats.last_error = f"image: {exc}"
            self._warn_limited("image", f"image dropped: {exc}")
            return
        if damage:  # decoded, with the decoder's complaint (what libjpeg/libpng would have printed)
            said = "; ".join(damage)[:300]
            self._warn_limited("decoder", f"image decoded with damage, used anyway: {said}")
        plan = self._plan(msg.header.frame_id)
        served = self.server.serve_image(rgb, plan.prompts, arrival_ns)
        self._publish(msg.header, rgb, served.results + self._reports(plan.reports), arrival_ns)

    def _process_sensor_frame(self, frame, header: Header, arrival_ns: int) -> None:
        plan = self._plan(header.frame_id)
        served = self.server.serve_frame(frame, plan.prompts, arrival_ns)
        self._record_served(served)
        self._publish(header, frame.image_rgb, served.results + self._reports(plan.reports), arrival_ns)

    def _plan(self, frame_id: str) -> FramePlan:
        """The store's plan for a frame; prompts it rejects (another frame_id) are logged and counted."""
        plan = self.store.plan(time.monotonic_ns(), frame_id)
        self._log_prompt_problems(plan.change)
        return plan

    def _record_served(self, served: ServedFrame) -> None:
        with self.stats.lock:
            self.stats.backend = served.backend
            self.stats.ambiguous += served.ambiguous  # a ROI write straddled the frame's latch
            if served.fell_back:
                self.stats.fallbacks += 1
                self.stats.fallback_reason = served.fell_back
        if served.sensor_dnn_ms is not None:
            self.stats.sensor_dnn.add(served.sensor_dnn_ms)
        if served.fell_back:
            self.get_logger().error(
                f"IMX500 path failed ({served.fell_back}); falling back to the CPU (onnx) backend "
                "on the camera frames"
                if self.server.segmenter is not None
                else f"IMX500 path failed ({served.fell_back}) and there is no CPU fallback model"
            )

    def _reports(self, reports: list[PromptResult]) -> list[PromptResult]:
        for report in reports:
            report.backend = self.stats.backend
        return reports

    def _publish(self, header: Header, rgb: np.ndarray, results: list[PromptResult], arrival_ns: int) -> None:
        if not self._running:
            return  # shutting down: the publishers may already be gone
        height, width = rgb.shape[:2]
        if self.config.carry_results:
            entries = self.last_results.carry(results, header, [p.prompt_id for p in self.store.snapshot()])
        else:
            entries = [(result, header) for result in results]
        label = compose_frame_mask(results, (width, height))
        self.seg_pub.publish(segmentation_array(header, entries, (width, height)))
        self.mask_pub.publish(label_image(header, label))
        if self.detections_pub is not None:
            boxes = {prompt.prompt_id: prompt.box_xywh for prompt in self.store.snapshot()}
            entries_2d = detection_entries(header, results, boxes)
            self.detections_pub.publish(self.detections.boxes_2d(header, entries_2d))
        if self.overlay_pub is not None and self.config.overlay:
            self.overlay_pub.publish(overlay_image(header, rgb, label))
        latency = (time.monotonic_ns() - arrival_ns) / 1e6
        with self.stats.lock:
            self.stats.frames_out.tick()
            self.stats.latency.add(latency)
            self.stats.not_served += sum(r.status == Status.NOT_SERVED for r in results)
            errors = [r for r in results if r.status == Status.BACKEND_ERROR]
            if errors:
                self.stats.backend_errors += 1
                self.stats.last_error = errors[0].detail

    def shutdown(self) -> None:
        self._stop_all()


def main(args: list[str] | None = None) -> int:
    return run_node(SensorNode, NODE_NAME, (StartupError,), args)


if __name__ == "__main__":
    sys.exit(main())
