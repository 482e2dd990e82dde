"""The demo's client: watches ``image_raw``, ``segmentations`` and ``prompts`` like any ROS
client and feeds every result to the scorer (in this process; the nodes run as processes)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import cv2
import numpy as np

RECENT_FRAMES = 40  # image_raw frames kept for the overlays, by stamp
LOG_GRACE_NS = 2_000_000_000  # how long a result may wait for its line in the camera's frame log
END_OF_CLIP_S = 5.0  # no new results for this long: the emulated camera reached its end
FIRST_RESULT_S = 90.0  # no result at all by then: something is wrong


class DemoError(RuntimeError):
    """The demo cannot run; one line for the user."""


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def stamp_of(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class DemoViewer:
    """One rclpy node in its own context; ``run`` spins it until the clip has played."""

    def __init__(self, scorer, domain_id: int | None, namespace: str, frame_images: list[int], frame_log):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from picosam3_msgs.msg import RoiPromptArray, SegmentationArray

        self.scorer = scorer
        self.frame_images = frame_images
        self.frame_log = frame_log
        self.context = rclpy.Context()
        rclpy.init(context=self.context, **({} if domain_id is None else {"domain_id": domain_id}))
        self.node = rclpy.create_node("picosam3_demo_viewer", namespace=namespace, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.shown: dict[int, int] = {}  # image_raw stamp -> clip image index (recognised)
        self.frames: dict[int, np.ndarray] = {}  # recent image_raw frames by stamp
        self.pending: dict[int, tuple[object, int]] = {}  # segmentations by stamp, with arrival time
        self.stream_size: tuple[int, int] | None = None
        self.first_result_ns = self.last_result_ns = 0
        self.counts = {"image_raw": 0, "segmentations": 0, "prompts": 0, "recognition_disagrees": 0,
                       "unattributed": 0}
        self.node.create_subscription(Image, "image_raw", self.image_callback, qos_profile_sensor_data)
        self.node.create_subscription(SegmentationArray, "segmentations", self.segmentations_callback,
                                      QoSProfile(depth=100))
        self.node.create_subscription(RoiPromptArray, "prompts", self.prompts_callback, QoSProfile(depth=10))

    # --- callbacks ------------------------------------------------------------------------------
    def image_callback(self, msg) -> None:
        from picosam3_ros.core.image_conversion import image_to_rgb

        self.counts["image_raw"] += 1
        stamp = stamp_of(msg.header)
        rgb = image_to_rgb(msg)
        self.shown[stamp] = self.scorer.clip.match(rgb)[0]
        self.frames[stamp] = rgb
        self.stream_size = (rgb.shape[1], rgb.shape[0])
        for old in sorted(self.frames)[:-RECENT_FRAMES]:
            del self.frames[old]

    def segmentations_callback(self, msg) -> None:
        self.counts["segmentations"] += 1
        now = time.monotonic_ns()
        self.first_result_ns = self.first_result_ns or now
        self.last_result_ns = now
        self.pending[stamp_of(msg.header)] = (msg, now)

    def prompts_callback(self, _msg) -> None:
        self.counts["prompts"] += 1

    # --- scoring --------------------------------------------------------------------------------
    def flush(self, final: bool) -> None:
        """Score results in stamp order once the camera's frame log covers them.

        Which clip image a frame showed comes from the emulated camera's frame log (exact).
        image_raw is best effort and large frames are often lost between processes on a
        loaded machine, so it is used for the picture when it arrived and as a cross-check
        (``recognition_disagrees`` must stay 0).
        """
        for stamp in sorted(self.pending):
            msg, arrival = self.pending[stamp]
            sequence = self.frame_log.sequence(stamp)
            if sequence is None and not final and time.monotonic_ns() - arrival < LOG_GRACE_NS:
                break  # the log line may not be written yet
            del self.pending[stamp]
            if sequence is None or not 0 <= sequence < len(self.frame_images):
                self.counts["unattributed"] += 1
                continue
            index = self.frame_images[sequence]
            if stamp in self.shown and self.shown[stamp] != index:
                self.counts["recognition_disagrees"] += 1
            rgb = self.frames.get(stamp)
            if rgb is None:
                size = self.stream_size or (640, 480)
                rgb = cv2.resize(self.scorer.clip.images[index].image_rgb, size, interpolation=cv2.INTER_AREA)
            self.scorer.add(rgb, stamp, arrival, msg, index)

    def run(self, timeout: float, children: list[tuple[subprocess.Popen, Path]]) -> dict:
        """Spin and score until the clip has played (or ``timeout``); DemoError when a node dies."""
        started = time.monotonic()
        last_beat, last_count = started, 0
        try:
            while time.monotonic() - started < timeout:
                self.executor.spin_once(timeout_sec=0.1)
                self.flush(final=False)
                count = self.counts["segmentations"]
                if count != last_count:
                    last_count, last_beat = count, time.monotonic()
                for proc, log in children:
                    if proc.poll() is not None:
                        raise DemoError(f"{log.stem} exited with code {proc.returncode}: {log_tail(log)}")
                if count >= len(self.frame_images):
                    break
                if last_count and time.monotonic() - last_beat > END_OF_CLIP_S:
                    break
                if not last_count and time.monotonic() - started > FIRST_RESULT_S:
                    raise DemoError(f"no results from the sensor node within {FIRST_RESULT_S:.0f} s: "
                                    f"{log_tail(children[0][1])}")
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:  # the last results in flight
                self.executor.spin_once(timeout_sec=0.1)
            self.flush(final=True)
        finally:
            self.executor.shutdown()
            self.node.destroy_node()
            import rclpy

            rclpy.shutdown(context=self.context)
        span = (self.last_result_ns - self.first_result_ns) / 1e9
        counts = dict(self.counts)
        counts["fps"] = (counts["segmentations"] - 1) / span if span > 0 else 0.0
        counts["wall_s"] = time.monotonic() - started
        return counts
