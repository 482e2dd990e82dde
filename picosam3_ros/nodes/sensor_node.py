"""The PicoSAM3 sensor node (`picosam3_sensor`): ROI prompts in, masks out.

Thin ROS layer over the ROS-free core (pipeline, prompts, backends). Frames
come from the `image` topic (camera:=none) or from a camera the node owns
(camera:=picamera2|emulator, republished on `image_raw`). Heavy work runs on a
worker thread fed by a one-slot buffer that drops the oldest frame.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from picosam3_msgs.msg import RoiPromptArray, Segmentation, SegmentationArray
from picosam3_ros.backends import (
    BackendError,
    CropSegmenter,
    ModelLoadError,
    ModelMismatchError,
    SensorFrameSource,
    create_backend,
    resolve_auto,
)
from picosam3_ros.backends.roi_scheduler import RoiScheduler
from picosam3_ros.core.diagnostics import NodeStats
from picosam3_ros.core.image_conversion import ImageConversionError, fill_image, image_to_rgb
from picosam3_ros.nodes.node_config import ConfigError, NodeConfig, declare_and_read
from picosam3_ros.core.pipeline import (
    Prompt,
    PromptResult,
    Status,
    compose_frame_mask,
    segment_frame,
    sensor_frame_results,
)
from picosam3_ros.core.prompt_wire import WireFormatError, read_prompt_array
from picosam3_ros.core.prompts import MAX_MESSAGE_PROMPTS, PromptChange, PromptStore

NODE_NAME = "picosam3_sensor"


class StartupError(RuntimeError):
    """The node cannot start; the message says what to do."""


class FrameSlot:
    """A one-slot buffer: put() replaces (drops) an unconsumed item; get() waits for one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store ``item``; True when an older, unprocessed item was dropped."""
        with self._cond:
            dropped = self._item is not None
            self._item = item
            self._cond.notify()
            return dropped

    def get(self, timeout: float = 0.5) -> Any:
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class SensorNode(Node):
    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        try:
            self.config: NodeConfig = declare_and_read(self)
        except ConfigError as exc:
            raise StartupError(str(exc)) from exc
        cfg = self.config
        self.stats = NodeStats()
        self.store = PromptStore(cfg.max_prompts, cfg.prompt_timeout)
        self.scheduler = RoiScheduler(cfg.roi_policy)
        self.segmenter: CropSegmenter | None = None
        self.sensor: SensorFrameSource | None = None
        self._fallback_error = ""
        self._running = True
        self._slot = FrameSlot()
        self._last_warned: dict[str, tuple[float, int]] = {}  # kind -> (last logged, suppressed since)
        self._clock_offset_ns = self.get_clock().now().nanoseconds - time.monotonic_ns()
        self._create_backends()

        self.mask_pub = self.create_publisher(Image, "mask", 10)
        self.seg_pub = self.create_publisher(SegmentationArray, "segmentations", 10)
        self.overlay_pub = self.create_publisher(Image, "overlay", 10) if cfg.overlay else None
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.image_raw_pub = None
        if cfg.camera == "none":
            self.create_subscription(Image, "image", self.image_callback, qos_profile_sensor_data)
        else:
            self.image_raw_pub = self.create_publisher(Image, "image_raw", qos_profile_sensor_data)
        self.create_subscription(RegionOfInterest, "roi", self.roi_callback, QoSProfile(depth=10))
        # Raw: prompts_callback reads only the entries it keeps from the bytes (core/prompt_wire.py).
        self.create_subscription(
            RoiPromptArray, "prompts", self.prompts_callback, QoSProfile(depth=10), raw=True
        )
        self.create_timer(cfg.diagnostics_period, self.diagnostics_callback)

        self._worker = threading.Thread(target=self._work_loop, name="picosam3-worker", daemon=True)
        self._worker.start()
        self._camera_thread = None
        if self.sensor is not None:
            self.sensor.start()
            self._camera_thread = threading.Thread(
                target=self._camera_loop, name="picosam3-camera", daemon=True
            )
            self._camera_thread.start()
        self.get_logger().info(
            f"ready: backend={self.stats.backend} camera={cfg.camera} max_prompts={cfg.max_prompts} "
            f"threshold={cfg.threshold}"
        )

    # --- start-up ----------------------------------------------------------------------------
    def _create_backends(self) -> None:
        cfg = self.config
        name = cfg.backend if cfg.backend != "auto" else resolve_auto(cfg.camera)
        backend_config = cfg.backend_config()
        try:
            if name == "imx500":
                self.sensor = create_backend("imx500", backend_config)
                try:  # the CPU fallback, ready before it is needed
                    self.segmenter = create_backend("onnx", backend_config)
                except ModelMismatchError:
                    raise  # the card is wrong for the sensor path too
                except ModelLoadError as exc:
                    self.get_logger().warning(f"no CPU fallback: {exc}")
            else:
                self.segmenter = create_backend("onnx", backend_config)
                if cfg.camera != "none":
                    from picosam3_ros.backends.camera import PlainCamera

                    self.sensor = PlainCamera(backend_config)
        except (ModelLoadError, BackendError) as exc:
            raise StartupError(str(exc)) from exc
        self.stats.backend = name

    # --- callbacks (executor thread: cheap only) -------------------------------------------
    def image_callback(self, msg: Image) -> None:
        self.stats.frames_in.tick()
        if self._slot.put(("image", msg, time.monotonic_ns())):
            with self.stats.lock:
                self.stats.drops += 1

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
        prompts = [Prompt(p.prompt_id, p.box_xywh, now, p.frame_id or wire.frame_id) for p in wire.prompts]
        self._log_prompt_problems(self.store.set_all(prompts, unread=wire.total - len(prompts)))

    def _log_prompt_problems(self, change: PromptChange) -> None:
        if change.rejected:
            with self.stats.lock:
                self.stats.bad_prompts += change.rejected
            self._warn_limited("prompts", "; ".join(change.lines)[:500])

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
        level, message, values = self.stats.summary()
        status = DiagnosticStatus(
            level=bytes([level]),
            name=f"{self.get_name()}: segmentation",
            hardware_id=self.config.camera,
            message=message,
            values=[KeyValue(key=k, value=v) for k, v in values],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)

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
            if not self._fallback_error and isinstance(sensor, SensorFrameSource) and sensor.name == "imx500":
                choice = self.scheduler.choose(self.store.snapshot(), sensor.stream_size)
                try:
                    sensor.request_roi(*(choice[1], choice[0].prompt_id) if choice else (None, None))
                except Exception as exc:
                    frame.error = frame.error or f"cannot set the ROI: {exc}"
            header = Header(frame_id=self.config.frame_id)
            stamp_ns = frame.sensor_timestamp_ns + self._clock_offset_ns
            header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            self.stats.frames_in.tick()
            if self.image_raw_pub is not None:
                msg = Image(header=header)
                fill_image(msg, frame.image_rgb, "rgb8")
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

    def _process_image(self, msg: Image, arrival_ns: int) -> None:
        try:
            rgb = image_to_rgb(msg)
        except ImageConversionError as exc:
            with self.stats.lock:
                self.stats.bad_images += 1
                self.stats.last_error = f"image: {exc}"
            self._warn_limited("image", f"image dropped: {exc}")
            return
        plan = self.store.plan(time.monotonic_ns(), msg.header.frame_id)
        results = segment_frame(self.segmenter, rgb, plan.prompts, self.config.threshold, arrival_ns)
        self._publish(msg.header, rgb, results + self._reports(plan.reports), arrival_ns)

    def _process_sensor_frame(self, frame, header: Header, arrival_ns: int) -> None:
        if frame.error and not self._fallback_error and self.sensor.name == "imx500":
            self._fall_back(frame.error)
        plan = self.store.plan(time.monotonic_ns(), header.frame_id)
        if self.sensor.name != "imx500" or self._fallback_error:
            if self.segmenter is None:
                results = [
                    PromptResult(
                        p.prompt_id, Status.BACKEND_ERROR, detail=self._fallback_error or "no backend"
                    )
                    for p in plan.prompts
                ]
            else:
                results = segment_frame(
                    self.segmenter, frame.image_rgb, plan.prompts, self.config.threshold, arrival_ns
                )
        else:
            inference = frame.inference
            if inference is not None and inference.logits is None and inference.crop is None:
                with self.stats.lock:  # a ROI write straddled this frame's latch: not attributed
                    self.stats.ambiguous += 1
            if inference is not None and inference.dnn_ms is not None:
                self.stats.sensor_dnn.add(inference.dnn_ms)
            results = sensor_frame_results(frame, plan.prompts, self.config.threshold, "imx500", arrival_ns)
        self._publish(header, frame.image_rgb, results + self._reports(plan.reports), arrival_ns)

    def _fall_back(self, reason: str) -> None:
        self._fallback_error = reason
        with self.stats.lock:
            self.stats.fallbacks += 1
            self.stats.fallback_reason = reason
            self.stats.backend = "onnx" if self.segmenter is not None else "none"
        self.get_logger().error(
            f"IMX500 path failed ({reason}); falling back to the CPU (onnx) backend on the camera frames"
            if self.segmenter is not None
            else f"IMX500 path failed ({reason}) and there is no CPU fallback model"
        )

    def _reports(self, reports: list[PromptResult]) -> list[PromptResult]:
        for report in reports:
            report.backend = self.stats.backend
        return reports

    def _publish(self, header: Header, rgb: np.ndarray, results: list[PromptResult], arrival_ns: int) -> None:
        height, width = rgb.shape[:2]
        array = SegmentationArray(header=header)
        for result in results:
            seg = Segmentation(
                header=header,
                prompt_id=int(result.prompt_id) & 0xFFFFFFFF,
                status=int(result.status),
                score=float(result.score),
                backend=result.backend,
                latency_ms=float(result.latency_ms),
            )
            if result.crop is not None:
                seg.crop = RegionOfInterest(
                    x_offset=result.crop.x,
                    y_offset=result.crop.y,
                    width=result.crop.width,
                    height=result.crop.height,
                )
            seg.mask.header = header
            if result.status == Status.OK and result.crop_mask is not None:
                fill_image(seg.mask, result.crop_mask, "mono8")
            else:
                seg.mask.encoding = "mono8"
            array.segmentations.append(seg)
        label = compose_frame_mask(results, (width, height))
        mask_msg = Image(header=header)
        fill_image(mask_msg, label, "mono8")
        self.seg_pub.publish(array)
        self.mask_pub.publish(mask_msg)
        if self.overlay_pub is not None:
            overlay = rgb.copy()
            tinted = label > 0
            overlay[tinted] = (overlay[tinted] * 0.5 + np.array([255, 0, 255]) * 0.5).astype(np.uint8)
            msg = Image(header=header)
            fill_image(msg, overlay, "rgb8")
            self.overlay_pub.publish(msg)
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
        self._running = False
        self._slot.close()
        if self.sensor is not None:
            self.sensor.stop()
        if self._camera_thread is not None:
            self._camera_thread.join(timeout=3.0)
        self._worker.join(timeout=3.0)
        if self.segmenter is not None:
            self.segmenter.close()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = SensorNode()
        rclpy.spin(node)
    except StartupError as exc:
        print(f"[{NODE_NAME}] cannot start: {exc}", file=sys.stderr, flush=True)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
