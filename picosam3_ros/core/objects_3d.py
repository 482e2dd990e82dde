"""A mask + an aligned depth image + intrinsics -> the object in 3D (ROS-free).

What a grasp planner wants from a mask: where the object is (centroid, metres, in the
depth camera's optical frame: x right, y down, z forward), how big its visible surface is
(an axis-aligned extent) and how much depth backs it up. Masks and depth are not clean:

* **Zero depth is no data** (a hole), as are NaN/inf (32FC1) and depths outside
  ``[min_depth, max_depth]``: they are not points, and not 0 m.
* **A mask leaks onto the background.** Its depths are then two populations, the object
  and what lies behind it. The object is the *front surface*: the nearest depth cluster
  holding at least ``min_surface_fraction`` of the mask's valid points (so a few stray
  pixels in front do not count), where a cluster is a run of depth histogram bins
  (1% of the depth wide) broken only by a gap of at least ``surface_gap`` (a fraction of the
  depth) with next to nothing in it. A mean over the mask, or a median when the leak is
  large, would put the object somewhere between the two.
* **Work is bounded**: a mask with more than ``max_points`` pixels is sampled on a regular
  grid (every ``stride``-th pixel in x and y), which keeps the centroid unbiased.

Depth units come from the encoding (REP 118: ``16UC1`` millimetres, ``32FC1`` metres;
see ``image_conversion.depth_array``). The mask must be aligned to the depth image (the
usual ``aligned_depth_to_color`` topic): mask pixel (u, v) is depth pixel (u, v).
Pixel (u, v) back-projects with the pinhole model of the camera_info's K:
``x = (u - cx) z / fx, y = (v - cy) z / fy`` (distortion ignored: aligned depth is
registered to an undistorted or nearly undistorted colour image).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Generic, Sequence, TypeVar

import numpy as np

# Width of a depth histogram bin, as a fraction of the depth (stereo depth noise grows with depth).
BIN_FRACTION = 0.01
# A histogram bin with at most this fraction of the points (and at least 1) counts as empty:
# the flying pixels between an object's edge and the background do not bridge the gap.
NOISE_FRACTION = 0.002
# The extent is taken between these percentiles of the object points, so a stray pixel
# does not stretch the box.
EXTENT_PERCENTILES = (1.0, 99.0)


class Status(IntEnum):
    """Mirrors the constants of picosam3_msgs/Object3D."""

    OK = 0
    NO_DEPTH = 1
    NO_DEPTH_IMAGE = 2
    BAD_CAMERA_INFO = 3
    BAD_DEPTH_IMAGE = 4


class CameraInfoError(ValueError):
    """The camera_info cannot be used with this depth image; the message says why."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics (pixels) of a ``width`` x ``height`` image."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int


def intrinsics_for(k: Sequence[float], info_size: tuple[int, int], depth_size: tuple[int, int]) -> Intrinsics:
    """The intrinsics of a camera_info (row-major 3x3 ``k``, its width/height) for a depth image.

    Raises CameraInfoError when the camera is uncalibrated (K all zero, REP-104) or when the
    camera_info describes another image size than the depth image's (it is then the info of
    another stream, e.g. the unaligned depth camera's, and its K would put points elsewhere).
    """
    values = [float(v) for v in k]
    if len(values) != 9 or not all(math.isfinite(v) for v in values):
        raise CameraInfoError(f"K must be 9 finite numbers, got {values}")
    fx, cx, fy, cy = values[0], values[2], values[4], values[5]
    if fx <= 0.0 or fy <= 0.0:
        raise CameraInfoError(f"camera_info is uncalibrated (fx={fx}, fy={fy}; K all zero means "
                              "'no calibration', REP-104)")
    info_w, info_h = int(info_size[0]), int(info_size[1])
    depth_w, depth_h = int(depth_size[0]), int(depth_size[1])
    if (info_w, info_h) != (depth_w, depth_h):
        raise CameraInfoError(
            f"camera_info is for {info_w}x{info_h} images but the depth image is {depth_w}x{depth_h}: "
            "subscribe depth/camera_info to the info of the same (aligned) depth stream"
        )
    return Intrinsics(fx, fy, cx, cy, depth_w, depth_h)


@dataclass(frozen=True)
class DepthSettings:
    """How object points are taken from the depth under a mask (the objects_3d parameters)."""

    min_depth: float = 0.1  # m; nearer is no data (stereo cameras' minimum range)
    max_depth: float = 10.0  # m; farther is no data
    max_points: int = 5000  # mask pixels sampled per prompt at most (a regular grid stride)
    min_points: int = 20  # fewer object points: NO_DEPTH
    surface_gap: float = 0.05  # an empty depth gap this big (fraction of the depth) ends the object
    min_surface_fraction: float = 0.1  # the front surface holds at least this fraction of the points
    max_object_depth: float = 0.5  # m; the object ends this far behind its front surface at most


@dataclass
class LocatedObject:
    """One prompt's object. Points and coordinates are metres in the depth camera's optical frame.

    valid_points: samples under the mask with usable depth; object_points: those kept as the
    object (its front surface); stride: the sampling grid step (1 = every mask pixel).
    points: the object points, float32 (N, 3) (None unless OK).
    """

    prompt_id: int
    status: Status
    centroid: tuple[float, float, float] = (0.0, 0.0, 0.0)
    extent_min: tuple[float, float, float] = (0.0, 0.0, 0.0)
    extent_max: tuple[float, float, float] = (0.0, 0.0, 0.0)
    front_depth: float = 0.0
    valid_points: int = 0
    object_points: int = 0
    stride: int = 1
    score: float = 0.0
    points: np.ndarray | None = None
    detail: str = ""


def sampling_stride(mask_pixels: int, max_points: int) -> int:
    """The grid step that leaves at most about ``max_points`` of ``mask_pixels`` (1 = all)."""
    if mask_pixels <= max_points or max_points <= 0:
        return 1
    return int(math.ceil(math.sqrt(mask_pixels / max_points)))


def front_surface(depths: np.ndarray, settings: DepthSettings) -> tuple[float, float]:
    """(near, far) depth bounds (m) of the front surface among valid ``depths`` (see the module doc)."""
    z = np.asarray(depths, np.float64)
    log_z = np.log(z)
    width = math.log1p(BIN_FRACTION)
    low = float(log_z.min())
    bins = int((float(log_z.max()) - low) / width) + 1
    index = np.minimum(((log_z - low) / width).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    floor = max(1, int(NOISE_FRACTION * z.size))
    gap_bins = max(1, int(math.ceil(math.log1p(settings.surface_gap) / width)))
    # Clusters: runs of occupied bins, joined across fewer than gap_bins empty ones.
    clusters: list[list[int]] = []  # [first bin, last bin, points]
    for b in np.flatnonzero(counts > floor):
        if clusters and b - clusters[-1][1] - 1 < gap_bins:
            clusters[-1][1] = int(b)
        else:
            clusters.append([int(b), int(b), 0])
    if not clusters:  # every bin is sparse (very few points): one cluster over all of them
        clusters = [[0, bins - 1, 0]]
    for cluster in clusters:
        cluster[2] = int(counts[cluster[0]: cluster[1] + 1].sum())
    needed = settings.min_surface_fraction * z.size
    chosen = next((c for c in clusters if c[2] >= needed), max(clusters, key=lambda c: c[2]))
    near = math.exp(low + chosen[0] * width)
    far = math.exp(low + (chosen[1] + 1) * width)
    return near, min(far, near + settings.max_object_depth)


def locate_object(
    prompt_id: int,
    mask: np.ndarray,
    origin: tuple[int, int],
    depth: np.ndarray,
    metres_per_unit: float,
    intrinsics: Intrinsics,
    settings: DepthSettings,
    score: float = 0.0,
) -> LocatedObject:
    """The object under a crop-local ``mask`` (uint8, > 127 = object) whose top-left is ``origin``.

    ``depth``: the whole depth image (H, W), uint16 or float32 in its own units
    (``metres_per_unit`` converts). Returns BAD_DEPTH_IMAGE when the crop is not inside the
    depth image, NO_DEPTH when fewer than ``min_points`` object points have depth.
    """
    x0, y0 = int(origin[0]), int(origin[1])
    height, width = mask.shape[:2]
    depth_h, depth_w = depth.shape[:2]
    if x0 < 0 or y0 < 0 or x0 + width > depth_w or y0 + height > depth_h:
        return LocatedObject(prompt_id, Status.BAD_DEPTH_IMAGE, score=score, detail=(
            f"the mask's crop ({x0}, {y0}, {width}x{height}) is not inside the {depth_w}x{depth_h} "
            "depth image: is the depth aligned to the segmented frame?"))
    on = mask > 127
    stride = sampling_stride(int(np.count_nonzero(on)), settings.max_points)
    start = stride // 2  # the middle pixel of each stride x stride cell
    rows, cols = np.nonzero(on[start::stride, start::stride])
    v = y0 + start + rows * stride
    u = x0 + start + cols * stride
    z = depth[v, u].astype(np.float32) * np.float32(metres_per_unit)
    valid = np.isfinite(z) & (z >= settings.min_depth) & (z <= settings.max_depth)
    valid_points = int(np.count_nonzero(valid))
    result = LocatedObject(prompt_id, Status.NO_DEPTH, valid_points=valid_points, stride=stride, score=score)
    if valid_points < settings.min_points:
        result.detail = f"{valid_points} mask pixels with depth (at least {settings.min_points} needed)"
        return result
    u, v, z = u[valid], v[valid], z[valid]
    near, far = front_surface(z, settings)
    keep = (z >= near) & (z < far)
    u, v, z = u[keep], v[keep], z[keep]
    result.object_points = int(z.size)
    if z.size < settings.min_points:
        result.detail = f"{z.size} points on the front surface (at least {settings.min_points} needed)"
        return result
    points = np.empty((z.size, 3), np.float32)
    points[:, 0] = (u.astype(np.float32) - np.float32(intrinsics.cx)) * z / np.float32(intrinsics.fx)
    points[:, 1] = (v.astype(np.float32) - np.float32(intrinsics.cy)) * z / np.float32(intrinsics.fy)
    points[:, 2] = z
    low, high = np.percentile(points, EXTENT_PERCENTILES, axis=0)
    result.status = Status.OK
    result.centroid = tuple(float(c) for c in points.mean(axis=0, dtype=np.float64))
    result.extent_min = tuple(float(c) for c in low)
    result.extent_max = tuple(float(c) for c in high)
    result.front_depth = float(np.percentile(z, EXTENT_PERCENTILES[0]))
    result.points = points
    return result


# PointCloud2 layout of ``objects/points``: x, y, z float32 (m), prompt_id uint32.
CLOUD_FIELDS = (("x", 0, "float32"), ("y", 4, "float32"), ("z", 8, "float32"), ("prompt_id", 12, "uint32"))
CLOUD_POINT_STEP = 16
_CLOUD_DTYPE = np.dtype({"names": ["x", "y", "z", "prompt_id"],
                         "formats": ["<f4", "<f4", "<f4", "<u4"], "offsets": [0, 4, 8, 12],
                         "itemsize": CLOUD_POINT_STEP})


def cloud_data(objects: Sequence[LocatedObject]) -> tuple[bytes, int]:
    """The little-endian point records of every OK object (prompt id per point) and their count."""
    chunks = [o for o in objects if o.status == Status.OK and o.points is not None]
    total = sum(len(o.points) for o in chunks)
    records = np.empty(total, _CLOUD_DTYPE)
    start = 0
    for obj in chunks:
        end = start + len(obj.points)
        records["x"][start:end] = obj.points[:, 0]
        records["y"][start:end] = obj.points[:, 1]
        records["z"][start:end] = obj.points[:, 2]
        records["prompt_id"][start:end] = obj.prompt_id & 0xFFFFFFFF
        start = end
    return records.tobytes(), total


def read_cloud(data: bytes) -> np.ndarray:
    """The records of :func:`cloud_data` back as a structured array (x, y, z, prompt_id)."""
    return np.frombuffer(bytes(data), _CLOUD_DTYPE)


# --- pairing segmentations with depth frames -----------------------------------------------------
T = TypeVar("T")
D = TypeVar("D")


@dataclass
class _Pending(Generic[T]):
    stamp_ns: int
    arrival_ns: int
    item: T


@dataclass
class StampMatcher(Generic[T, D]):
    """Pairs each segmentation with the depth frame of the nearest stamp within ``tolerance_ns``.

    Depth frames usually arrive first (segmenting takes time), so the last ``depth_capacity``
    are kept; a segmentation without a match waits for one at most ``timeout_ns`` (by arrival
    time) and at most ``pending_capacity`` of them wait. :meth:`expired` hands back those that
    waited too long (or were pushed out): their frames had no depth.
    """

    tolerance_ns: int
    timeout_ns: int
    depth_capacity: int = 30
    pending_capacity: int = 8
    _depth: deque = field(default_factory=deque)
    _pending: deque = field(default_factory=deque)
    _overflow: list = field(default_factory=list)

    def _nearest(self, stamp_ns: int) -> D | None:
        best = None
        for depth_stamp, depth in self._depth:
            gap = abs(depth_stamp - stamp_ns)
            if gap <= self.tolerance_ns and (best is None or gap < best[0]):
                best = (gap, depth)
        return None if best is None else best[1]

    def add_depth(self, stamp_ns: int, depth: D) -> list[tuple[T, D]]:
        """Keep a depth frame; the waiting segmentations it matches, with it."""
        self._depth.append((stamp_ns, depth))
        while len(self._depth) > self.depth_capacity:
            self._depth.popleft()
        matched = [p for p in self._pending if abs(p.stamp_ns - stamp_ns) <= self.tolerance_ns]
        for pending in matched:
            self._pending.remove(pending)
        return [(p.item, depth) for p in matched]

    def add_segmentation(self, stamp_ns: int, item: T, arrival_ns: int) -> D | None:
        """The depth frame for ``item``, or None (it waits; see :meth:`expired`)."""
        depth = self._nearest(stamp_ns)
        if depth is not None:
            return depth
        self._pending.append(_Pending(stamp_ns, arrival_ns, item))
        while len(self._pending) > self.pending_capacity:
            self._overflow.append(self._pending.popleft().item)
        return None

    def expired(self, now_ns: int) -> list[T]:
        """The waiting segmentations whose depth did not come in time (oldest first)."""
        out, self._overflow = self._overflow, []
        while self._pending and now_ns - self._pending[0].arrival_ns > self.timeout_ns:
            out.append(self._pending.popleft().item)
        return out

    def clear(self) -> None:
        self._depth.clear()
        self._pending.clear()
        self._overflow.clear()
