"""objects_3d (node ``picosam3_objects_3d``): the sensor node's masks + aligned depth -> objects in 3D.

Subscribes to ``segmentations`` (picosam3_msgs/SegmentationArray), ``depth`` (an image aligned
to the segmented frame, 16UC1 mm or 32FC1 m: a driver's ``aligned_depth_to_color/image_raw``) and
``depth/camera_info``; pairs each segmented frame with the depth image of the nearest stamp
within ``stamp_tolerance`` and publishes, per entry of status OK:

* ``objects`` (picosam3_msgs/Object3DArray): centroid, extent, counts and a status, in the depth
  camera's frame (the depth image's header);
* ``objects/points`` (sensor_msgs/PointCloud2: x, y, z float32 and prompt_id uint32);
* ``objects/detections`` (vision_msgs/Detection3DArray, ``detections_type``) when that type is installed.

A frame whose depth image does not come within ``match_timeout`` gets its array anyway, every
entry NO_DEPTH_IMAGE. The callbacks only pair messages; the depth work runs on a worker thread
behind a one-slot buffer, bounded per mask by ``max_points``. The 3D logic is in
picosam3_ros/core/objects_3d.py.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections import deque
from typing import Any

from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from picosam3_msgs.msg import Object3D, Object3DArray, Segmentation, SegmentationArray
from picosam3_ros.core.frame_slot import FrameSlot
from picosam3_ros.core.image_conversion import ImageConversionError, depth_array, image_array
from picosam3_ros.core.objects_3d import (
    CLOUD_FIELDS,
    CLOUD_POINT_STEP,
    CameraInfoError,
    DepthSettings,
    LocatedObject,
    StampMatcher,
    Status,
    cloud_data,
    intrinsics_for,
    locate_object,
)
from picosam3_ros.nodes.message_types import optional_detections
from picosam3_ros.nodes.node_config import ConfigError, Param, ParamTable, type_name_check
from picosam3_ros.nodes.node_main import run_node

NODE_NAME = "picosam3_objects_3d"
# Entries read per SegmentationArray (the sensor node sends at most max_prompts <= 255).
MAX_ENTRIES = 255
_POINT_FIELD_TYPES = {"float32": PointField.FLOAT32, "uint32": PointField.UINT32}

PARAMS = ParamTable([
    Param("stamp_tolerance", 0.01,
          "s: a depth image belongs to a segmented frame when their stamps differ by at most this "
          "(keep it under half the depth frame interval)", (0.0, 1.0), True),
    Param("match_timeout", 0.5,
          "s: a segmented frame waits this long for its depth image, then its objects are NO_DEPTH_IMAGE",
          (0.0, 10.0), True),
    Param("depth_queue", 30, "depth images kept for pairing (30 = 1 s at 30 fps)", (1, 300)),
    Param("min_depth", 0.1, "m: nearer depth is no data (the camera's minimum range)", (0.0, 100.0), True),
    Param("max_depth", 10.0, "m: farther depth is no data", (0.0, 1000.0), True),
    Param("max_points", 5000,
          "mask pixels sampled per object at most (larger masks: a regular grid, every n-th pixel)",
          (1, 1_000_000), True),
    Param("min_points", 20, "fewer object points with depth: status NO_DEPTH", (1, 1_000_000), True),
    Param("surface_gap", 0.05,
          "an empty depth gap of this fraction of the depth ends the object (what is behind it is "
          "background the mask leaked onto)", (0.001, 10.0), True),
    Param("min_surface_fraction", 0.1,
          "the front surface is the nearest depth cluster holding at least this fraction of the mask's "
          "points", (0.0, 1.0), True),
    Param("max_object_depth", 0.5, "m: the object ends this far behind its front surface at most",
          (0.001, 100.0), True),
    Param("publish_points", True, "also publish objects/points (PointCloud2)", None, True),
    Param("detections_type", "vision_msgs/msg/Detection3DArray",
          "also publish `objects/detections` as this vision_msgs-like type when it is installed ('' = off; "
          "absent: off with one log line)", check=type_name_check("detections_type", allow_empty=True)),
    Param("input_qos", "reliable",
          "QoS of the three subscriptions: reliable (RealSense, Orbbec and ZED drivers' default) | "
          "sensor_data (best effort, for drivers that publish best effort)", ("reliable", "sensor_data")),
])


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class Objects3dNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.params = PARAMS.declare(self)
        PARAMS.watch(self, lambda: self.params, self.parameters_changed)
        self.settings = self._settings()
        self.matcher: StampMatcher = StampMatcher(
            self._seconds_ns("stamp_tolerance"), self._seconds_ns("match_timeout"), self.params["depth_queue"]
        )
        self.lock = threading.Lock()
        self.camera_infos: deque[CameraInfo] = deque(maxlen=self.params["depth_queue"])
        self._slot = FrameSlot()
        self._running = True
        self._warned: dict[str, float] = {}
        self._publish_lock = threading.Lock()  # the worker and the expiry timer both publish
        qos = qos_profile_sensor_data if self.params["input_qos"] == "sensor_data" else QoSProfile(depth=10)
        out_qos = QoSProfile(depth=5)
        self.objects_pub = self.create_publisher(Object3DArray, "objects", out_qos)
        self.points_pub = self.create_publisher(PointCloud2, "objects/points", out_qos)
        self.detections = optional_detections(self.params["detections_type"], self.get_logger().info)
        self.detections_pub = None
        if self.detections is not None:
            self.detections_pub = self.create_publisher(self.detections.array, "objects/detections", out_qos)
        # In this order: when all three are waiting, the executor takes the info and the depth first.
        self.create_subscription(CameraInfo, "depth/camera_info", self.camera_info_callback, qos)
        self.create_subscription(Image, "depth", self.depth_callback, qos)
        self.create_subscription(SegmentationArray, "segmentations", self.segmentations_callback, qos)
        self.create_timer(0.05, self.expiry_callback)
        self._worker = threading.Thread(target=self._work_loop, name="objects3d-worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"{self.resolve_topic_name('segmentations')} + {self.resolve_topic_name('depth')} + "
            f"{self.resolve_topic_name('depth/camera_info')} -> {self.resolve_topic_name('objects')} "
            f"(stamp tolerance {self.params['stamp_tolerance'] * 1000:.0f} ms)"
        )

    def _settings(self) -> DepthSettings:
        names = [f.name for f in dataclasses.fields(DepthSettings)]
        return DepthSettings(**{name: self.params[name] for name in names})

    def _seconds_ns(self, name: str) -> int:
        return int(round(self.params[name] * 1e9))

    def parameters_changed(self, changes: dict[str, Any]) -> None:
        self.params.update(changes)
        self.settings = self._settings()
        with self.lock:
            self.matcher.tolerance_ns = self._seconds_ns("stamp_tolerance")
            self.matcher.timeout_ns = self._seconds_ns("match_timeout")
        self.get_logger().info("parameters changed: " + ", ".join(f"{k}={v}" for k, v in changes.items()))

    # --- callbacks (executor thread: pairing only) ------------------------------------------------
    def segmentations_callback(self, msg: SegmentationArray) -> None:
        with self.lock:
            depth = self.matcher.add_segmentation(_stamp_ns(msg.header.stamp), msg, time.monotonic_ns())
        if depth is not None:
            self._queue(msg, depth)

    def depth_callback(self, msg: Image) -> None:
        with self.lock:
            matched = self.matcher.add_depth(_stamp_ns(msg.header.stamp), msg)
        for segmentations, depth in matched:
            self._queue(segmentations, depth)

    def camera_info_callback(self, msg: CameraInfo) -> None:
        self.camera_infos.append(msg)

    def _camera_info_for(self, depth: Image) -> CameraInfo | None:
        """The camera_info with the depth image's stamp (drivers send them together), else the latest."""
        infos = list(self.camera_infos)
        stamp = _stamp_ns(depth.header.stamp)
        same = [info for info in infos if _stamp_ns(info.header.stamp) == stamp]
        return same[-1] if same else (infos[-1] if infos else None)

    def expiry_callback(self) -> None:
        with self.lock:
            expired = self.matcher.expired(time.monotonic_ns())
        for msg in expired:  # no depth work: answered here
            entries = self._entries(msg)
            self._publish(msg.header, msg, [LocatedObject(e.prompt_id, Status.NO_DEPTH_IMAGE, score=e.score)
                                             for e in entries])
            self._warn("no depth", f"no depth image within {self.params['stamp_tolerance'] * 1000:.0f} ms of "
                       f"the segmented frame's stamp arrived on {self.resolve_topic_name('depth')} in "
                       f"{self.params['match_timeout']} s: objects are NO_DEPTH_IMAGE")

    def _queue(self, segmentations: SegmentationArray, depth: Image) -> None:
        if self._slot.put((segmentations, depth)):
            self._warn("dropped", "the depth work falls behind: a frame's objects were dropped")

    def _warn(self, kind: str, message: str, period_s: float = 5.0) -> None:
        """One line per ``kind`` per ``period_s``: a steady problem does not flood the log."""
        now = time.monotonic()
        if now - self._warned.get(kind, -1e9) >= period_s:
            self._warned[kind] = now
            self.get_logger().warning(message)

    # --- worker thread ------------------------------------------------------------------------
    def _work_loop(self) -> None:
        while self._running:
            item = self._slot.get(timeout=0.5)
            if item is None:
                continue
            segmentations, depth = item
            try:
                objects = self._measure(segmentations, depth, self._camera_info_for(depth))
                self._publish(depth.header, segmentations, objects)
            except Exception as exc:  # never let one frame kill the worker
                self.get_logger().error(
                    f"frame failed: {type(exc).__name__}: {exc}", throttle_duration_sec=2.0)

    def _entries(self, msg: SegmentationArray) -> list[Segmentation]:
        entries = [s for s in msg.segmentations[:MAX_ENTRIES] if s.status == Segmentation.OK]
        if len(msg.segmentations) > MAX_ENTRIES:
            self._warn("entries", f"{len(msg.segmentations)} segmentations in one message: "
                       f"only the first {MAX_ENTRIES} are read")
        return entries

    def _measure(
        self, msg: SegmentationArray, depth_msg: Image, info: CameraInfo | None
    ) -> list[LocatedObject]:
        entries = self._entries(msg)

        def every(status: Status, why: str) -> list[LocatedObject]:
            self._warn(status.name, why)
            return [LocatedObject(e.prompt_id, status, score=e.score, detail=why) for e in entries]

        try:
            depth, metres_per_unit = depth_array(depth_msg)
        except ImageConversionError as exc:
            return every(Status.BAD_DEPTH_IMAGE, f"depth image unusable: {exc}")
        if info is None:
            return every(Status.BAD_CAMERA_INFO,
                         f"no camera_info yet on {self.resolve_topic_name('depth/camera_info')}")
        try:
            intrinsics = intrinsics_for(info.k, (info.width, info.height), (depth.shape[1], depth.shape[0]))
        except CameraInfoError as exc:
            return every(Status.BAD_CAMERA_INFO, f"{self.resolve_topic_name('depth/camera_info')}: {exc}")
        objects = []
        for entry in entries:
            try:
                mask = image_array(entry.mask)
            except ImageConversionError as exc:
                self._warn("mask", f"prompt {entry.prompt_id}: mask unusable ({exc}); entry skipped")
                continue
            if mask.ndim != 2 or mask.shape != (entry.crop.height, entry.crop.width):
                self._warn("mask", f"prompt {entry.prompt_id}: mask {mask.shape[::-1]} is not the size of "
                           f"its crop ({entry.crop.width}x{entry.crop.height}); entry skipped")
                continue
            located = locate_object(entry.prompt_id, mask, (entry.crop.x_offset, entry.crop.y_offset), depth,
                                    metres_per_unit, intrinsics, self.settings, entry.score)
            if located.status == Status.BAD_DEPTH_IMAGE:
                self._warn("outside", located.detail)
            objects.append(located)
        return objects

    def _publish(self, header, segmentations: SegmentationArray, objects: list[LocatedObject]) -> None:
        with self._publish_lock:
            if self._running:  # shutting down: the publishers may already be gone
                self._publish_locked(header, segmentations, objects)

    def _publish_locked(self, header, segmentations: SegmentationArray, objects: list[LocatedObject]) -> None:
        out = Object3DArray(header=header, frame_stamp=Time(sec=segmentations.header.stamp.sec,
                                                            nanosec=segmentations.header.stamp.nanosec))
        for obj in objects:
            msg = Object3D(prompt_id=int(obj.prompt_id) & 0xFFFFFFFF, status=int(obj.status),
                           front_depth=float(obj.front_depth), valid_points=obj.valid_points,
                           object_points=obj.object_points, sample_stride=obj.stride, score=float(obj.score))
            msg.centroid.x, msg.centroid.y, msg.centroid.z = obj.centroid
            msg.extent_min.x, msg.extent_min.y, msg.extent_min.z = obj.extent_min
            msg.extent_max.x, msg.extent_max.y, msg.extent_max.z = obj.extent_max
            out.objects.append(msg)
        self.objects_pub.publish(out)
        if self.params["publish_points"]:
            data, count = cloud_data(objects)
            cloud = PointCloud2(header=header, height=1, width=count, is_bigendian=False,
                                point_step=CLOUD_POINT_STEP, row_step=CLOUD_POINT_STEP * count, is_dense=True)
            cloud.fields = [PointField(name=name, offset=offset, datatype=_POINT_FIELD_TYPES[kind], count=1)
                            for name, offset, kind in CLOUD_FIELDS]
            cloud.data = data
            self.points_pub.publish(cloud)
        if self.detections_pub is not None:
            ok = [(o.prompt_id, o.extent_min, o.extent_max, o.score)
                  for o in objects if o.status == Status.OK]
            self.detections_pub.publish(self.detections.boxes_3d(header, ok))

    def shutdown(self) -> None:
        self._running = False
        self._slot.close()
        self._worker.join(timeout=3.0)


def main(args: list[str] | None = None) -> int:
    return run_node(Objects3dNode, NODE_NAME, (ConfigError,), args)


if __name__ == "__main__":
    sys.exit(main())
