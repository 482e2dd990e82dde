"""Benchmark the sensor node (CPU backend): frames at a fixed rate in, masks out.

The node runs in its own process; this script publishes 640x480 rgb8 frames at
30 fps with 1/4/8 prompts and subscribes to `mask`. It prints, per prompt count:
masks out per frame in, end-to-end latency (frame stamp -> mask received)
p50/p99, node drops (from /diagnostics), node CPU % and RSS.

    python bench/bench_node.py [--seconds 20] [--model DIR] [--prompts 1 4 8] [--no-fastdds-profile]

Both processes use config/fastdds_large_images.xml (README "Large images over DDS")
unless --no-fastdds-profile: without it most 0.9 MB best-effort frames are lost.

Model: --model, else the packaged model (picosam3_ros/models), else a
random-init PicoSAM3-sized network exported with picosam3_train (needs torch).
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

from node_helpers import RosClient, large_images_env, node_command, ros_env, running  # noqa: E402

DOMAIN = 38


def random_init_model(directory: Path) -> Path:
    """Export an untrained PicoSAM3 (same architecture and cost) with a model card."""
    from picosam3_ros.core.model_card import InputSpec, write_model_card
    from picosam3_train.export import INPUT_NAME, OUTPUT_NAME, export_onnx
    from picosam3_train.model import build_model

    directory.mkdir(parents=True, exist_ok=True)
    export_onnx(build_model("picosam3").eval(), directory / "random.onnx")
    spec = InputSpec(INPUT_NAME, 96, "NCHW", "RGB", 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    write_model_card(directory, {"fp32": "random.onnx"}, spec, OUTPUT_NAME)
    return directory


def bench_model(given: str, tmp: Path) -> tuple[Path, str]:
    """(model directory, how to name it): the given one, else the packaged one, else a random-init one."""
    packaged = REPO / "picosam3_ros" / "models"
    if given:
        return Path(given), f"given ({given})"
    if (packaged / "model_card.json").exists():
        return packaged, "packaged (picosam3_ros/models)"
    return random_init_model(tmp / "model"), "random-init PicoSAM3 (no packaged model yet)"


def proc_stats(pid: int) -> tuple[float, float]:
    """(cpu seconds, rss MiB) of a process from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return cpu, rss


def run_case(client, proc, prompts: int, seconds: float, fps: float) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray

    image_pub = client.node.create_publisher(Image, "image", 10)
    prompt_pub = client.node.create_publisher(RoiPromptArray, "prompts", 10)
    received: dict[int, int] = {}  # stamp ns -> receive time ns
    drops = [0]
    frames_in = [0]

    def on_mask(msg):
        received[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = time.time_ns()

    def on_diag(msg):
        for status in msg.status:
            for kv in status.values:
                if kv.key == "drops":
                    drops[0] = int(kv.value)
                elif kv.key == "frames_in":
                    frames_in[0] = int(kv.value)

    sub = client.node.create_subscription(Image, "mask", on_mask, 50)
    diag = client.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    array = RoiPromptArray()
    for i in range(prompts):
        p = RoiPrompt(id=i)
        p.roi.x_offset, p.roi.y_offset = 40 + 70 * (i % 8), 60 + 40 * (i // 8)
        p.roi.width, p.roi.height = 120, 160
        array.prompts.append(p)
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    data = frame.tobytes()
    # Warm up (discovery, first inference), then measure.
    for _ in range(int(fps * 3)):
        prompt_pub.publish(array)
        image_pub.publish(_image(Image, data, time.time_ns()))
        time.sleep(1 / fps)
    time.sleep(1.0)
    with client.lock:
        received.clear()
    drops_before, frames_before = drops[0], frames_in[0]
    cpu0, _ = proc_stats(proc.pid)
    t0 = time.monotonic()
    sent = []
    period = 1.0 / fps
    next_t = time.monotonic()
    next_prompts = t0
    while time.monotonic() - t0 < seconds:
        if time.monotonic() >= next_prompts:  # as a detector does: prompts expire after prompt_timeout
            prompt_pub.publish(array)
            next_prompts += 1.0
        stamp = time.time_ns()
        image_pub.publish(_image(Image, data, stamp))
        sent.append(stamp)
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))
    elapsed = time.monotonic() - t0
    time.sleep(1.5)  # let the last results and a diagnostics message arrive
    cpu1, rss = proc_stats(proc.pid)
    with client.lock:
        latencies = [(received[s] - s) / 1e6 for s in sent if s in received]
    client.node.destroy_subscription(sub)
    client.node.destroy_subscription(diag)
    client.node.destroy_publisher(image_pub)
    return {
        "prompts": prompts,
        "in_fps": len(sent) / elapsed,
        "out_per_in": len(latencies) / max(1, len(sent)),
        "p50": float(np.percentile(latencies, 50)) if latencies else float("nan"),
        "p99": float(np.percentile(latencies, 99)) if latencies else float("nan"),
        "drops": drops[0] - drops_before,
        "node_in": (frames_in[0] - frames_before) / max(1, len(sent)),
        "cpu": 100.0 * (cpu1 - cpu0) / elapsed,
        "rss": rss,
    }


def _image(Image, data: bytes, stamp_ns: int):
    msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = "camera"
    msg.data = data
    return msg


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--prompts", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--model", default="")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--no-fastdds-profile", action="store_true", help="do not use config/fastdds_large_images.xml"
    )
    args = parser.parse_args()
    # This process publishes the frames: its participant needs the profile as much as the node's.
    profile_env = {} if args.no_fastdds_profile else large_images_env()
    os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    os.environ.update(profile_env)

    tmp = Path(tempfile.mkdtemp(prefix="bench_node_"))
    model, model_name = bench_model(args.model, tmp)
    cmd = node_command(
        "picosam3_ros.nodes.sensor_node",
        {
            "model": str(model),
            "camera": "none",
            "backend": "onnx",
            "max_prompts": 16,
            "threads": args.threads,
        },
        REPO / "config" / "sensor.yaml",
    )
    rows = []
    with running(cmd, ros_env(DOMAIN, profile_env), tmp / "node.log") as proc:
        client = RosClient(DOMAIN, "bench_client")
        try:
            for prompts in args.prompts:
                rows.append(run_case(client, proc, prompts, args.seconds, args.fps))
        finally:
            client.close()
    print(
        f"\nmodel: {model_name}; {args.fps:.0f} fps 640x480 rgb8 for {args.seconds:.0f} s per row; "
        f"{os.cpu_count()} CPUs; Fast DDS profile: {'none' if args.no_fastdds_profile else 'large images'}; "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(
        "| prompts | in fps | frames reaching node / sent | masks out / frame in | p50 ms | p99 ms "
        "| drops | node CPU % | node RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['prompts']} | {r['in_fps']:.1f} | {r['node_in']:.3f} | {r['out_per_in']:.3f} "
            f"| {r['p50']:.1f} | {r['p99']:.1f} "
            f"| {r['drops']} | {r['cpu']:.0f} | {r['rss']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
