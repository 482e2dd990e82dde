"""The one post-processing step and where its settings come from (node, card, options).

Box-aware output: masks are clipped to the prompt box grown by ``box_margin``; the model
card's ``postprocess`` block carries a model's calibration; the node's parameters
override it. Checked on the pure functions, with the real bundled model on a real image,
and through the real node over DDS (a known-output model whose card asks for the clip).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from node_helpers import REPO, disk_logits, prompt_array, sensor_node_and_client, write_disk_model

from picosam3_ros.core.crop import CropRect, crop_rect_for_box
from picosam3_ros.core.model_card import ModelCardError, load_model_card, postprocess_in_use
from picosam3_ros.core.pipeline import Prompt, Status, segment_frame
from picosam3_ros.core.postprocess import RAW_POSTPROCESS, Postprocess, box_keep_map, mask_from_logits
from picosam3_ros.nodes.node_config import ConfigError
from picosam3_ros.nodes.sensor_params import validate

DOMAIN = 37
WIDTH, HEIGHT = 320, 240
DEMO_IMAGE = REPO / "picosam3_ros" / "demo" / "demo_clip" / "00_000000000785.jpg"


def card_with_postprocess(directory: Path, block: dict | None) -> Path:
    """The disk model's directory with ``block`` as its card's postprocess block."""
    write_disk_model(directory)
    card_path = directory / "model_card.json"
    card = json.loads(card_path.read_text())
    if block is not None:
        card["postprocess"] = block
    card_path.write_text(json.dumps(card))
    return directory


def test_settings_are_validated():
    with pytest.raises(ValueError):
        Postprocess(0.0, None)
    with pytest.raises(ValueError):
        Postprocess(0.5, -0.1)
    assert Postprocess(0.3, 0.0).with_overrides(None, 0.2) == Postprocess(0.3, 0.2)
    assert RAW_POSTPROCESS.with_overrides(0.4) == Postprocess(0.4, None)


def test_card_block_and_overrides(tmp_path):
    plain = card_with_postprocess(tmp_path / "plain", None)
    tuned = card_with_postprocess(tmp_path / "tuned", {"threshold": 0.25, "box_margin": 0.05})
    assert load_model_card(plain).postprocess == RAW_POSTPROCESS
    assert load_model_card(tuned).postprocess == Postprocess(0.25, 0.05)
    assert postprocess_in_use(tuned, box_margin=0.0) == Postprocess(0.25, 0.0)
    assert postprocess_in_use(tmp_path / "no_card_here", 0.4) == Postprocess(0.4, None)
    broken = card_with_postprocess(tmp_path / "broken", {"threshold": 2.0})
    with pytest.raises(ModelCardError):
        load_model_card(broken)


def test_node_parameters_override_the_card(tmp_path):
    tuned = str(card_with_postprocess(tmp_path / "tuned", {"threshold": 0.25, "box_margin": 0.05}))
    assert validate({"model": tuned}).postprocess() == Postprocess(0.25, 0.05)  # 0 / -1: the card's
    assert validate({"model": tuned, "threshold": 0.6}).postprocess() == Postprocess(0.6, 0.05)
    assert validate({"model": tuned, "box_margin": 0.0}).postprocess() == Postprocess(0.25, 0.0)
    with pytest.raises(ConfigError):
        validate({"model": tuned, "box_margin": -0.5})
    with pytest.raises(ConfigError):
        validate({"model": tuned, "threshold": 1.0})


def test_keep_map_uses_pixel_centres():
    keep = box_keep_map((2.5, 1.0, 3.0, 2.0), CropRect(0, 0, 8, 4), 0.0, (8, 4))
    assert np.nonzero(keep.any(0))[0].tolist() == [2, 3, 4]  # centres 2.5, 3.5, 4.5 < 5.5
    assert np.nonzero(keep.any(1))[0].tolist() == [1, 2]
    grown = box_keep_map((2.5, 1.0, 3.0, 2.0), CropRect(0, 0, 8, 4), 0.5, (8, 4))  # +1.5 px, +1 px
    assert np.nonzero(grown.any(0))[0].tolist() == [1, 2, 3, 4, 5, 6]  # x in [1.0, 7.0)
    assert np.nonzero(grown.any(1))[0].tolist() == [0, 1, 2, 3]


def test_bundled_model_masks_stay_in_the_box():
    """The real default model on a real image: with margin 0 nothing outside the box is object."""
    from picosam3_ros.backends import BackendConfig, create_backend

    rgb = cv2.cvtColor(cv2.imread(str(DEMO_IMAGE)), cv2.COLOR_BGR2RGB)
    height, width = rgb.shape[:2]
    backend = create_backend("onnx", BackendConfig(threads=1))
    box = (width * 0.3, height * 0.25, width * 0.35, height * 0.2)  # wide: the square crop sticks out
    prompts = [Prompt(1, box)]
    raw = segment_frame(backend, rgb, prompts, Postprocess(0.2))[0]
    clipped = segment_frame(backend, rgb, prompts, Postprocess(0.2, 0.0))[0]
    assert raw.status == clipped.status == Status.OK
    keep = box_keep_map(box, clipped.crop, 0.0, (clipped.crop.width, clipped.crop.height))
    assert clipped.crop_mask[~keep].max() == 0
    assert raw.crop_mask[~keep].max() == 255  # the network does reach outside the box here
    np.testing.assert_array_equal(clipped.crop_mask, np.where(keep, raw.crop_mask, 0))


def test_node_uses_the_cards_box_clip(tmp_path):
    """The real node: the card asks for the clip, every published mask is clipped exactly."""
    from sensor_msgs.msg import Image

    from picosam3_msgs.msg import RoiPromptArray, SegmentationArray
    from picosam3_ros.core.image_conversion import fill_image

    model = card_with_postprocess(tmp_path / "model", {"threshold": 0.5, "box_margin": 0.0})
    boxes = {1: (40, 100, 160, 40), 2: (220, 30, 30, 150)}  # wide and tall: the disk leaves the box
    frame_id = f"camera_{uuid.uuid4().hex[:8]}"
    params = {"model": str(model), "camera": "none", "backend": "onnx"}
    with sensor_node_and_client(DOMAIN, params, tmp_path / "node.log") as (proc, client):
        segs = client.collect(SegmentationArray, "segmentations")
        image_pub = client.node.create_publisher(Image, "image", 10)
        prompt_pub = client.node.create_publisher(RoiPromptArray, "prompts", 10)
        array = prompt_array(boxes, frame_id)
        image = Image()
        image.header.frame_id = frame_id
        fill_image(image, np.zeros((HEIGHT, WIDTH, 3), np.uint8), "rgb8")

        def mine():
            return [m for m in segs if m.header.frame_id == frame_id and len(m.segmentations) == 2]

        for _ in range(300):  # discovery takes a while on a loaded machine
            prompt_pub.publish(array)
            image_pub.publish(image)
            if client.wait_for(lambda: bool(mine()), timeout=0.2, proc=proc) or proc.poll() is not None:
                break
        with client.lock:
            got = mine()
        assert got, (tmp_path / "node.log").read_text()[-2000:]
    for seg in got[0].segmentations:
        box = boxes[seg.prompt_id]
        rect = crop_rect_for_box(box, (WIDTH, HEIGHT))
        expected, _ = mask_from_logits(disk_logits(), rect, 0.5, box, 0.0)
        unclipped, _ = mask_from_logits(disk_logits(), rect, 0.5)
        mask = np.frombuffer(bytes(seg.mask.data), np.uint8).reshape(seg.mask.height, seg.mask.width)
        np.testing.assert_array_equal(mask, expected)
        assert (unclipped > 0).sum() > (expected > 0).sum()  # the clip did remove something
