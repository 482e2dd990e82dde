"""Fuzzing the real node process (issue 13): thousands of malformed prompts and images, valid
probe frames in between. Every probe must come back with the right mask; the node never
exits, never logs a traceback, its log stays throttled and its memory bounded.

A bounded run (seeded, a few thousand messages, about a minute): the soak benchmark
(bench/bench_soak.py) is the long version.
"""

from __future__ import annotations

import random
import time
import uuid

import cv2
import numpy as np
import pytest
from node_helpers import REPO, RosClient, node_command, ros_env, running, status_mb, write_red_model

from picosam3_ros.core.crop import crop_and_resize, crop_rect_for_box
from picosam3_ros.core.image_conversion import fill_image
from picosam3_ros.core.pipeline import Status
from picosam3_ros.core.postprocess import mask_from_logits
from picosam3_ros.core.prompts import MAX_REPORTS

DOMAIN = 84
WIDTH, HEIGHT = 160, 120
BOX = (40, 30, 60, 50)
MAX_PROMPTS = 16  # config/sensor.yaml
ROUNDS = 30
MESSAGES_PER_ROUND = 100
RSS_GROWTH_LIMIT_MB = 100.0
PROBE_WAIT_S = 60.0  # generous: a wait, not a speed measurement


def scene() -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
    cv2.rectangle(image, (55, 40), (85, 60), (240, 10, 10), -1)
    return image


def expected_mask(rgb: np.ndarray) -> np.ndarray:
    """What write_red_model's network gives for BOX (logits = 40 * (red/255 - 0.5))."""
    crop = crop_rect_for_box(BOX, (WIDTH, HEIGHT))
    logits = (crop_and_resize(rgb, crop)[..., 0].astype(np.float32) / 255.0 - 0.5) * 40.0
    return mask_from_logits(logits, crop, 0.5)[0]


def rss_mb(pid: int) -> float:
    return status_mb(pid, "VmRSS")


class Fuzzer:
    """Malformed messages of every kind the issue found, from a seeded generator."""

    def __init__(self, client: RosClient, nonce: str, seed: int = 13):
        from sensor_msgs.msg import Image, RegionOfInterest

        from picosam3_msgs.msg import RoiPromptArray

        self.rng = random.Random(seed)
        self.nonce = nonce
        self.image_pub = client.node.create_publisher(Image, "image", 10)
        self.prompt_pub = client.node.create_publisher(RoiPromptArray, "prompts", 10)
        self.roi_pub = client.node.create_publisher(RegionOfInterest, "roi", 10)
        self.sent = 0

    def prompts(self, boxes: list[tuple[int, int, int, int, int]], frame_id: str | None = None) -> None:
        from picosam3_msgs.msg import RoiPrompt, RoiPromptArray

        array = RoiPromptArray()
        array.header.frame_id = self.nonce if frame_id is None else frame_id
        for prompt_id, x, y, w, h in boxes:
            prompt = RoiPrompt(id=prompt_id)
            prompt.roi.x_offset, prompt.roi.y_offset, prompt.roi.width, prompt.roi.height = x, y, w, h
            array.prompts.append(prompt)
        self.prompt_pub.publish(array)
        self.sent += 1

    def image(self, stamp: int, rgb: np.ndarray, frame_id: str | None = None):
        from sensor_msgs.msg import Image

        msg = Image()
        msg.header.stamp.sec = stamp
        msg.header.frame_id = self.nonce if frame_id is None else frame_id
        fill_image(msg, rgb, "rgb8")
        return msg

    def bad_prompt_message(self) -> None:
        r = self.rng
        big = 2**32 - 1
        kind = r.randrange(7)
        if kind == 0:  # zero-size and far-outside boxes
            boxes = [(r.randrange(big), r.choice([0, big]), r.randrange(big), 0, r.choice([0, 5]))
                     for _ in range(5)]
        elif kind == 1:  # too many, duplicate ids
            boxes = [(r.randrange(50), r.randrange(WIDTH), r.randrange(HEIGHT), 10, 10) for _ in range(300)]
        elif kind == 2:  # another image's frame_id, odd characters
            self.prompts([(1, 10, 10, 20, 20)], frame_id=r.choice(["other", "é\n\t", "x" * 5000, ""]))
            return
        elif kind == 3:  # `roi` topic: any uint32 values
            from sensor_msgs.msg import RegionOfInterest

            roi = RegionOfInterest(x_offset=r.randrange(big), y_offset=r.randrange(big),
                                   width=r.choice([0, 1, big]), height=r.choice([0, 1, big]))
            self.roi_pub.publish(roi)
            self.sent += 1
            return
        elif kind == 4:
            boxes = []  # the empty set
        elif kind == 5:  # bytes that are no RoiPromptArray: truncated, garbage, a count they cannot hold
            from rclpy.serialization import serialize_message

            from picosam3_msgs.msg import RoiPrompt, RoiPromptArray

            whole = bytes(serialize_message(RoiPromptArray(prompts=[RoiPrompt(id=i) for i in range(4)])))
            self.prompt_pub.publish(r.choice([
                whole[: r.randrange(len(whole))],
                b"\x00\x01\x00\x00" + r.randbytes(r.randrange(200)),
                whole[:20] + b"\xff\xff\xff\x7f" + whole[24:],  # the count, after the header
                r.randbytes(r.randrange(1, 64)),
            ]))
            self.sent += 1
            return
        else:  # huge boxes overlapping the frame
            boxes = [(i, 0, 0, big, big) for i in range(3)]
        self.prompts(boxes)

    def bad_image(self, stamp: int):
        from sensor_msgs.msg import Image

        r = self.rng
        msg = Image()
        msg.header.stamp.sec = stamp
        msg.header.frame_id = self.nonce
        kind = r.randrange(8)
        if kind == 0:  # 0x0
            msg.encoding = "rgb8"
        elif kind == 1:  # header-only giant
            msg.encoding, msg.width, msg.height, msg.step = "rgb8", 60000, 60000, 180000
        elif kind == 2:  # odd-width 4:2:2
            msg.encoding = r.choice(["yuv422", "uyvy", "yuyv", "yuv422_yuy2"])
            msg.width, msg.height = r.choice([3, 5, 33]), 8
            msg.step = msg.width * 2
            msg.data = bytes(msg.step * msg.height)
        elif kind == 3:  # unknown encodings
            msg.encoding = r.choice(["jpeg", "32FC1", "bayer_rggb8", "", "rgb8\x00", "x" * 300])
            msg.width, msg.height, msg.step = 8, 8, 24
            msg.data = bytes(192)
        elif kind == 4:  # data shorter than step * height
            msg.encoding, msg.width, msg.height, msg.step = "rgb8", 32, 32, 96
            msg.data = bytes(r.randrange(96 * 32))
        elif kind == 5:  # step too small, or absurd
            msg.encoding, msg.width, msg.height = "mono8", 32, 32
            msg.step = r.choice([0, 1, 31, 2**32 - 1])
            msg.data = bytes(1024)
        elif kind == 6:  # valid layout, random pixels, odd sizes (these are segmented, not rejected)
            w, h = r.randrange(1, 40), r.randrange(1, 40)
            msg.encoding, msg.width, msg.height, msg.step = "mono16", w, h, 2 * w
            msg.is_bigendian = r.randrange(2)
            msg.data = r.randbytes(2 * w * h)
        else:  # bgra8 with padded rows and a garbage tail
            w, h = r.randrange(1, 40), r.randrange(1, 40)
            msg.encoding, msg.width, msg.height, msg.step = "bgra8", w, h, 4 * w + 3
            msg.data = r.randbytes((4 * w + 3) * h + r.randrange(50))
        self.image_pub.publish(msg)
        self.sent += 1


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from picosam3_msgs.msg import SegmentationArray

    tmp = tmp_path_factory.mktemp("fuzz")
    model = write_red_model(tmp / "model")
    # Prompts live 30 s here: a probe on a loaded machine must not see the set expire (test_node_inputs
    # covers the timeout).
    params = {"model": str(model), "camera": "none", "backend": "onnx", "threads": 1, "prompt_timeout": 30.0}
    cmd = node_command("picosam3_ros.nodes.sensor_node", params, REPO / "config" / "sensor.yaml")
    with running(cmd, ros_env(DOMAIN), tmp / "node.log") as proc:
        client = RosClient(DOMAIN, "fuzz_client")
        try:
            segs = client.collect(SegmentationArray, "segmentations")
            yield client, proc, segs, tmp / "node.log"
        finally:
            client.close()


def answer(segs, nonce: str, stamp: int, prompt_id: int | None = None):
    """The SegmentationArray for that frame (with a result for ``prompt_id``), or None.

    Call with the client's lock held. Prompts and images travel on different topics, so a
    frame may be segmented before the probe's prompt set arrives: the probe's prompt has
    its own id, and the frame is sent again until an answer carries it.
    """
    for m in segs:
        ours = m.header.frame_id == nonce and m.header.stamp.sec == stamp
        if ours and (prompt_id is None or any(s.prompt_id == prompt_id for s in m.segmentations)):
            return m
    return None


def probe(fuzzer: Fuzzer, client, proc, segs, stamp: int, rgb: np.ndarray, set_prompts: bool = True):
    """Publish a valid frame (and a valid prompt, id ``stamp``) until its answer arrives; return it."""
    deadline = time.monotonic() + PROBE_WAIT_S
    frame = fuzzer.image(stamp, rgb)
    prompt_id = stamp if set_prompts else None
    while time.monotonic() < deadline and proc.poll() is None:
        if set_prompts:
            fuzzer.prompts([(prompt_id, *BOX)])
        fuzzer.image_pub.publish(frame)
        if client.wait_for(lambda: answer(segs, fuzzer.nonce, stamp, prompt_id) is not None, 0.5, proc):
            with client.lock:
                return answer(segs, fuzzer.nonce, stamp, prompt_id)
    raise AssertionError(f"probe {stamp} got no answer (node exit code {proc.poll()})")


def test_fuzzed_node_answers_every_probe_correctly(node):
    client, proc, segs, log_path = node
    nonce = f"fuzz_{uuid.uuid4().hex[:8]}"
    fuzzer = Fuzzer(client, nonce)
    rgb = scene()
    want = expected_mask(rgb)

    def check(msg, what: str) -> None:
        seg = next(s for s in msg.segmentations if s.prompt_id == msg.header.stamp.sec)
        assert seg.status == Status.OK, what
        got = np.frombuffer(bytes(seg.mask.data), np.uint8).reshape(seg.mask.height, seg.mask.width)
        np.testing.assert_array_equal(got, want, err_msg=what)

    check(probe(fuzzer, client, proc, segs, 1, rgb), "warm-up probe")
    rss_start = rss_mb(proc.pid)
    started = time.monotonic()
    log_start = len(log_path.read_text(errors="replace").splitlines())
    stamp = 10
    for round_index in range(ROUNDS):
        for _ in range(MESSAGES_PER_ROUND):
            stamp += 1
            if fuzzer.rng.random() < 0.5:
                fuzzer.bad_prompt_message()
            else:
                fuzzer.bad_image(stamp)
        stamp += 1
        check(probe(fuzzer, client, proc, segs, stamp, rgb), f"probe after round {round_index}")
        if round_index == ROUNDS // 2:
            # One array of 50,000 prompts once stalled the node for 7 s and made the next frame carry
            # 50,000 entries: now its answer holds max_prompts results and at most MAX_REPORTS reports.
            fuzzer.prompts([(i, i % WIDTH, 5, 20, 20) for i in range(50_000)])
            stamp += 1
            msg = probe(fuzzer, client, proc, segs, stamp, rgb, set_prompts=False)
            assert len(msg.segmentations) <= MAX_PROMPTS + MAX_REPORTS
    elapsed = time.monotonic() - started
    assert proc.poll() is None, "the node exited"
    assert fuzzer.sent >= ROUNDS * MESSAGES_PER_ROUND
    growth = rss_mb(proc.pid) - rss_start
    assert growth < RSS_GROWTH_LIMIT_MB, f"RSS grew by {growth:.0f} MB under fuzzing"
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log
    # The throttle logs each kind ("prompts", "image") at most once per 2 s.
    warnings = [line for line in log.splitlines()[log_start:] if "WARN" in line]
    assert len(warnings) <= 2 * (elapsed / 2.0 + 2), f"{len(warnings)} warnings in {elapsed:.0f} s"
    assert any("more like this" in line for line in warnings)


def test_huge_prompt_array_is_reported_compactly(node):
    """The array of 50,000 prompts alone, then frames: the surplus is reported once, bounded."""
    from diagnostic_msgs.msg import DiagnosticArray

    client, proc, segs, log_path = node
    nonce = f"fuzz_{uuid.uuid4().hex[:8]}"
    fuzzer = Fuzzer(client, nonce, seed=14)
    rgb = scene()
    diagnostics = client.collect(DiagnosticArray, "/diagnostics")

    def bad_prompts() -> int:  # the latest count the node reported (call with the lock held)
        values = [int(kv.value) for m in diagnostics for status in m.status for kv in status.values
                  if kv.key == "bad_prompts"]
        return values[-1] if values else -1

    probe(fuzzer, client, proc, segs, 100_000, rgb)
    assert client.wait_for(lambda: bad_prompts() >= 0, proc=proc)
    with client.lock:
        seen = len(segs)
        bad_before = bad_prompts()
    fuzzer.prompts([(i, i % WIDTH, 5, 20, 20) for i in range(50_000)])

    def reported():
        return any(
            m.header.frame_id == nonce and Status.TOO_MANY_PROMPTS in [s.status for s in m.segmentations]
            for m in segs[seen:]
        )

    stamp = 100_001
    deadline = time.monotonic() + PROBE_WAIT_S
    while time.monotonic() < deadline and not client.wait_for(reported, 0.5, proc):
        fuzzer.image_pub.publish(fuzzer.image(stamp, rgb))
        stamp += 1
    assert client.wait_for(reported, 1.0, proc), "the surplus was never reported"
    with client.lock:
        msg = next(m for m in segs[seen:] if m.header.frame_id == nonce
                   and Status.TOO_MANY_PROMPTS in [s.status for s in m.segmentations])
    statuses = [s.status for s in msg.segmentations]
    assert statuses.count(Status.TOO_MANY_PROMPTS) == MAX_REPORTS
    assert len(statuses) == MAX_PROMPTS + MAX_REPORTS
    # The full count is in /diagnostics (the log line may fall in the throttle's window).
    assert client.wait_for(lambda: bad_prompts() >= bad_before + 50_000 - MAX_PROMPTS, proc=proc)
    # Reported once: the next frames carry only the prompts kept.
    for _ in range(3):
        stamp += 1
        later = probe(fuzzer, client, proc, segs, stamp, rgb, set_prompts=False)
        assert len(later.segmentations) == MAX_PROMPTS
