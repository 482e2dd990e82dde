"""Benchmark the teleop page's video: frames per second served to a viewer, and the node's cost.

A stand-in sensor (test/teleop_standin.py) publishes rgb8 frames at --rate with a mask and
segmentations for each frame; the teleop_ui node serves them as MJPEG; a viewer in this
process reads /stream.mjpg for --seconds and counts the JPEGs it receives. One row per
(max_fps, prompts) setting: frames served per second, mean JPEG size, teleop_ui CPU % (of
one core) and RSS. The last row is the node with no viewer at all (it should encode nothing).

    python bench/bench_teleop.py [--size 640x480] [--rate 30] [--seconds 10]
        [--max-fps 15 30] [--prompts 0 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))

from node_helpers import large_images_env, ros_env, running  # noqa: E402

DOMAIN = 79
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def wait_for_url(log: Path, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"http://127\.0\.0\.1:\d+/", log.read_text(errors="replace"))
        if match:
            return match.group(0)
        time.sleep(0.2)
    raise RuntimeError(f"teleop_ui did not start:\n{log.read_text(errors='replace')[-2000:]}")


def wait_for_frames(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/state")
        state = json.loads(conn.getresponse().read())
        conn.close()
        if state["stream"]["frames_received"] > 0:
            return
        time.sleep(0.2)
    raise RuntimeError("no frames reached teleop_ui")


def add_prompts(port: int, count: int, width: int, height: int) -> None:
    for i in range(count):
        x0 = (i + 1) * width // (count + 2)
        body = {"action": "add", "x0": x0, "y0": height // 4, "x1": x0 + width // 5, "y1": height // 2,
                "display_width": width, "display_height": height}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/api/prompts", json.dumps(body), {"Content-Type": "application/json"})
        reply = conn.getresponse()
        reply.read()
        if reply.status != 200:
            raise RuntimeError(f"adding a prompt failed: HTTP {reply.status}")
        conn.close()


def view(port: int, seconds: float, warmup: float = 3.0) -> tuple[int, float, float]:
    """Read the MJPEG stream; return (JPEGs counted after warm-up, seconds counted, mean bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/stream.mjpg")
    resp = conn.getresponse()
    buf, count, total, start = b"", 0, 0, None
    t0 = time.monotonic()
    while True:
        buf += resp.read1(1 << 16)
        while True:
            head = buf.find(b"Content-Length: ")
            if head < 0:
                break
            end = buf.find(b"\r\n\r\n", head)
            if end < 0:
                break
            length = int(buf[head + 16: end])
            if len(buf) < end + 4 + length:
                break
            buf = buf[end + 4 + length:]
            now = time.monotonic()
            if now - t0 >= warmup:
                if start is None:
                    start = now
                else:
                    count += 1
                    total += length
        if start is not None and time.monotonic() - start >= seconds:
            break
    conn.close()
    return count, time.monotonic() - start, total / max(count, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-fps", type=float, nargs="+", default=[15.0, 30.0])
    parser.add_argument("--prompts", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    env = ros_env(DOMAIN, large_images_env())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        standin = [sys.executable, str(REPO / "test/teleop_standin.py"), f"bench-{uuid.uuid4().hex[:6]}",
                   "--width", str(width), "--height", str(height), "--rate", str(args.rate), "--textured"]
        with running(standin, env, Path(tmp) / "standin.log"):
            for max_fps in args.max_fps:
                for prompts in args.prompts:
                    log = Path(tmp) / f"ui_{max_fps}_{prompts}.log"
                    ui = [sys.executable, "-m", "picosam3_ros.nodes.teleop_ui_node", "--ros-args",
                          "-p", "port:=0", "-p", "image_topic:=image", "-p", f"max_fps:={max_fps}"]
                    with running(ui, env, log) as proc:
                        port = int(wait_for_url(log).rsplit(":", 1)[1].strip("/"))
                        wait_for_frames(port)
                        add_prompts(port, prompts, width, height)
                        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                        count, span, size = view(port, args.seconds)
                        cpu = 100 * (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
                        rows.append((max_fps, prompts, count / span, size / 1024, cpu, rss_mib(proc.pid)))
            log = Path(tmp) / "ui_idle.log"
            ui = [sys.executable, "-m", "picosam3_ros.nodes.teleop_ui_node", "--ros-args", "-p", "port:=0",
                  "-p", "image_topic:=image"]
            with running(ui, env, log) as proc:
                port = int(wait_for_url(log).rsplit(":", 1)[1].strip("/"))
                wait_for_frames(port)
                time.sleep(3.0)  # the state request above keeps nothing on; let start-up settle
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                time.sleep(args.seconds)
                cpu = 100 * (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
                rows.append(("-", 0, 0.0, 0.0, cpu, rss_mib(proc.pid)))
    print(f"\nteleop_ui MJPEG, {width}x{height} rgb8 in at {args.rate:g} fps, {args.seconds:g} s per row, "
          f"{os.cpu_count()} CPUs")
    print(f"{'max_fps':>8} {'prompts':>8} {'served fps':>11} {'JPEG KiB':>9} {'CPU %':>6} {'RSS MiB':>8}")
    for max_fps, prompts, fps, kib, cpu, rss in rows:
        label = "no viewer" if max_fps == "-" else f"{max_fps:.0f}"
        print(f"{label:>8} {prompts:8d} {fps:11.1f} {kib:9.1f} {cpu:6.0f} {rss:8.0f}")


if __name__ == "__main__":
    main()
