"""Benchmark large best-effort images between two processes under several Fast DDS settings.

A publisher process sends 640x480 rgb8 frames (~0.9 MB) at 30 Hz, best-effort,
depth 1; a subscriber process (best-effort, depth 1) counts the distinct frames
that arrive. Each row is one transport setting, applied to both processes
through the environment. It prints the delivery ratio and the subscriber's
callback cost, and rclpy's (de)serialisation time for one such Image.

    python bench/bench_transport.py [--frames 300] [--rate 30] [--size 640x480] [--repeat 1]
        [--options default profile ...]

Options: see OPTIONS below (`default` is Fast DDS's built-in SHM + UDPv4 transports).

    python bench/bench_transport.py --matrix [--frames 150] [--sizes 640x480 1280x720]

The matrix is what a camera driver next to the sensor node sees (issue 12): publisher QoS
(reliable = SystemDefaultsQoS depth 10, best_effort = SensorDataQoS) x subscriber QoS (the
node's ``image_qos``: sensor_data or reliable) x the large-images profile (none, or in both
processes) x frame size, plus ``sensor_msgs/CompressedImage`` (JPEG of a real photo) without
the profile. "lost events" counts the DDS sample-lost events the subscriber saw (what the node's
input monitor uses).

    python bench/bench_transport.py --matrix --node [--frames 150]

The same drivers into the real sensor node with its default parameters (image_qos auto): the
frames that reached it (its /diagnostics frames_in), the input QoS it chose, and whether it
logged the WARN with the fix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))

from node_helpers import LARGE_IMAGES_PROFILE, ros_env, running  # noqa: E402

DOMAIN = 39

# name -> environment for both processes (an empty value removes the variable).
OPTIONS: dict[str, dict[str, str]] = {
    "default": {},
    "profile": {"FASTDDS_DEFAULT_PROFILES_FILE": str(LARGE_IMAGES_PROFILE)},
    "large_data": {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
    "large_data_2mb": {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA?max_msg_size=2MB&sockets_size=4MB"},
    "udp_only": {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"},
    "shm_only": {"FASTDDS_BUILTIN_TRANSPORTS": "SHM"},
    "subnet": {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"},
    "profile_subnet": {
        "FASTDDS_DEFAULT_PROFILES_FILE": str(LARGE_IMAGES_PROFILE),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
    },
    # The shipped profile on one side only: which side's segment matters?
    "profile_pub_only": {"FASTDDS_DEFAULT_PROFILES_FILE": str(LARGE_IMAGES_PROFILE)},
    "profile_sub_only": {"FASTDDS_DEFAULT_PROFILES_FILE": str(LARGE_IMAGES_PROFILE)},
    "profile_big_udp_request": {},
    # Ablations of the shipped profile (written to a temporary folder by variant_profiles()).
    "profile_shm_segment_only": {},
    "profile_udp_buffers_only": {},
}
ABLATIONS = {
    # keep the 16 MiB segment, default UDP socket buffers
    "profile_shm_segment_only": [
        ("<sendBufferSize>4194304</sendBufferSize>", ""),
        ("<receiveBufferSize>4194304</receiveBufferSize>", ""),
    ],
    # default 512 KiB segment and port queue, larger UDP buffers
    "profile_udp_buffers_only": [
        ("<segment_size>16777216</segment_size>", ""),
        ("<port_queue_capacity>1024</port_queue_capacity>", ""),
    ],
    # UDP buffers far above net.core.rmem_max: does the transport still start?
    "profile_big_udp_request": [
        ("<sendBufferSize>4194304</sendBufferSize>", "<sendBufferSize>67108864</sendBufferSize>"),
        ("<receiveBufferSize>4194304</receiveBufferSize>", "<receiveBufferSize>67108864</receiveBufferSize>"),
    ],
}
ONE_SIDE = {"profile_pub_only": "pub", "profile_sub_only": "sub"}
CLEARED = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")


def variant_profiles(tmp: Path) -> None:
    """Write the ablation profiles and point their OPTIONS at them."""
    text = LARGE_IMAGES_PROFILE.read_text()
    for name, edits in ABLATIONS.items():
        variant = text
        for old, new in edits:
            assert old in variant, old
            variant = variant.replace(old, new)
        path = tmp / f"{name}.xml"
        path.write_text(variant)
        OPTIONS[name] = {"FASTDDS_DEFAULT_PROFILES_FILE": str(path)}


def _qos(kind: str = "best_effort_1"):
    """best_effort_1: the original bench's; reliable: SystemDefaults-like depth 10 (a driver's
    `qos 10`); best_effort: SensorDataQoS; sensor_data / reliable as subscriber: the node's image_qos."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if kind == "best_effort_1":
        return QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
    if kind in ("best_effort", "sensor_data"):
        return qos_profile_sensor_data
    if kind == "reliable":
        return QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
    raise ValueError(kind)


def subscriber(result_path: Path, raw: bool, qos: str = "best_effort_1", compressed: bool = False) -> int:
    """Count distinct frames (index in frame_id) until SIGINT; write JSON to ``result_path``."""
    import rclpy
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import CompressedImage, Image

    rclpy.init()
    node = rclpy.create_node("transport_sub")
    seen: set[bytes | str] = set()
    busy = [0.0]
    lost = [0]

    def image_callback(msg) -> None:
        t0 = time.perf_counter()
        seen.add(msg if raw else msg.header.frame_id)
        busy[0] += time.perf_counter() - t0

    def lost_callback(info) -> None:
        lost[0] += info.total_count_change

    msg_type = CompressedImage if compressed else Image
    topic = "image/compressed" if compressed else "image"
    node.create_subscription(
        msg_type, topic, image_callback, _qos(qos), raw=raw,
        event_callbacks=SubscriptionEventCallbacks(message_lost=lost_callback),
    )
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    result_path.write_text(json.dumps({"received": len(seen), "callback_s": busy[0], "lost": lost[0]}))
    node.destroy_node()
    if rclpy.ok():
        rclpy.shutdown()
    return 0


def publisher(
    frames: int, rate: float, width: int, height: int, qos: str = "best_effort_1", compressed: bool = False,
    settle: float = 1.0,
) -> int:
    """Wait for the subscriber, then publish ``frames`` frames at ``rate`` Hz."""
    import cv2
    import numpy as np
    import rclpy
    from sensor_msgs.msg import CompressedImage, Image

    rclpy.init()
    node = rclpy.create_node("transport_pub")
    msg_type = CompressedImage if compressed else Image
    pub = node.create_publisher(msg_type, "image/compressed" if compressed else "image", _qos(qos))
    deadline = time.monotonic() + 30.0
    while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(settle)  # let the match settle on both sides
    if compressed:  # a real photo: noise would not compress like a camera frame does
        photo = cv2.imread(str(next(sorted((REPO / "picosam3_ros/demo/demo_clip").glob("*.jpg")).__iter__())))
        ok, jpeg = cv2.imencode(".jpg", cv2.resize(photo, (width, height)), [cv2.IMWRITE_JPEG_QUALITY, 90])
        data = jpeg.tobytes()
    else:
        data = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8).tobytes()
    period, next_t = 1.0 / rate, time.monotonic()
    for i in range(frames):
        if compressed:
            msg = CompressedImage(format="jpeg", data=data)
        else:
            msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=data)
        msg.header.frame_id = str(i)
        pub.publish(msg)
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))
    time.sleep(1.0)  # the last frames in flight
    node.destroy_node()
    rclpy.shutdown()
    return 0


def serialisation_ms(width: int, height: int, repeats: int = 30) -> tuple[float, float]:
    """Median ms to serialise and to deserialise one Image with rclpy."""
    import numpy as np
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    data = np.zeros((height, width, 3), np.uint8).tobytes()
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=data)
    ser, de = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        raw = serialize_message(msg)
        t1 = time.perf_counter()
        deserialize_message(raw, Image)
        ser.append(t1 - t0)
        de.append(time.perf_counter() - t1)
    return 1e3 * float(np.median(ser)), 1e3 * float(np.median(de))


def measure(name: str, sub_args: list[str], pub_args: list[str], sub_env: dict, pub_env: dict, args,
            tmp: Path) -> dict:
    """Run a subscriber process, then a publisher of ``args.frames`` frames; the subscriber's counts."""
    result = tmp / f"{name}.json"
    result.unlink(missing_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    sub_cmd = me + ["--role", "sub", "--result", str(result)] + sub_args
    pub_cmd = me + ["--role", "pub", "--frames", str(args.frames), "--rate", str(args.rate)] + pub_args
    with running(sub_cmd, sub_env, tmp / f"{name}_sub.log") as sub:
        time.sleep(1.0)
        with running(pub_cmd, pub_env, tmp / f"{name}_pub.log") as pub:
            pub.wait(timeout=args.frames / args.rate + 60)
        if sub.poll() is not None:
            raise RuntimeError(f"subscriber exited early: {(tmp / f'{name}_sub.log').read_text()[-2000:]}")
    for _ in range(50):
        if result.exists():
            break
        time.sleep(0.1)
    missing = {"received": -1, "lost": -1, "callback_s": 0.0}
    return json.loads(result.read_text()) if result.exists() else missing


def clean_env() -> dict:
    env = ros_env(DOMAIN)
    for key in CLEARED:
        env.pop(key, None)
    return env


def run_option(name: str, args, tmp: Path, raw: bool) -> dict:
    base_env = clean_env()
    env = {**base_env, **OPTIONS[name]}
    pub_env = base_env if ONE_SIDE.get(name) == "sub" else env
    sub_env = base_env if ONE_SIDE.get(name) == "pub" else env
    size = f"{args.width}x{args.height}"
    data = measure(name, ["--raw"] if raw else [], ["--size", size], sub_env, pub_env, args, tmp)
    return {
        "option": name + (" (raw sub)" if raw else ""),
        "env": (" ".join(f"{k}={v}" for k, v in OPTIONS[name].items()) or "-")
        + (f" ({ONE_SIDE[name]} only)" if name in ONE_SIDE else ""),
        "received": data["received"],
        "callback_ms": 1e3 * data.get("callback_s", 0.0) / max(1, data["received"]),
        "load": os.getloadavg()[0],
    }


def run_case(pub_qos: str, sub_qos: str, profile: bool, size: str, compressed: bool, args, tmp: Path) -> dict:
    """One matrix row: a driver-like publisher and a node-like subscriber in two processes."""
    env = clean_env()
    if profile:
        env.update(OPTIONS["profile"])
    name = f"{pub_qos}_{sub_qos}_{int(profile)}_{size}_{int(compressed)}"
    extra = ["--compressed"] if compressed else []
    data = measure(name, ["--sub-qos", sub_qos] + extra, ["--size", size, "--pub-qos", pub_qos] + extra,
                   env, env, args, tmp)
    return {"pub": pub_qos, "sub": sub_qos, "profile": "both" if profile else "none",
            "input": f"{size} {'jpeg' if compressed else 'rgb8'}", "received": data["received"],
            "lost": data.get("lost", -1), "load": os.getloadavg()[0]}


def matrix(args) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench_transport_matrix_"))
    cases = [
        (pub, sub, profile, size, False)
        for size in args.sizes
        for profile in (False, True)
        for pub in ("reliable", "best_effort")
        for sub in ("sensor_data", "reliable")
        if not (pub == "best_effort" and sub == "reliable")  # incompatible QoS: nothing is delivered
    ]
    cases += [(pub, "sensor_data", False, size, True)
              for size in args.sizes for pub in ("reliable", "best_effort")]
    rows = []
    for case in cases:
        rows.append(run_case(*case, args, tmp))
        r = rows[-1]
        print(f"{r['pub']} -> {r['sub']} profile={r['profile']} {r['input']}: {r['received']}/{args.frames} "
              f"(lost events {r['lost']}, load {r['load']:.1f})", flush=True)
    print(f"\n{args.frames} frames at {args.rate:.0f} Hz per row, two processes, {os.cpu_count()} CPUs")
    print("| publisher QoS | subscriber (image_qos) | profile | input | delivered | lost events | load |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['pub']} | {r['sub']} | {r['profile']} | {r['input']} | {r['received']}/{args.frames} "
              f"({100 * r['received'] / args.frames:.0f}%) | {r['lost']} | {r['load']:.1f} |")
    return 0


def run_node_case(pub_qos: str, profile: bool, size: str, compressed: bool, args, tmp: Path) -> dict:
    """A driver-like publisher and the real sensor node (default parameters: image_qos auto);
    the node's own count of arrived frames (/diagnostics frames_in) and what it reported."""
    from diagnostic_msgs.msg import DiagnosticArray
    from node_helpers import RosClient, node_command

    env = ros_env(DOMAIN)
    for key in CLEARED:
        env.pop(key, None)
    if profile:
        env.update(OPTIONS["profile"])
    name = f"node_{pub_qos}_{int(profile)}_{size}_{int(compressed)}"
    params = {"camera": "none", "image_transport": "compressed" if compressed else "raw"}
    node_cmd = node_command("picosam3_ros.nodes.sensor_node", params, REPO / "config" / "sensor.yaml")
    pub_cmd = [sys.executable, str(Path(__file__).resolve()), "--role", "pub", "--frames", str(args.frames),
               "--rate", str(args.rate), "--size", size, "--pub-qos", pub_qos, "--settle", "3"]
    pub_cmd += ["--compressed"] if compressed else []
    with running(node_cmd, env, tmp / f"{name}_node.log") as node:
        client = RosClient(DOMAIN, "bench_transport_client")
        try:
            diags = client.collect(DiagnosticArray, "/diagnostics")
            with running(pub_cmd, env, tmp / f"{name}_pub.log") as pub:
                pub.wait(timeout=args.frames / args.rate + 90)
            time.sleep(2.5)  # two diagnostics periods after the last frame
            with client.lock:
                status = diags[-1].status[0] if diags else None
        finally:
            client.close()
        if node.poll() is not None:
            raise RuntimeError(f"node exited: {(tmp / f'{name}_node.log').read_text()[-2000:]}")
    values = {kv.key: kv.value for kv in status.values} if status else {}
    log = (tmp / f"{name}_node.log").read_text()
    return {"pub": pub_qos, "profile": "both" if profile else "none",
            "input": f"{size} {'jpeg' if compressed else 'rgb8'}",
            "received": int(values.get("frames_in", -1)), "qos": values.get("input_qos", "?"),
            "warned": "yes" if "Fix: export FASTDDS_DEFAULT_PROFILES_FILE" in log else "no",
            "load": os.getloadavg()[0]}


def node_matrix(args) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench_transport_node_"))
    cases = [(pub, profile, size, False) for size in args.sizes for profile in (False, True)
             for pub in ("reliable", "best_effort")]
    cases += [(pub, False, size, True) for size in args.sizes for pub in ("reliable", "best_effort")]
    rows = []
    for case in cases:
        rows.append(run_node_case(*case, args, tmp))
        r = rows[-1]
        print(f"node <- {r['pub']} profile={r['profile']} {r['input']}: {r['received']}/{args.frames} "
              f"(input qos {r['qos']}, warned {r['warned']}, load {r['load']:.1f})", flush=True)
    print(f"\n{args.frames} frames at {args.rate:.0f} Hz per row into the sensor node (image_qos auto), "
          f"{os.cpu_count()} CPUs")
    print("| driver QoS | profile | input | arrived at the node | node's input QoS | WARN + fix logged "
          "| load |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['pub']} | {r['profile']} | {r['input']} | {r['received']}/{args.frames} "
              f"({100 * r['received'] / args.frames:.0f}%) | {r['qos']} | {r['warned']} | {r['load']:.1f} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["bench", "pub", "sub"], default="bench")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument(
        "--raw", action="store_true", help="subscriber takes serialized bytes (no rclpy decode)"
    )
    parser.add_argument("--result", default="")
    parser.add_argument("--matrix", action="store_true", help="the driver/node QoS matrix (see above)")
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"], help="matrix frame sizes")
    qos_kinds = ["best_effort_1", "best_effort", "sensor_data", "reliable"]
    parser.add_argument("--pub-qos", default="best_effort_1", choices=qos_kinds)
    parser.add_argument("--sub-qos", default="best_effort_1", choices=qos_kinds)
    parser.add_argument("--compressed", action="store_true", help="sensor_msgs/CompressedImage (jpeg)")
    parser.add_argument("--settle", type=float, default=1.0, help="publisher: s from match to first frame")
    parser.add_argument("--node", action="store_true",
                        help="matrix with the real sensor node (image_qos auto) as the subscriber")
    args = parser.parse_args()
    args.width, args.height = (int(v) for v in args.size.lower().split("x"))
    if args.role == "sub":
        return subscriber(Path(args.result), args.raw, args.sub_qos, args.compressed)
    if args.role == "pub":
        return publisher(args.frames, args.rate, args.width, args.height, args.pub_qos, args.compressed,
                         args.settle)
    if args.matrix and args.node:
        return node_matrix(args)
    if args.matrix:
        return matrix(args)

    tmp = Path(tempfile.mkdtemp(prefix="bench_transport_"))
    variant_profiles(tmp)
    rows = []
    for _ in range(args.repeat):
        for name in args.options:
            rows.append(run_option(name, args, tmp, args.raw))
            r = rows[-1]
            print(f"{r['option']}: {r['received']}/{args.frames} (load {r['load']:.1f})", flush=True)
    ser, de = serialisation_ms(args.width, args.height)
    print(
        f"\n{args.frames} frames {args.size} rgb8 at {args.rate:.0f} Hz, best-effort depth 1, "
        f"{os.cpu_count()} CPUs; rclpy serialise {ser:.2f} ms, deserialise {de:.2f} ms per Image"
    )
    print("| option | environment | delivered | sub callback ms | load avg (1 min) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['option']} | {r['env']} | {r['received']}/{args.frames} "
            f"({100 * r['received'] / args.frames:.0f}%) | {r['callback_ms']:.2f} | {r['load']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
