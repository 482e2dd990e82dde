"""The objects_3d bar: real held-out frames + GT boxes + aligned depth in, Object3DArray out.

The sensor node (CPU backend, the packaged model) and objects_3d run as their own processes;
this script is the independent client: per frame it publishes the ground-truth box of one
instance as the prompt, a 16UC1 depth image aligned to the frame (the instance at 1.0 m,
everything else at 2.0 m, 2% holes), its camera_info (pinhole, f = 525 px at 640 px wide) and
the rgb8 frame, and waits for the frame's Object3DArray. Frames: every instance of the COCO
val2017 dev split (``--limit`` for fewer), each its own frame; without the data, the demo clip.

It prints the share of frames with an Object3DArray, the centroid error against the ground
truth's (the back-projection of every GT pixel at 1.0 m), and, for comparison on the same
masks and depth, the centroid a mean over the mask would give and the one the GT box used
as the mask gives; then the latency objects_3d adds (SegmentationArray received ->
Object3DArray received, both at this client) and the core's time per object.

    python bench/bench_objects_3d.py [--data-root ../shared/data] [--limit N] [--max-points 5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))
from depth_scene import depth_mm, gt_centroid, intrinsics, run_rgbd_frames  # noqa: E402
from node_helpers import (  # noqa: E402
    RosClient,
    large_images_env,
    node_command,
    ros_env,
    start_process,
    stop_process,
)

DOMAIN = 16
FRAME_ID = "camera_color_optical_frame"
DEV_SPLIT = ("coco/annotations/instances_val2017_dev.json", "coco/val2017")


def dev_frames(data_root: Path, limit: int):
    """(rgb, GT box, GT mask) per instance of the dev split, or of the demo clip without it; and its name."""
    from picosam3_ros.core.coco_dataset import CocoDataset

    annotations, images = (data_root / p for p in DEV_SPLIT)
    if annotations.is_file():
        dataset = CocoDataset(annotations, images)
        frames = ((rgb, inst.box, inst.mask) for rgb, inst in dataset.instances(limit=limit))
        return frames, f"COCO val2017 dev split ({annotations.name})"
    from picosam3_ros.core.clip import Clip

    items = [(im.image_rgb, inst.box, inst.mask) for im in Clip().images for inst in im.instances]
    return iter(items[:limit] if limit else items), "the demo clip (no dev split under --data-root)"


def naive_centroid(mask: np.ndarray, depth: np.ndarray) -> np.ndarray | None:
    """The mean of every mask pixel with depth, back-projected: what the front surface replaces."""
    height, width = depth.shape
    fx, fy, cx, cy = intrinsics(width, height)
    v, u = np.nonzero(mask & (depth > 0))
    if not len(v):
        return None
    z = depth[v, u] / 1000.0
    return np.array([((u - cx) * z / fx).mean(), ((v - cy) * z / fy).mean(), z.mean()])


class Comparisons:
    """Per frame, on the mask the sensor sent and the same depth: the naive mean, the box as the
    mask, and the core's own time for the object."""

    def __init__(self, max_points: int):
        from picosam3_ros.core.objects_3d import DepthSettings

        self.settings = DepthSettings(max_points=max_points)
        self.naive: list[float] = []
        self.box: list[float] = []
        self.core_ms: list[float] = []
        self.sizes: list[int] = []

    def __call__(self, outcome, frame) -> None:
        from picosam3_ros.core.image_conversion import image_array
        from picosam3_ros.core.objects_3d import Intrinsics, Status, locate_object

        rgb, box, mask = frame
        height, width = mask.shape
        depth = depth_mm(mask, seed=outcome.index)
        truth = gt_centroid(mask)
        intr = Intrinsics(*intrinsics(width, height), width, height)
        self.sizes.append(int(mask.sum()))
        entry, outcome.segmentation = outcome.segmentation, None
        if entry is None or entry.status != 0:
            self.naive.append(np.inf)
        else:
            crop = entry.crop
            frame_mask = np.zeros_like(mask)
            rows = slice(crop.y_offset, crop.y_offset + crop.height)
            frame_mask[rows, crop.x_offset:crop.x_offset + crop.width] = image_array(entry.mask) > 127
            naive = naive_centroid(frame_mask, depth)
            self.naive.append(np.inf if naive is None else float(np.linalg.norm(naive - truth)))
            start = time.perf_counter()
            locate_object(1, image_array(entry.mask), (crop.x_offset, crop.y_offset), depth, 0.001, intr,
                          self.settings)
            self.core_ms.append((time.perf_counter() - start) * 1000.0)
        x, y, w, h = (int(v) for v in box)
        box_mask = np.full((h, w), 255, np.uint8)
        as_box = locate_object(1, box_mask, (x, y), depth, 0.001, intr, self.settings)
        self.box.append(float(np.linalg.norm(np.array(as_box.centroid) - truth))
                        if as_box.status == Status.OK else np.inf)


def error_row(name: str, errors: list[float]) -> str:
    """Errors in m; inf = no position (counted as a miss, shown as inf in the percentiles)."""
    e = np.sort(np.asarray(errors, float))
    if not len(e):
        return f"| {name} | - | - | - |"
    median, p90 = (e[min(len(e) - 1, int(np.ceil(q * len(e))) - 1)] * 100 for q in (0.5, 0.9))
    return f"| {name} | {float((e < 0.05).mean() * 100):.1f}% | {median:.2f} | {p90:.1f} |"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=0, help="first N instances (0 = all)")
    parser.add_argument("--max-points", type=int, default=5000, help="objects_3d max_points")
    parser.add_argument("--model", default="", help="model directory ('' = the packaged model)")
    args = parser.parse_args()

    frames, source = dev_frames(args.data_root, args.limit)
    tmp = Path(tempfile.mkdtemp(prefix="bench_objects_3d_"))
    # 640x480 rgb8 frames and 16UC1 depth are over 512 KiB: both ends use the large-images profile.
    os.environ.update(large_images_env())
    env = ros_env(DOMAIN)
    sensor_params = {"backend": "onnx", "camera": "none", "detections_type": "''"}
    if args.model:
        sensor_params["model"] = args.model
    sensor = start_process(node_command("picosam3_ros.nodes.sensor_node", sensor_params,
                                        REPO / "config" / "sensor.yaml"), env, tmp / "sensor.log")
    objects = start_process(node_command("picosam3_ros.nodes.objects_3d_node",
                                         {"max_points": args.max_points, "detections_type": "''"},
                                         REPO / "config" / "objects_3d.yaml"), env, tmp / "objects_3d.log")
    client = RosClient(DOMAIN, "bench_rgbd_client")
    compare = Comparisons(args.max_points)
    started = time.monotonic()
    try:
        outcomes = run_rgbd_frames(client, frames, lambda: sensor.poll() is None and objects.poll() is None,
                                   FRAME_ID, on_outcome=compare)
    finally:
        client.close()
        codes = stop_process(sensor), stop_process(objects)
    elapsed = time.monotonic() - started
    if codes != (0, 0):
        print(f"a node failed (exit codes {codes}); logs in {tmp}", file=sys.stderr)
        return 1

    n = len(outcomes)
    arrays = sum(o.objects > 0 for o in outcomes)
    statuses: dict[str, int] = {}
    for o in outcomes:
        key = {None: "no array", 0: "OK", 1: "NO_DEPTH", 2: "NO_DEPTH_IMAGE", 3: "BAD_CAMERA_INFO",
               4: "BAD_DEPTH_IMAGE"}[o.status]
        statuses[key] = statuses.get(key, 0) + 1
    errors = [o.error_m if o.error_m is not None else np.inf for o in outcomes]
    added = np.array([o.added_ms for o in outcomes if o.added_ms is not None])
    segment = np.array([o.segmentation_ms for o in outcomes if o.segmentation_ms is not None])
    core = np.array(compare.core_ms)
    print(f"\nframes: {n} ({source}), one instance each, its GT box as the prompt; depth 16UC1, "
          f"pinhole f=525 px at 640 px, object 1.0 m, background 2.0 m, 2% holes; {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {elapsed:.0f} s")
    print(f"Object3DArray received for {arrays} / {n} frames; the prompt's status: "
          + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    print("\n| centroid (same masks, same depth) | within 5 cm of GT | median error cm | p90 error cm |")
    print("|---|---|---|---|")
    print(error_row("objects_3d over DDS: front surface of the sensor's mask", errors))
    print(error_row("mean of the same mask's depth points (no front surface)", compare.naive))
    print(error_row("the GT box as the mask, front surface", compare.box))
    sizes = np.array(compare.sizes)
    print("\n| object size (GT pixels) | frames | within 5 cm |")
    print("|---|---|---|")
    e = np.asarray(errors)
    classes = (("small < 32^2", 0, 32**2), ("medium", 32**2, 96**2), ("large >= 96^2", 96**2, 1e12))
    for name, low, high in classes:
        chosen = (sizes >= low) & (sizes < high)
        if chosen.any():
            print(f"| {name} | {int(chosen.sum())} | {float((e[chosen] < 0.05).mean() * 100):.1f}% |")
    print("\n| latency (ms) | p50 | p90 | p99 |")
    print("|---|---|---|---|")
    for name, values in (("image published -> segmentations received (sensor node, CPU)", segment),
                         ("segmentations received -> objects received (what objects_3d adds)", added),
                         (f"core per object (locate_object, max_points {args.max_points})", core)):
        if len(values):
            p50, p90, p99 = np.percentile(values, [50, 90, 99])
            print(f"| {name} | {p50:.1f} | {p90:.1f} | {p99:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
