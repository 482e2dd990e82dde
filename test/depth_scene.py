"""A synthetic RGB-D scene over a real frame, for the objects_3d tests and bench/bench_objects_3d.py.

The colour image is real; the depth is made from its ground truth: the object's pixels at
``object_m``, everything else at ``background_m``, and a fraction of pixels zeroed (holes,
"no data" as real depth cameras report it). The camera is a pinhole with a typical RGB-D
colour camera's focal length, principal point at the centre. The ground-truth centroid is
the back-projection of every ground-truth object pixel at ``object_m`` (holes included: the
object is there even where the camera measured nothing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

FOCAL_AT_640 = 525.0  # px, for a 640-pixel-wide image (Kinect-class colour cameras; D435 ~ 615)


def intrinsics(width: int, height: int) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of the scene camera for a ``width`` x ``height`` image."""
    focal = FOCAL_AT_640 * width / 640.0
    return focal, focal, (width - 1) / 2.0, (height - 1) / 2.0


def depth_mm(object_mask: np.ndarray, object_m: float = 1.0, background_m: float = 2.0,
             holes: float = 0.02, seed: int = 0) -> np.ndarray:
    """uint16 (H, W) depth in millimetres (16UC1): object at ``object_m``, the rest farther, holes = 0."""
    depth = np.where(object_mask, round(object_m * 1000), round(background_m * 1000)).astype(np.uint16)
    if holes > 0:
        depth[np.random.default_rng(seed).random(depth.shape) < holes] = 0
    return depth


def gt_centroid(object_mask: np.ndarray, object_m: float = 1.0) -> np.ndarray:
    """(3,) metres: the mean of the ground-truth object's pixels back-projected at ``object_m``."""
    height, width = object_mask.shape
    fx, fy, cx, cy = intrinsics(width, height)
    v, u = np.nonzero(object_mask)
    return np.array([((u - cx) * object_m / fx).mean(), ((v - cy) * object_m / fy).mean(), object_m])


def depth_image_msg(depth: np.ndarray, stamp, frame_id: str):
    """A sensor_msgs/Image (16UC1, little endian) of ``depth`` with that stamp and frame_id."""
    from sensor_msgs.msg import Image

    msg = Image(height=depth.shape[0], width=depth.shape[1], encoding="16UC1", is_bigendian=0,
                step=depth.shape[1] * 2)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.data = np.ascontiguousarray(depth, "<u2").tobytes()
    return msg


def camera_info_msg(width: int, height: int, stamp, frame_id: str):
    """A calibrated sensor_msgs/CameraInfo of the scene camera (no distortion)."""
    from sensor_msgs.msg import CameraInfo

    fx, fy, cx, cy = intrinsics(width, height)
    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    return msg


# --- an RGB-D camera and a detector in one client: frames in, objects out ----------------------
@dataclass
class FrameOutcome:
    """What the client got for one frame (its prompt id is ``index + 1``).

    status: the Object3D status of the frame's prompt (None: no Object3DArray for the frame, or
    no entry for the prompt). error_m: centroid distance to the ground truth's (m, when OK).
    segmentation_ms: the frame published -> its SegmentationArray received; added_ms: that
    SegmentationArray received -> its Object3DArray received (what objects_3d adds); score: the
    mask's (Object3D.score = Segmentation.score); centroid: the Object3D's (m).
    """

    index: int
    status: int | None = None
    error_m: float | None = None
    segmentation_ms: float | None = None
    added_ms: float | None = None
    objects: int = 0
    score: float = 0.0
    centroid: tuple[float, float, float] | None = None
    segmentation: object = None  # the prompt's Segmentation entry, as received


def run_rgbd_frames(client, frames, proc_alive=lambda: True, frame_id: str = "camera_color_optical_frame",
                    timeout_s: float = 30.0, stamp_base: int = 1_000_000,
                    on_outcome=None) -> list[FrameOutcome]:
    """Publish each (rgb, box, mask) of ``frames`` (any iterable) as a camera + detector would
    and wait for its objects.

    Per frame: the GT box as the only prompt (id = index + 1), then the 16UC1 depth (object
    1.0 m, background 2.0 m, 2% holes; ``depth_mm(mask, seed=index)``), the camera_info and the
    rgb8 image, all with one stamp; the next frame goes out once this one's Object3DArray is in
    (or after ``timeout_s``). ``on_outcome(outcome, frame)``, when given, sees each frame's
    outcome with its frame (then neither is kept by this function's caller unless it wants).
    """
    from builtin_interfaces.msg import Time
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, Image

    from picosam3_msgs.msg import Object3DArray, RoiPrompt, RoiPromptArray, SegmentationArray
    from picosam3_ros.core.image_conversion import fill_image

    qos = QoSProfile(depth=10)
    node = client.node
    pubs = {"prompts": node.create_publisher(RoiPromptArray, "prompts", qos),
            "depth": node.create_publisher(Image, "depth", qos),
            "info": node.create_publisher(CameraInfo, "depth/camera_info", qos),
            "image": node.create_publisher(Image, "image", qos)}
    received: dict[str, dict[int, tuple[float, object]]] = {"segmentations": {}, "objects": {}}

    def keeper(kind, stamp_of):
        def callback(msg) -> None:
            with client.lock:
                received[kind].setdefault(stamp_of(msg), (time.monotonic(), msg))
        return callback

    node.create_subscription(SegmentationArray, "segmentations",
                             keeper("segmentations", lambda m: m.header.stamp.sec), qos)
    node.create_subscription(Object3DArray, "objects", keeper("objects", lambda m: m.frame_stamp.sec), qos)
    # Every node subscribed before the first frame (discovery is slow on a loaded machine).
    wanted = {"image": 1, "prompts": 1, "depth": 1, "info": 1}
    client.wait_for(lambda: all(pubs[k].get_subscription_count() >= n for k, n in wanted.items())
                    and node.count_publishers("objects") >= 1, timeout=120.0)
    time.sleep(0.5)
    outcomes = []
    for index, (rgb, box, mask) in enumerate(frames):
        stamp = Time(sec=stamp_base + index)
        prompt_id = index + 1
        prompts = RoiPromptArray()
        prompt = RoiPrompt(id=prompt_id)
        prompt.roi.x_offset, prompt.roi.y_offset, prompt.roi.width, prompt.roi.height = (int(v) for v in box)
        prompts.prompts.append(prompt)
        pubs["prompts"].publish(prompts)
        time.sleep(0.05)  # the prompt set is in before its frame
        height, width = rgb.shape[:2]
        pubs["depth"].publish(depth_image_msg(depth_mm(mask, seed=index), stamp, frame_id))
        pubs["info"].publish(camera_info_msg(width, height, stamp, frame_id))
        image = Image()
        image.header.stamp, image.header.frame_id = stamp, frame_id
        fill_image(image, rgb, "rgb8")
        published = time.monotonic()
        pubs["image"].publish(image)
        client.wait_for(lambda sec=stamp.sec: sec in received["objects"] or not proc_alive(),
                        timeout=timeout_s)
        outcome = FrameOutcome(index)
        with client.lock:
            seg = received["segmentations"].get(stamp.sec)
            obj = received["objects"].get(stamp.sec)
        if seg is not None:
            outcome.segmentation_ms = (seg[0] - published) * 1000.0
            outcome.segmentation = next((e for e in seg[1].segmentations if e.prompt_id == prompt_id), None)
        if obj is not None:
            outcome.objects = len(obj[1].objects)
            if seg is not None:
                outcome.added_ms = (obj[0] - seg[0]) * 1000.0
            mine = [o for o in obj[1].objects if o.prompt_id == prompt_id]
            if mine:
                outcome.status, outcome.score = int(mine[0].status), float(mine[0].score)
                if outcome.status == 0:
                    c = mine[0].centroid
                    outcome.centroid = (c.x, c.y, c.z)
                    outcome.error_m = float(np.linalg.norm(np.array([c.x, c.y, c.z]) - gt_centroid(mask)))
        with client.lock:  # what is measured is kept in the outcome; the messages go
            received["segmentations"].pop(stamp.sec, None)
            received["objects"].pop(stamp.sec, None)
        if on_outcome is not None:
            on_outcome(outcome, (rgb, box, mask))
        outcomes.append(outcome)
        if not proc_alive():
            break
    return outcomes
