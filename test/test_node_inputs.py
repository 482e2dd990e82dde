"""Bad and varied input to the real node process: encodings, padded rows, malformed images and
prompts, thousands of prompts, stale prompts; the node answers on and never dies.
Start-up with a missing or corrupt model stops with a clear message (no traceback)."""

from __future__ import annotations

import subprocess
import time

import cv2
import numpy as np
import pytest
from node_helpers import REPO, RosClient, node_command, ros_env, running, write_red_model

from picosam3_ros.core.crop import crop_and_resize, crop_rect_for_box
from picosam3_ros.core.pipeline import Status
from picosam3_ros.core.postprocess import mask_from_logits
from picosam3_ros.core.prompts import MAX_REPORTS

DOMAIN = 25
WIDTH, HEIGHT = 320, 240
BOX = (100, 60, 120, 100)


def scene() -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
    cv2.rectangle(image, (120, 80), (200, 110), (240, 10, 10), -1)
    return image


def image_msg(stamp: int, pixels: np.ndarray, encoding: str, pad: int = 0):
    from sensor_msgs.msg import Image

    msg = Image(encoding=encoding, height=pixels.shape[0], width=pixels.shape[1])
    msg.header.stamp.sec = stamp
    rows = pixels.reshape(pixels.shape[0], -1)
    rows = np.concatenate([rows, np.zeros((rows.shape[0], pad), np.uint8)], axis=1) if pad else rows
    msg.step = rows.shape[1]
    msg.data = np.ascontiguousarray(rows).tobytes()
    return msg


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from picosam3_msgs.msg import SegmentationArray

    tmp = tmp_path_factory.mktemp("inputs")
    model = write_red_model(tmp / "model")
    params = {"model": str(model), "camera": "none", "max_prompts": 8, "prompt_timeout": 3.0}
    cmd = node_command("picosam3_ros.nodes.sensor_node", params, REPO / "config" / "sensor.yaml")
    with running(cmd, ros_env(DOMAIN), tmp / "node.log") as proc:
        client = RosClient(DOMAIN)
        try:
            segs = client.collect(SegmentationArray, "segmentations")
            yield client, proc, segs, tmp
        finally:
            client.close()


def send_until(client, proc, make, done, timeout=60.0):
    deadline = time.monotonic() + timeout
    i = 0
    while time.monotonic() < deadline and proc.poll() is None:
        make(i)
        i += 1
        if client.wait_for(done, timeout=0.25, proc=proc):
            return True
    return False


def wait_for_log(path, text, timeout=30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text():
            return True
        time.sleep(0.1)
    return False


def set_prompts(pub, boxes: dict):
    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray

    array = RoiPromptArray()
    for prompt_id, (x, y, w, h) in boxes.items():
        p = RoiPrompt(id=prompt_id)
        p.roi.x_offset, p.roi.y_offset, p.roi.width, p.roi.height = x, y, w, h
        array.prompts.append(p)
    pub.publish(array)


def test_encodings_bad_images_and_prompts(session):
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPromptArray

    client, proc, segs, tmp = session
    image_pub = client.node.create_publisher(Image, "image", 10)
    prompt_pub = client.node.create_publisher(RoiPromptArray, "prompts", 10)
    rgb = scene()
    crop = crop_rect_for_box(BOX, (WIDTH, HEIGHT))
    logits = (crop_and_resize(rgb, crop)[..., 0].astype(np.float32) / 255.0 - 0.5) * 40.0
    expected, _ = mask_from_logits(logits, crop, 0.5)

    def result_for(stamp):
        for m in segs:
            if m.header.stamp.sec == stamp and m.segmentations:
                return m
        return None

    variants = {
        "rgb8": (rgb, 0),
        "bgr8": (np.ascontiguousarray(rgb[..., ::-1]), 0),
        "rgba8": (np.dstack([rgb, np.full((HEIGHT, WIDTH), 255, np.uint8)]), 0),
        "rgb8_padded": (rgb, 17),
    }
    for index, (name, (pixels, pad)) in enumerate(variants.items()):
        stamp = 100 + index * 1000
        encoding = name.split("_")[0]

        def make(i, pixels=pixels, pad=pad, stamp=stamp, encoding=encoding):
            set_prompts(prompt_pub, {1: BOX})
            image_pub.publish(image_msg(stamp, pixels, encoding, pad))

        assert send_until(client, proc, make, lambda stamp=stamp: result_for(stamp) is not None), name
        with client.lock:
            seg = result_for(stamp).segmentations[0]
        assert seg.status == Status.OK, name
        got = np.frombuffer(bytes(seg.mask.data), np.uint8).reshape(seg.mask.height, seg.mask.width)
        np.testing.assert_array_equal(got, expected, err_msg=name)

    # mono8: red > 127 never holds for grey 30/76: an empty but valid mask.
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert send_until(
        client,
        proc,
        lambda i: image_pub.publish(image_msg(9000, grey, "mono8")),
        lambda: result_for(9000) is not None,
    )

    # Malformed images: unknown encoding, data shorter than step * height, step too small, odd-width
    # 4:2:2. Each is dropped with its reason in /diagnostics (the log is throttled per kind: the first
    # reason is logged, the others within 2 s are counted).
    from diagnostic_msgs.msg import DiagnosticArray

    diagnostics = client.collect(DiagnosticArray, "/diagnostics")
    odd = np.full((HEIGHT, WIDTH - 1, 2), 128, np.uint8)
    bad = [image_msg(9100, rgb, "weird42"), image_msg(9101, rgb, "rgb8"), image_msg(9102, rgb, "rgb8"),
           image_msg(9103, odd, "yuv422")]
    bad[1].data = bad[1].data[: len(bad[1].data) // 2]
    bad[2].step = 10

    def last_error_has(text):
        return any(kv.key == "last_error" and text in kv.value
                   for m in diagnostics for status in m.status for kv in status.values)

    for msg, text in zip(
        bad, ["unsupported encoding 'weird42'", "expected step * height", "is smaller than", "even width"]
    ):
        image_pub.publish(msg)  # one at a time: the one-slot buffer would drop all but the last
        assert client.wait_for(lambda text=text: last_error_has(text), proc=proc), text
    assert wait_for_log(tmp / "node.log", "unsupported encoding 'weird42'")
    # Malformed prompts: zero size, far outside, thousands.
    set_prompts(prompt_pub, {1: BOX, 2: (0, 0, 0, 0), 3: (4_000_000_000, 5, 10, 10)})
    assert send_until(
        client,
        proc,
        lambda i: image_pub.publish(image_msg(9200 + i, rgb, "rgb8")),
        lambda: any(len(m.segmentations) == 3 for m in segs),
    )
    with client.lock:
        last = next(m for m in reversed(segs) if len(m.segmentations) == 3)
    assert [s.status for s in last.segmentations] == [Status.OK, Status.INVALID_ROI, Status.INVALID_ROI]
    assert not any(9100 <= m.header.stamp.sec <= 9103 for m in segs)

    many = {i: (10 + i % 200, 10, 20, 20) for i in range(3000)}
    set_prompts(prompt_pub, many)

    def too_many_reported():
        # The surplus is reported compactly: the first MAX_REPORTS ids, the full count in the log.
        return any(
            sum(s.status == Status.TOO_MANY_PROMPTS for s in m.segmentations) == MAX_REPORTS for m in segs
        )

    assert send_until(
        client, proc, lambda i: image_pub.publish(image_msg(20000 + i, rgb, "rgb8")), too_many_reported
    )
    # The full count is in /diagnostics (the log line is throttled per kind).
    assert client.wait_for(lambda: any(
        kv.key == "bad_prompts" and int(kv.value) >= 3000 - 8
        for m in diagnostics for status in m.status for kv in status.values), proc=proc)

    def eight_served():
        return any(m.header.stamp.sec >= 20000 and len(m.segmentations) == 8 for m in segs)

    assert send_until(
        client, proc, lambda i: image_pub.publish(image_msg(30000 + i, rgb, "rgb8")), eight_served
    )
    assert proc.poll() is None
    assert "Traceback" not in (tmp / "node.log").read_text()


def test_stale_prompts_are_reported_once(session):
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPromptArray

    client, proc, segs, _ = session
    image_pub = client.node.create_publisher(Image, "image", 10)
    prompt_pub = client.node.create_publisher(RoiPromptArray, "prompts", 10)
    rgb = scene()
    assert send_until(
        client,
        proc,
        lambda i: (set_prompts(prompt_pub, {42: BOX}), image_pub.publish(image_msg(40000 + i, rgb, "rgb8"))),
        lambda: any(s.prompt_id == 42 for m in segs for s in m.segmentations),
    )
    # No refresh: after prompt_timeout (3 s) the prompt is reported STALE once, then gone.
    assert send_until(
        client,
        proc,
        lambda i: image_pub.publish(image_msg(50000 + i, rgb, "rgb8")),
        lambda: any(
            s.prompt_id == 42 and s.status == Status.STALE_PROMPT for m in segs for s in m.segmentations
        ),
        timeout=60,
    )
    assert send_until(
        client,
        proc,
        lambda i: image_pub.publish(image_msg(60000 + i, rgb, "rgb8")),
        lambda: sum(m.header.stamp.sec >= 60000 for m in segs) >= 2,
    )
    with client.lock:
        later = [m for m in segs if m.header.stamp.sec >= 60000]
    assert all(not m.segmentations for m in later)


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_bad_model_stops_startup_with_a_message(tmp_path, problem):
    model = tmp_path / "model"
    if problem == "corrupt":
        write_red_model(model)
        (model / "red.onnx").write_bytes(b"this is not an onnx file")
    cmd = node_command("picosam3_ros.nodes.sensor_node", {"model": str(model), "camera": "none"})
    result = subprocess.run(cmd, env=ros_env(DOMAIN + 1), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "cannot start" in result.stderr
    assert ("model_card.json" in result.stderr) if problem == "missing" else ("red.onnx" in result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
