"""Decompression bombs among a 10 fps JPEG stream, against the sensor node (issue 21's bar).

An independent client (this process) streams 640x480 JPEG frames at 10 fps on
``image/compressed`` with one prompt, sends the 785-byte JPEG whose frame header claims
32000x32000 at ``--jpeg-at`` s and the 389 KB 20000x20000 PNG at ``--png-at`` s, and keeps
streaming. Printed: the longest gap between answers (``segmentations``) to valid frames (the last
answer to the end of the stream included),
the valid frames answered in the 12 s after the first bomb, answers (segmentations or mask)
to a bomb, the node's peak RSS (VmHWM) growth from just before the first bomb, its RSS
growth at the end, and its ``bad_images`` count.

    python bench/bench_bombs.py [--seconds 24] [--runtime DIR]

--runtime DIR starts the node from another checkout's ``picosam3_ros`` (e.g. the code before
the payload guard) with this script unchanged. The bombs are generated (test/payloads.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))

from node_helpers import RosClient, node_command, ros_env  # noqa: E402
from payloads import jpeg_bomb, png_bomb  # noqa: E402

from picosam3_ros.core.process_group import start_group, stop_group  # noqa: E402

DOMAIN = 76
FPS = 10.0


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=24.0)
    parser.add_argument("--jpeg-at", type=float, default=6.0)
    parser.add_argument("--png-at", type=float, default=12.0)
    parser.add_argument("--runtime", type=Path, default=REPO, help="checkout whose node code runs")
    parser.add_argument("--model", default=str(REPO / "picosam3_ros" / "models"))
    args = parser.parse_args()
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray, SegmentationArray

    tmp = Path(tempfile.mkdtemp(prefix="bench_bombs_"))
    params = {"model": args.model, "camera": "none", "backend": "onnx", "image_transport": "compressed",
              "prompt_timeout": 0.0}
    proc = start_group(node_command("picosam3_ros.nodes.sensor_node", params), ros_env(DOMAIN),
                       tmp / "node.log", cwd=args.runtime.resolve())
    client = RosClient(DOMAIN, "bench_bombs_client")
    answers: dict[int, float] = {}  # stamp ns -> arrival (monotonic s) of segmentations
    masks: set[int] = set()
    bad_images = [-1]
    try:
        def on_segmentations(msg) -> None:
            answers.setdefault(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, time.monotonic())

        def on_mask(msg) -> None:
            masks.add(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)

        def on_diagnostics(msg) -> None:
            for status in msg.status:
                for kv in status.values:
                    if kv.key == "bad_images":
                        bad_images[0] = int(kv.value)

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        client.node.create_subscription(SegmentationArray, "segmentations", on_segmentations, reliable)
        client.node.create_subscription(Image, "mask", on_mask, reliable)  # a reliable reader, as rviz
        client.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
        image_pub = client.node.create_publisher(CompressedImage, "image/compressed", reliable)
        prompt_pub = client.node.create_publisher(RoiPromptArray, "prompts", 10)
        prompts = RoiPromptArray(prompts=[RoiPrompt(id=1)])
        prompts.prompts[0].roi.x_offset, prompts.prompts[0].roi.y_offset = 200, 120
        prompts.prompts[0].roi.width, prompts.prompts[0].roi.height = 200, 240
        rng = np.random.default_rng(0)
        picture = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), np.uint8), (0, 0), 4)
        valid = cv2.imencode(".jpg", picture)[1].tobytes()

        def send(data: bytes, fmt: str) -> int:
            stamp = time.time_ns()
            msg = CompressedImage(format=fmt, data=data)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
            image_pub.publish(msg)
            return stamp

        warm_deadline = time.monotonic() + 60  # the node answering before the clock starts
        while time.monotonic() < warm_deadline:
            prompt_pub.publish(prompts)
            stamp = send(valid, "jpeg")
            time.sleep(1 / FPS)
            with client.lock:
                if stamp in answers:
                    break
        bombs = {"jpeg": jpeg_bomb(), "png": png_bomb()}
        pending = sorted([(args.jpeg_at, "jpeg"), (args.png_at, "png")])
        sent_valid: dict[int, float] = {}  # stamp ns -> sent (monotonic s)
        bomb_stamps: dict[int, str] = {}
        peak_before = rss_start = float("nan")
        start = time.monotonic()
        while time.monotonic() - start < args.seconds:
            t = time.monotonic() - start
            if pending and t >= pending[0][0]:
                if not bomb_stamps:
                    peak_before, rss_start = status_mb(proc.pid, "VmHWM"), status_mb(proc.pid, "VmRSS")
                fmt = pending.pop(0)[1]
                bomb_stamps[send(bombs[fmt], fmt)] = fmt
                first_bomb_t = time.monotonic()
            prompt_pub.publish(prompts)
            sent_valid[send(valid, "jpeg")] = time.monotonic()
            time.sleep(max(0.0, start + len(sent_valid) / FPS - time.monotonic()))
        time.sleep(2.0)
        peak_after, rss_end = status_mb(proc.pid, "VmHWM"), status_mb(proc.pid, "VmRSS")
        with client.lock:
            times = sorted(answers[s] for s in sent_valid if s in answers)
            sent_after = [s for s, t in sent_valid.items() if first_bomb_t <= t < first_bomb_t + 12.0]
            after_bomb = [s for s in sent_after if s in answers]
            bomb_answers = sum(s in answers or s in masks for s in bomb_stamps)
        end_of_stream = max(sent_valid.values())  # no answer after the last one counts as a gap too
        gaps = np.diff(times + [max(end_of_stream, times[-1] if times else end_of_stream)])
        alive = proc.poll() is None
    finally:
        client.close()
        stop_group(proc)
    print(f"\nnode code: {args.runtime.resolve()}; 640x480 JPEG at {FPS:g} fps, packaged model, CPU "
          f"backend; {os.cpu_count()} CPUs; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("| valid frames answered | longest gap between answers (s) | answered in the 12 s after the "
          "first bomb | answers to a bomb | peak RSS growth (MB) | RSS growth at the end (MB) | bad_images "
          "| node alive |")
    print("|---|---|---|---|---|---|---|---|")
    longest = gaps.max() if gaps.size else float("nan")
    print(f"| {len(times)}/{len(sent_valid)} | {longest:.2f} | {len(after_bomb)}/{len(sent_after)} "
          f"| {bomb_answers}/{len(bomb_stamps)} | {peak_after - peak_before:.0f} | {rss_end - rss_start:.0f} "
          f"| {bad_images[0]} | {'yes' if alive else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
