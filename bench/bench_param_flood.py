"""A flood of set_parameters calls against the sensor node while frames flow (issue 21, item 10).

320x240 rgb8 frames at 30 fps with 4 prompts (packaged model, CPU backend): 8 s as they are,
then 8 s during which ``--changes`` parameter changes arrive (threshold and max_prompts,
spread evenly, answers not awaited). Printed for both phases: frame latency (stamp ->
segmentations received) p50/p90, frames answered, and the node's INFO lines about parameters.

    python bench/bench_param_flood.py [--changes 1000] [--runtime DIR]

--runtime DIR starts the node from another checkout's ``picosam3_ros`` (e.g. before a change).
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

from bench_prompt_flood import prompt_array  # noqa: E402
from node_helpers import RosClient, node_command, ros_env  # noqa: E402

from picosam3_ros.core.process_group import start_group, stop_group  # noqa: E402

DOMAIN = 77
FPS = 30.0
PHASE_S = 8.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--runtime", type=Path, default=REPO, help="checkout whose node code runs")
    parser.add_argument("--model", default=str(REPO / "picosam3_ros" / "models"))
    args = parser.parse_args()
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPromptArray, SegmentationArray

    tmp = Path(tempfile.mkdtemp(prefix="bench_param_flood_"))
    params = {"model": args.model, "camera": "none", "backend": "onnx", "prompt_timeout": 0.0}
    log_path = tmp / "node.log"
    proc = start_group(node_command("picosam3_ros.nodes.sensor_node", params), ros_env(DOMAIN), log_path,
                       cwd=args.runtime.resolve())
    client = RosClient(DOMAIN, "bench_param_flood_client")
    answers: dict[int, int] = {}
    try:
        def on_segmentations(msg) -> None:
            answers[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = time.time_ns()

        client.node.create_subscription(SegmentationArray, "segmentations", on_segmentations, 100)
        image_pub = client.node.create_publisher(Image, "image", 10)
        prompt_pub = client.node.create_publisher(RoiPromptArray, "prompts", 10)
        setter = client.node.create_client(SetParameters, "/picosam3_sensor/set_parameters")
        if not setter.wait_for_service(timeout_sec=60):
            raise RuntimeError(f"no set_parameters service; log {log_path}")
        data = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8).tobytes()
        prompts = prompt_array(4, 320)

        def change(i: int):
            threshold = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=0.5 + (i % 40) / 100)
            count = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=4 + i % 8)
            return SetParameters.Request(parameters=[Parameter(name="threshold", value=threshold),
                                                     Parameter(name="max_prompts", value=count)])

        def phase(changes: int) -> dict:
            lines_before = log_path.read_text(errors="replace").count("parameters changed")
            sent, futures = [], []
            start = time.monotonic()
            frame = change_index = 0
            while time.monotonic() - start < PHASE_S:
                t = time.monotonic() - start
                while change_index < changes and change_index < t / PHASE_S * changes:
                    futures.append(setter.call_async(change(change_index)))
                    change_index += 1
                if time.monotonic() >= start + frame / FPS:
                    if frame % int(FPS) == 0:
                        prompt_pub.publish(prompts)
                    stamp = time.time_ns()
                    msg = Image(height=240, width=320, encoding="rgb8", step=960, data=data)
                    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
                    image_pub.publish(msg)
                    sent.append(stamp)
                    frame += 1
                time.sleep(0.002)
            client.wait_for(lambda: all(f.done() for f in futures), 60.0)
            time.sleep(3.0)  # the answers in flight, and a batched log line
            with client.lock:
                latencies = [(answers[s] - s) / 1e6 for s in sent if s in answers]
            return {"changes": changes, "answered": f"{len(latencies)}/{len(sent)}",
                    "p50": np.percentile(latencies, 50) if latencies else float("nan"),
                    "p90": np.percentile(latencies, 90) if latencies else float("nan"),
                    "lines": log_path.read_text(errors="replace").count("parameters changed") - lines_before,
                    "done": sum(f.done() for f in futures)}

        phase(0)  # warm-up
        rows = [phase(0), phase(args.changes)]
    finally:
        client.close()
        stop_group(proc)
    print(f"\nnode code: {args.runtime.resolve()}; 320x240 rgb8 at {FPS:g} fps, 4 prompts, packaged model, "
          f"CPU backend; {os.cpu_count()} CPUs; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"| parameter changes in {PHASE_S:g} s | frames answered | latency p50 / p90 (ms) "
          "| 'parameters changed' log lines |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['changes']} ({r['done']} answered) | {r['answered']} | {r['p50']:.0f} / {r['p90']:.0f} "
              f"| {r['lines']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
