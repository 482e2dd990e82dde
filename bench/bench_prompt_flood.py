"""One huge RoiPromptArray against the sensor node (CPU backend) at 30 fps (issue 13, item 1).

For each array size: frames (320x240 rgb8, 30 fps) flow with 4 valid prompts, then one
array of N prompts arrives. Printed per N: the time from publishing the array to the
first answer that reflects it, how many entries that answer carries, the worst frame
latency (frame stamp -> segmentations) in the 3 s after the array, and the frames that
got no answer in that window.

    python bench/bench_prompt_flood.py [--sizes 16 1000 10000 50000] [--runtime DIR]

--runtime DIR starts the node from another checkout's ``picosam3_ros`` (e.g. the code
before a change) with this script unchanged.
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

from node_helpers import RosClient, node_command, ros_env  # noqa: E402

from picosam3_ros.core.process_group import start_group, stop_group  # noqa: E402

DOMAIN = 88
FPS = 30.0
WINDOW_S = 3.0


def prompt_array(count: int, width: int):
    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray

    array = RoiPromptArray()
    for i in range(count):
        prompt = RoiPrompt(id=i)
        prompt.roi.x_offset, prompt.roi.y_offset = (i * 37) % (width - 40), 20
        prompt.roi.width, prompt.roi.height = 40, 60
        array.prompts.append(prompt)
    return array


def run_size(client: RosClient, size: int, answers: dict, image_pub, prompt_pub, data: bytes) -> dict:
    from sensor_msgs.msg import Image

    def frame(stamp_ns: int):
        msg = Image(height=240, width=320, encoding="rgb8", step=960)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        msg.data = data
        return msg

    small, flood = prompt_array(4, 320), prompt_array(size, 320)
    for _ in range(int(FPS * 2)):  # steady state with 4 prompts
        prompt_pub.publish(small)
        image_pub.publish(frame(time.time_ns()))
        time.sleep(1 / FPS)
    time.sleep(0.5)
    t_flood = time.time_ns()
    prompt_pub.publish(flood)
    sent = []
    end = time.monotonic() + WINDOW_S
    while time.monotonic() < end:
        stamp = time.time_ns()
        image_pub.publish(frame(stamp))
        sent.append(stamp)
        time.sleep(1 / FPS)
    time.sleep(2.0)
    with client.lock:
        got = {s: answers[s] for s in sent if s in answers}
    reflecting = sorted((recv, n) for recv, n in got.values() if n != 4)
    latencies = [(recv - s) / 1e6 for s, (recv, _) in got.items()]
    return {
        "size": size,
        "to_first_ms": (reflecting[0][0] - t_flood) / 1e6 if reflecting else float("nan"),
        "entries": reflecting[0][1] if reflecting else 4,
        "worst_ms": max(latencies) if latencies else float("nan"),
        "unanswered": len(sent) - len(got),
        "sent": len(sent),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 1000, 10000, 50000])
    parser.add_argument("--runtime", type=Path, default=REPO, help="checkout whose node code runs")
    parser.add_argument("--model", default=str(REPO / "picosam3_ros" / "models"))
    args = parser.parse_args()
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPromptArray, SegmentationArray

    tmp = Path(tempfile.mkdtemp(prefix="bench_flood_"))
    params = {"model": args.model, "camera": "none", "backend": "onnx", "max_prompts": 16,
              "prompt_timeout": 0.0}
    cmd = node_command("picosam3_ros.nodes.sensor_node", params)
    proc = start_group(cmd, ros_env(DOMAIN), tmp / "node.log", cwd=args.runtime.resolve())
    rows = []
    client = RosClient(DOMAIN, "bench_flood_client")
    try:
        answers: dict[int, tuple[int, int]] = {}  # stamp -> (receive ns, entries)

        def on_segmentations(msg) -> None:
            with client.lock:
                answers[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = (
                    time.time_ns(), len(msg.segmentations))

        client.node.create_subscription(SegmentationArray, "segmentations", on_segmentations, 100)
        image_pub = client.node.create_publisher(Image, "image", 10)
        prompt_pub = client.node.create_publisher(RoiPromptArray, "prompts", 10)
        data = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8).tobytes()
        for size in args.sizes:
            rows.append(run_size(client, size, answers, image_pub, prompt_pub, data))
    finally:
        client.close()
        stop_group(proc)
    print(f"\nnode code: {args.runtime.resolve()}; {FPS:g} fps 320x240, max_prompts 16; "
          f"{os.cpu_count()} CPUs; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("| prompts in the array | array -> first answer reflecting it (ms) | entries in that answer "
          f"| worst frame latency in {WINDOW_S:g} s (ms) | frames unanswered |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['to_first_ms']:.0f} | {r['entries']} | {r['worst_ms']:.0f} "
              f"| {r['unanswered']}/{r['sent']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
