"""Soak the sensor node (CPU backend): N minutes of 640x480 frames at 30 fps with 4 prompts.

The node runs in its own process, as on a robot; this script is the camera and the
detector (it repeats the 4-prompt set every second, as a detector would, so the default
prompt_timeout of 2 s never expires them). It prints, per minute: frames sent, the
fraction answered (a SegmentationArray for the frame) and answered with all 4 prompts OK,
latency (frame stamp -> segmentations received) p50/p99/max, node drops, node CPU, and
the node's RSS sampled every 10 s (min/max in the minute), the lowest delivered fraction
the node reported on /diagnostics and its input WARNs in the minute, then the RSS series
and the node's "frames lost" log lines.

    python bench/bench_soak.py [--minutes 2] [--fps 30] [--prompts 4] [--model DIR] [--json out.json]
        [--stamp-jitter-ms 8] [--runtime DIR] [--follow true|false]

--stamp-jitter-ms J moves each frame's header stamp by a uniform +-J ms (what a driver's
timestamps do; the frames themselves keep their pace); latency is measured from the send
time. --runtime DIR runs another checkout's node code (e.g. before a change).
--follow (default true, the node's default): the node follows the prompts (core/follow.py: the
optical flow and the mask's correction per prompt per frame); the set repeated every second is a
keep-alive. The issue-17 load check is this at 30 fps x 4 prompts: >= 98% of frames answered, p50
under one frame time (33 ms).

Model: as bench/bench_node.py (--model, else the packaged model, else a random-init
PicoSAM3 of the same cost). Both processes use config/fastdds_large_images.xml.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))

from bench_node import bench_model, proc_stats  # noqa: E402
from node_helpers import RosClient, large_images_env, node_command, ros_env  # noqa: E402

from picosam3_ros.core.process_group import start_group, stop_group  # noqa: E402

DOMAIN = 87
RSS_PERIOD_S = 10.0
WARM_UP_S = 5.0


def prompt_array(count: int):
    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray

    array = RoiPromptArray()
    array.header.frame_id = "camera"
    for i in range(count):
        prompt = RoiPrompt(id=i + 1)
        prompt.roi.x_offset, prompt.roi.y_offset = 40 + 140 * (i % 4), 60 + 180 * (i // 4)
        prompt.roi.width, prompt.roi.height = 120, 160
        array.prompts.append(prompt)
    return array


def frame_message(data: bytes, stamp_ns: int):
    from sensor_msgs.msg import Image

    msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = "camera"
    msg.data = data
    return msg


def soak(client: RosClient, pid: int, minutes: float, fps: float, prompts: int,
         jitter_ms: float = 0.0) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPromptArray, SegmentationArray

    image_pub = client.node.create_publisher(Image, "image", 10)
    prompt_pub = client.node.create_publisher(RoiPromptArray, "prompts", 10)
    answers: dict[int, tuple[int, bool]] = {}  # stamp ns -> (receive time ns, all prompts OK)
    drops = [0]
    health: list[tuple[float, float, bool]] = []  # (monotonic, delivered fraction, input WARN)

    def on_segmentations(msg) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        ok = len(msg.segmentations) == prompts and all(s.status == 0 for s in msg.segmentations)
        with client.lock:
            answers[stamp] = (time.time_ns(), ok)

    def on_diagnostics(msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "drops" in values:
                drops[0] = int(values["drops"])
            if "input_delivered_fraction" in values:
                level = status.level[0] if isinstance(status.level, bytes) else status.level
                lost = level == 1 and "frames published on" in status.message
                with client.lock:
                    health.append((time.monotonic(), float(values["input_delivered_fraction"]), lost))

    client.node.create_subscription(SegmentationArray, "segmentations", on_segmentations, 100)
    client.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    array = prompt_array(prompts)
    data = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8).tobytes()
    jitter = np.random.default_rng(8)
    sent_at: dict[int, int] = {}  # stamp ns -> send time ns (the stamp may be jittered)

    period = 1.0 / fps
    start = time.monotonic()
    warm_end = start + WARM_UP_S
    end = warm_end + 60.0 * minutes
    sent: list[tuple[int, float]] = []  # (stamp ns, seconds since the end of warm-up)
    rss: list[tuple[float, float]] = []  # (s since start, MiB), every RSS_PERIOD_S
    minute_marks: list[tuple[float, int, float]] = []  # (cpu s, drops, monotonic) at each minute start
    next_frame = next_prompts = next_rss = start
    next_minute = warm_end
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_prompts:
            prompt_pub.publish(array)
            next_prompts += 1.0
        if now >= next_rss:
            rss.append((now - start, proc_stats(pid)[1]))
            next_rss += RSS_PERIOD_S
        if now >= next_minute:
            minute_marks.append((proc_stats(pid)[0], drops[0], now))
            next_minute += 60.0
        sent_ns = time.time_ns()
        stamp = sent_ns + int(jitter.uniform(-jitter_ms, jitter_ms) * 1e6) if jitter_ms else sent_ns
        sent_at[stamp] = sent_ns
        image_pub.publish(frame_message(data, stamp))
        if now >= warm_end:
            sent.append((stamp, now - warm_end))
        next_frame += period
        time.sleep(max(0.0, next_frame - time.monotonic()))
    time.sleep(2.0)  # the last answers and a diagnostics message
    minute_marks.append((proc_stats(pid)[0], drops[0], time.monotonic()))
    rss.append((time.monotonic() - start, proc_stats(pid)[1]))

    rows = []
    with client.lock:
        results = dict(answers)
    for index in range(len(minute_marks) - 1):
        in_minute = [stamp for stamp, t in sent if index * 60.0 <= t < (index + 1) * 60.0]
        latencies = [(results[s][0] - sent_at[s]) / 1e6 for s in in_minute if s in results]
        (cpu0, drops0, t0), (cpu1, drops1, t1) = minute_marks[index], minute_marks[index + 1]
        with client.lock:
            reported = [(f, warned) for t, f, warned in health if t0 <= t < t1]
        lo, hi = t0 - start, t1 - start
        rss_in = [mb for t, mb in rss if lo <= t <= hi] or [rss[-1][1]]
        rows.append(
            {
                "minute": index + 1,
                "sent": len(in_minute),
                "answered": len(latencies) / max(1, len(in_minute)),
                "all_ok": sum(results[s][1] for s in in_minute if s in results) / max(1, len(in_minute)),
                "p50_ms": float(np.percentile(latencies, 50)) if latencies else float("nan"),
                "p99_ms": float(np.percentile(latencies, 99)) if latencies else float("nan"),
                "max_ms": max(latencies) if latencies else float("nan"),
                "drops": drops1 - drops0,
                "cpu_pct": 100.0 * (cpu1 - cpu0) / max(1e-6, t1 - t0),
                "rss_min_mb": min(rss_in),
                "rss_max_mb": max(rss_in),
                "delivered_min": min((f for f, _ in reported), default=float("nan")),
                "input_warns": sum(warned for _, warned in reported),
            }
        )
    return {"rows": rows, "rss": rss}


def print_table(result: dict, header: str) -> None:
    print(f"\n{header}")
    print("| minute | frames sent | answered | all 4 OK | p50 ms | p99 ms | max ms | node drops | node CPU % "
          "| RSS MiB (min-max) | delivered (lowest reported) | input WARNs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['minute']} | {r['sent']} | {100 * r['answered']:.1f}% | {100 * r['all_ok']:.1f}% "
              f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['drops']} "
              f"| {r['cpu_pct']:.0f} | {r['rss_min_mb']:.1f}-{r['rss_max_mb']:.1f} "
              f"| {r['delivered_min']:.2f} | {r['input_warns']} |")
    series = result["rss"]
    print(f"\nnode RSS every {RSS_PERIOD_S:.0f} s (MiB): " + " ".join(f"{mb:.1f}" for _, mb in series))
    after_warm = next((mb for t, mb in series if t >= WARM_UP_S), series[0][1])
    print(f"RSS: start {series[0][1]:.1f}, after warm-up {after_warm:.1f}, end {series[-1][1]:.1f} MiB "
          f"({series[-1][1] - after_warm:+.1f} MiB after warm-up)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--model", default="")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--follow", choices=("true", "false"), default="true", help="the node's `follow`")
    parser.add_argument("--json", type=Path, help="also write the rows and the RSS series here")
    parser.add_argument("--stamp-jitter-ms", type=float, default=0.0, help="header stamps moved by +-J ms")
    parser.add_argument("--runtime", type=Path, default=REPO, help="checkout whose node code runs")
    args = parser.parse_args()
    profile_env = large_images_env()  # 0.9 MB frames: both ends need the profile (README)
    os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    os.environ.update(profile_env)
    tmp = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    model, model_name = bench_model(args.model, tmp)
    params = {"model": str(model), "camera": "none", "backend": "onnx", "threads": args.threads,
              "follow": args.follow == "true"}
    cmd = node_command("picosam3_ros.nodes.sensor_node", params, REPO / "config" / "sensor.yaml")
    proc = start_group(cmd, ros_env(DOMAIN, profile_env), tmp / "node.log", cwd=args.runtime.resolve())
    try:
        client = RosClient(DOMAIN, "bench_soak_client")
        try:
            result = soak(client, proc.pid, args.minutes, args.fps, args.prompts, args.stamp_jitter_ms)
        finally:
            client.close()
        if proc.poll() is not None:
            print(f"the node exited with code {proc.returncode}; log: {tmp / 'node.log'}")
            return 1
    finally:
        stop_group(proc)
    lost_lines = [line for line in (tmp / "node.log").read_text(errors="replace").splitlines()
                  if "of the frames published on" in line]
    print_table(
        result,
        f"soak: model {model_name}; {args.minutes:g} min after {WARM_UP_S:.0f} s warm-up; {args.fps:g} fps "
        f"640x480 rgb8, {args.prompts} prompts repeated every second, follow {args.follow}, "
        f"stamps +-{args.stamp_jitter_ms:g} ms; node code {args.runtime.resolve()}; {os.cpu_count()} CPUs; "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; node log {tmp / 'node.log'}",
    )
    print(f"node log lines saying frames are lost: {len(lost_lines)}"
          + (f" (first: {lost_lines[0].split(': ', 1)[-1][:120]})" if lost_lines else ""))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
