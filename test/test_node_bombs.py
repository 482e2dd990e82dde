"""Compressed payloads against the real node process (issue 21): decompression bombs among a
10 fps JPEG stream, and a seeded fuzz of malformed payloads with exact probes in between.

The bombs are generated here (test/payloads.py): a 785-byte JPEG whose frame header claims
32000x32000 and a 389 KB PNG of 20000x20000. Each must be refused from its header: no
`segmentations` and no `mask` with its stamp, `bad_images` counted, the node's peak RSS
(VmHWM) up by less than 200 MB, the frames after it answered, and nothing from libjpeg or
libpng outside the node's throttled log. The timing figures (gaps between answers) are
bench/bench_bombs.py's.
"""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from node_helpers import REPO, RosClient, node_command, ros_env, running, status_mb, write_red_model
from payloads import encode, hostile_payloads, jpeg_bomb, png_bomb
from test_node_fuzz import BOX, expected_mask, rss_mb, scene

from picosam3_ros.core.image_conversion import ImageConversionError, compressed_to_rgb
from picosam3_ros.core.pipeline import Status

DOMAIN = 17
PEAK_GROWTH_LIMIT_MB = 200.0
WAIT_S = 60.0  # generous: a wait, not a speed measurement
DECODER_LINES = ("libpng", "Corrupt JPEG", "Premature end of JPEG")


def peak_rss_mb(pid: int) -> float:
    return status_mb(pid, "VmHWM")


class Client:
    def __init__(self, client: RosClient, nonce: str):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        from picosam3_msgs.msg import RoiPromptArray, SegmentationArray

        self.client, self.nonce = client, nonce
        # Its own prompt id: an answer computed with an earlier test's prompt set never passes for ours.
        self.prompt_id = uuid.uuid4().int % 60_000 + 1_000
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = client.node.create_publisher(CompressedImage, "image/compressed", reliable)
        self.prompt_pub = client.node.create_publisher(RoiPromptArray, "prompts", 10)
        self.segs = client.collect(SegmentationArray, "segmentations")
        self.masks = client.collect(Image, "mask")
        self.diagnostics = client.collect(DiagnosticArray, "/diagnostics")

    def prompts(self) -> None:
        from picosam3_msgs.msg import RoiPrompt, RoiPromptArray

        array = RoiPromptArray()
        array.header.frame_id = self.nonce
        prompt = RoiPrompt(id=self.prompt_id)
        prompt.roi.x_offset, prompt.roi.y_offset, prompt.roi.width, prompt.roi.height = BOX
        array.prompts.append(prompt)
        self.prompt_pub.publish(array)

    def frame(self, stamp: int, data: bytes, fmt: str):
        from sensor_msgs.msg import CompressedImage

        msg = CompressedImage(format=fmt, data=data)
        msg.header.frame_id = self.nonce
        msg.header.stamp.sec = stamp
        self.image_pub.publish(msg)

    def answered(self, stamp: int) -> bool:
        """An answer (segmentations or mask) for that stamp arrived; call with the lock held."""
        return any(m.header.frame_id == self.nonce and m.header.stamp.sec == stamp
                   for m in self.segs + self.masks)

    def answer(self, stamp: int):
        return next((m for m in self.segs if m.header.frame_id == self.nonce and m.header.stamp.sec == stamp
                     and any(s.prompt_id == self.prompt_id for s in m.segmentations)), None)

    def diagnostic(self, key: str) -> int:
        values = [int(kv.value) for m in self.diagnostics for status in m.status for kv in status.values
                  if kv.key == key]
        return values[-1] if values else -1

    def probe(self, proc, stamp: int, data: bytes, fmt: str = "png"):
        """Send the frame (and the prompt) until its answer arrives; return it."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and proc.poll() is None:
            self.prompts()
            self.frame(stamp, data, fmt)
            if self.client.wait_for(lambda: self.answer(stamp) is not None, 0.5, proc):
                with self.client.lock:
                    return self.answer(stamp)
        raise AssertionError(f"probe {stamp} got no answer (node exit code {proc.poll()})")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bombs")
    model = write_red_model(tmp / "model")
    params = {"model": str(model), "camera": "none", "backend": "onnx", "threads": 1,
              "prompt_timeout": 30.0, "image_transport": "compressed"}
    cmd = node_command("picosam3_ros.nodes.sensor_node", params, REPO / "config" / "sensor.yaml")
    with running(cmd, ros_env(DOMAIN), tmp / "node.log") as proc:
        client = RosClient(DOMAIN, "bombs_client")
        try:
            yield client, proc, tmp / "node.log"
        finally:
            client.close()


def check_probe(c: Client, msg, want: np.ndarray, what: str) -> None:
    seg = next(s for s in msg.segmentations if s.prompt_id == c.prompt_id)
    assert seg.status == Status.OK, f"{what}: status {seg.status}, {len(msg.segmentations)} entries"
    got = np.frombuffer(bytes(seg.mask.data), np.uint8).reshape(seg.mask.height, seg.mask.width)
    np.testing.assert_array_equal(got, want, err_msg=what)


def test_bombs_among_a_10_fps_jpeg_stream_are_refused(node):
    client, proc, log_path = node
    c = Client(client, f"bombs_{uuid.uuid4().hex[:8]}")
    rgb = scene()
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    valid = encode(".jpg", bgr)
    check_probe(c, c.probe(proc, 1, encode(".png", bgr)), expected_mask(rgb), "warm-up")
    assert client.wait_for(lambda: c.diagnostic("bad_images") >= 0, WAIT_S, proc)
    with client.lock:
        bad_before = c.diagnostic("bad_images")
    peak_before = peak_rss_mb(proc.pid)
    bombs = {900_001: ("jpeg", jpeg_bomb(), "32000x32000"), 900_002: ("png", png_bomb(), "20000x20000")}
    stamps = iter(range(100, 100_000))
    for bomb_stamp, (fmt, data, claim) in bombs.items():
        for _ in range(30):  # 3 s of the stream, then the bomb, until the node has logged its refusal
            c.prompts()
            c.frame(next(stamps), valid, "jpeg")
            time.sleep(0.1)
        deadline = time.monotonic() + WAIT_S
        while claim not in log_path.read_text(errors="replace") and time.monotonic() < deadline:
            c.frame(bomb_stamp, data, fmt)
            for _ in range(10):
                c.frame(next(stamps), valid, "jpeg")
                time.sleep(0.1)
        assert claim in log_path.read_text(errors="replace"), f"no refusal of the {claim} {fmt} logged"
    # The stream goes on and is answered.
    last = next(stamps)
    c.probe(proc, last, valid, "jpeg")
    assert client.wait_for(lambda: c.diagnostic("bad_images") >= bad_before + 2, WAIT_S, proc)
    growth = peak_rss_mb(proc.pid) - peak_before
    assert growth < PEAK_GROWTH_LIMIT_MB, f"peak RSS grew by {growth:.0f} MB"
    time.sleep(1.0)  # anything still in flight for the bombs
    with client.lock:
        assert not any(c.answered(stamp) for stamp in bombs), "a bomb was answered"
        answered_valid = sum(c.answered(s) for s in range(100, last))
    assert answered_valid > 0
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log
    assert not [line for line in log.splitlines() if line.startswith(DECODER_LINES)]


def test_fuzzed_compressed_payloads_never_reach_the_decoder_unchecked(node):
    client, proc, log_path = node
    c = Client(client, f"fuzz_{uuid.uuid4().hex[:8]}")
    rgb = scene()
    want = expected_mask(rgb)
    probe_png = encode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    check_probe(c, c.probe(proc, 1, probe_png), want, "warm-up")
    rss_start = rss_mb(proc.pid)
    log_start = len(log_path.read_text(errors="replace").splitlines())
    started = time.monotonic()
    refused_stamps = []
    stamp = 10_000
    payloads = hostile_payloads(300)
    for index, (fmt, data, what) in enumerate(payloads):
        stamp += 1
        try:  # the same code decides here what the node must refuse
            compressed_to_rgb(SimpleNamespace(data=data, format=fmt))
        except ImageConversionError:
            refused_stamps.append(stamp)
        c.frame(stamp, data, fmt)
        if index % 30 == 29:
            stamp += 1
            check_probe(c, c.probe(proc, stamp, probe_png), want, f"probe after payload {index} ({what})")
    elapsed = time.monotonic() - started
    assert len(refused_stamps) > 200
    time.sleep(1.0)
    with client.lock:
        answered = [s for s in refused_stamps if c.answered(s)]
    assert not answered, f"refused payloads were answered: {answered[:5]}"
    assert proc.poll() is None
    assert rss_mb(proc.pid) - rss_start < 100.0
    lines = log_path.read_text(errors="replace").splitlines()[log_start:]
    assert not [line for line in lines if "Traceback" in line or line.startswith(DECODER_LINES)]
    warnings = [line for line in lines if "WARN" in line]
    assert len(warnings) <= 2 * (elapsed / 2.0 + 2), f"{len(warnings)} warnings in {elapsed:.0f} s"
