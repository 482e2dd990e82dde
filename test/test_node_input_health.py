"""Input health of the real node process (issue 21, items 3 and 6).

* A healthy 30 fps stream whose stamps jitter by +-8 ms (and that sometimes sends two frames
  back to back, as a driver catching up does) for 40 s: no "frames lost" WARN, and the
  delivered fraction on /diagnostics stays near 1 (the stamp steps read as ~55%, or 0% for a
  back-to-back pair). The 5-minute run is bench/bench_soak.py --stamp-jitter-ms 8.
* use_sim_time:=true with no /clock, and a reliable driver of 640x480 frames that starts
  after the node: the node says so once, /diagnostics keep coming (wall-clock timer), the
  input follows the driver to reliable while the frames flow, losing none from the first one
  it took and answering none twice (make before break), with no false "no frame" WARN.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
from node_helpers import REPO, RosClient, node_command, ros_env, running, write_red_model

from picosam3_ros.core.image_conversion import fill_image
from picosam3_ros.nodes.fastdds_profile import USER_FASTDDS_SETTINGS

DOMAIN = 18
WIDTH, HEIGHT = 160, 120
LARGE = (640, 480)  # over Fast DDS's default shared-memory segment: a best-effort reader loses most
FPS = 30.0
WAIT_S = 60.0


def node_cmd(tmp, **params):
    model = write_red_model(tmp / "model")
    params = {"model": str(model), "camera": "none", "backend": "onnx", "threads": 1, **params}
    return node_command("picosam3_ros.nodes.sensor_node", params, REPO / "config" / "sensor.yaml")


def image(nonce: str, stamp_ns: int, data: bytes, size: tuple[int, int] = (WIDTH, HEIGHT)):
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.frame_id = nonce
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    fill_image(msg, np.frombuffer(data, np.uint8).reshape(size[1], size[0], 3), "rgb8")
    return msg


def reliable_publisher(client: RosClient):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    return client.node.create_publisher(Image, "image", reliable)


def input_values(diagnostics) -> list[dict]:
    out = []
    for msg in diagnostics:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "input_delivered_fraction" in values:
                level = status.level[0] if isinstance(status.level, bytes) else status.level
                out.append({"level": level, "message": status.message, **values})
    return out


def test_jittered_stamps_raise_no_frames_lost_warning(tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray

    nonce = f"jitter_{uuid.uuid4().hex[:8]}"
    with running(node_cmd(tmp_path), ros_env(DOMAIN), tmp_path / "node.log") as proc:
        client = RosClient(DOMAIN, "input_health_client")
        try:
            diagnostics = client.collect(DiagnosticArray, "/diagnostics")
            pub = reliable_publisher(client)
            assert client.wait_for(lambda: pub.get_subscription_count() > 0, WAIT_S, proc)
            rng = np.random.default_rng(18)
            data = rng.integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8).tobytes()
            start = time.monotonic()
            sent = 0
            while time.monotonic() - start < 40.0:
                stamp = time.time_ns() + int(rng.uniform(-8.0, 8.0) * 1e6)
                pub.publish(image(nonce, stamp, data))
                sent += 1
                if sent % 97 == 0:  # a driver catching up: the next frame right away, stamped now
                    pub.publish(image(nonce, time.time_ns(), data))
                time.sleep(max(0.0, start + sent / FPS - time.monotonic()))
            time.sleep(2.5)  # two more diagnostics periods
            with client.lock:
                reports = input_values(diagnostics)
        finally:
            client.close()
    log = (tmp_path / "node.log").read_text(errors="replace")
    assert "of the frames published on" not in log, log[-2000:]
    steady = [r for r in reports if float(r["input_published_hz"]) > 0][3:]  # after the QoS switch
    assert len(steady) >= 30, reports[-3:]
    assert all(r["level"] == 0 for r in steady), [r for r in steady if r["level"]][:3]
    assert min(float(r["input_delivered_fraction"]) for r in steady) >= 0.95
    assert all(25.0 < float(r["input_published_hz"]) < 40.0 for r in steady)


def test_sim_time_without_clock_and_a_qos_switch_that_loses_no_frames(tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray

    from picosam3_msgs.msg import SegmentationArray

    nonce = f"switch_{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "node.log"
    env = {k: v for k, v in ros_env(DOMAIN).items() if k not in USER_FASTDDS_SETTINGS}
    with running(node_cmd(tmp_path, use_sim_time=True), env, log_path) as proc:
        client = RosClient(DOMAIN, "input_switch_client")
        try:
            diagnostics = client.collect(DiagnosticArray, "/diagnostics")
            segs = client.collect(SegmentationArray, "segmentations")
            # No /clock: /diagnostics still come (stamped 0), and the node says why once.
            assert client.wait_for(lambda: len(diagnostics) >= 3, WAIT_S, proc), log_path.read_text()
            assert client.wait_for(lambda: "no /clock has arrived" in log_path.read_text(), WAIT_S, proc)
            with client.lock:
                assert diagnostics[-1].header.stamp.sec == 0
            # A reliable driver of 640x480 frames starts now, publishing at once. Without the
            # large-images profile the node's first (best-effort) reader loses most of them: it
            # follows the driver to reliable while they flow, and from its first frame on loses none.
            pub = reliable_publisher(client)
            data = np.zeros((LARGE[1], LARGE[0], 3), np.uint8).tobytes()
            frames = 240
            start = time.monotonic()
            for i in range(frames):
                pub.publish(image(nonce, (i + 1) * 10**9, data, LARGE))
                time.sleep(max(0.0, start + (i + 1) / FPS - time.monotonic()))
            time.sleep(0.5)
            log = log_path.read_text(errors="replace")  # up to the end of the stream

            def frames_in() -> int:
                values = [int(r["frames_in"]) for r in input_values(diagnostics)]
                return values[-1] if values else -1

            with client.lock:
                answered = [m.header.stamp.sec for m in segs if m.header.frame_id == nonce]
            assert answered, log[-3000:]
            expected = frames - min(answered) + 1  # every frame from the first one the node took
            client.wait_for(lambda: frames_in() >= expected, 5.0, proc)
            with client.lock:
                got = frames_in()
        finally:
            client.close()
    assert "subscribing to" in log and "(reliable, image_qos=auto)" in log and "is closed" in log, log[-3000:]
    assert "no frame arrived" not in log, log[-3000:]
    assert got >= expected - 5, f"{got} of {expected} frames from the first one on"
    assert len(answered) == len(set(answered)), "a frame was answered twice"
