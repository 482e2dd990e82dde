"""The real sensor node as a process, over DDS, with a known-output model (CPU backend).

The disk model outputs the same centred disk for every crop, so the expected
``mask`` and every crop-local mask follow from the crop rule alone: this checks
paste-back, the label encoding and attribution pixel by pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
from node_helpers import REPO, RosClient, disk_logits, node_command, ros_env, running, write_disk_model

from picosam3_ros.core.crop import crop_rect_for_box
from picosam3_ros.core.pipeline import PromptResult, Status, compose_frame_mask
from picosam3_ros.core.postprocess import mask_from_logits

DOMAIN = 21
WIDTH, HEIGHT = 640, 480
PROMPTS = {  # id -> box (x, y, w, h)
    7: (100, 120, 80, 60),
    3: (140, 150, 120, 100),  # overlaps prompt 7: later entry wins in `mask`
    9: (600, 440, 100, 90),  # partly outside: clipped
    11: (50, 50, 0, 10),  # zero size: INVALID_ROI
    12: (5000, 10, 20, 20),  # outside the frame: INVALID_ROI
}


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import SegmentationArray

    tmp = tmp_path_factory.mktemp("node")
    model = write_disk_model(tmp / "model")
    cmd = node_command(
        "picosam3_ros.nodes.sensor_node",
        {"model": str(model), "camera": "none", "backend": "onnx"},
        REPO / "config" / "sensor.yaml",
    )
    with running(cmd, ros_env(DOMAIN), tmp / "node.log") as proc:
        client = RosClient(DOMAIN)
        try:
            segs = client.collect(SegmentationArray, "segmentations")
            masks = client.collect(Image, "mask")
            yield client, proc, segs, masks, tmp
        finally:
            client.close()


def make_image(stamp_sec: int, pixels: np.ndarray, encoding: str = "rgb8"):
    from sensor_msgs.msg import Image

    from picosam3_ros.core.image_conversion import fill_image

    msg = Image()
    msg.header.stamp.sec = stamp_sec
    msg.header.frame_id = "camera"
    fill_image(msg, pixels, encoding)
    return msg


def publish_until(client, proc, publisher, make_msg, done, timeout=60.0):
    """Publish ``make_msg(i)`` every 0.2 s until ``done()``; discovery takes a while on a loaded machine."""
    import time

    deadline = time.monotonic() + timeout
    i = 0
    while time.monotonic() < deadline:
        publisher.publish(make_msg(i))
        i += 1
        if client.wait_for(done, timeout=0.2, proc=proc):
            return True
        if proc.poll() is not None:
            return False
    return False


def expected_results(prompts: dict) -> list[PromptResult]:
    out = []
    for prompt_id, box in prompts.items():
        try:
            rect = crop_rect_for_box(box, (WIDTH, HEIGHT))
        except ValueError:
            out.append(PromptResult(prompt_id, Status.INVALID_ROI))
            continue
        mask, _ = mask_from_logits(disk_logits(), rect, 0.5)
        out.append(PromptResult(prompt_id, Status.OK, crop=rect, crop_mask=mask))
    return out


def test_masks_are_pixel_exact(session):
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPrompt, RoiPromptArray

    client, proc, segs, masks, _ = session
    image_pub = client.node.create_publisher(Image, "image", 10)
    prompt_pub = client.node.create_publisher(RoiPromptArray, "prompts", 10)
    array = RoiPromptArray()
    for prompt_id, (x, y, w, h) in PROMPTS.items():
        prompt = RoiPrompt(id=prompt_id)
        prompt.roi.x_offset, prompt.roi.y_offset, prompt.roi.width, prompt.roi.height = x, y, w, h
        array.prompts.append(prompt)
    pixels = np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)

    def make(i):
        prompt_pub.publish(array)
        return make_image(1000 + i, pixels)

    def done():
        return any(len(m.segmentations) == len(PROMPTS) for m in segs)

    assert publish_until(client, proc, image_pub, make, done), "no SegmentationArray with all prompts"
    with client.lock:
        result = next(m for m in segs if len(m.segmentations) == len(PROMPTS))
        stamp = result.header.stamp.sec
        label = next(m for m in masks if m.header.stamp.sec == stamp)
    assert result.header.frame_id == "camera" and stamp >= 1000
    expected = expected_results(PROMPTS)
    by_id = {s.prompt_id: s for s in result.segmentations}
    assert [s.prompt_id for s in result.segmentations] == list(PROMPTS)
    for exp in expected:
        seg = by_id[exp.prompt_id]
        assert seg.status == exp.status, exp.prompt_id
        if exp.status != Status.OK:
            assert seg.mask.width == 0 and seg.mask.height == 0
            continue
        assert (seg.crop.x_offset, seg.crop.y_offset, seg.crop.width, seg.crop.height) == exp.crop.as_xywh()
        crop_mask = np.frombuffer(bytes(seg.mask.data), np.uint8).reshape(seg.mask.height, seg.mask.width)
        np.testing.assert_array_equal(crop_mask, exp.crop_mask)
        assert seg.backend == "onnx" and 0.5 < seg.score <= 1.0
    got = np.frombuffer(bytes(label.data), np.uint8).reshape(HEIGHT, WIDTH)
    np.testing.assert_array_equal(got, compose_frame_mask(expected, (WIDTH, HEIGHT)))
    assert {1, 2, 3} <= set(np.unique(got).tolist())  # entries 1..3 drew, 4 and 5 are invalid


def test_roi_topic_replaces_prompt_zero(session):
    from sensor_msgs.msg import Image, RegionOfInterest

    client, proc, segs, _, _ = session
    image_pub = client.node.create_publisher(Image, "image", 10)
    roi_pub = client.node.create_publisher(RegionOfInterest, "roi", 10)
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    roi = RegionOfInterest(x_offset=300, y_offset=200, width=50, height=50)

    def make(i):
        roi_pub.publish(roi)
        return make_image(5000 + i, pixels)

    def done():
        return any(
            m.header.stamp.sec >= 5000 and any(s.prompt_id == 0 and s.status == 0 for s in m.segmentations)
            for m in segs
        )

    assert publish_until(client, proc, image_pub, make, done)
    with client.lock:
        msg = next(
            m for m in segs if m.header.stamp.sec >= 5000 and any(s.prompt_id == 0 for s in m.segmentations)
        )
    seg = next(s for s in msg.segmentations if s.prompt_id == 0)
    assert (seg.crop.x_offset, seg.crop.y_offset, seg.crop.width, seg.crop.height) == crop_rect_for_box(
        (300, 200, 50, 50), (WIDTH, HEIGHT)
    ).as_xywh()
