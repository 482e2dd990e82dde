"""Video sets through coco_to_bag and bag_eval --follow / --prompt-every, on the DAVIS fixture frames.

A two-video COCO set is built from test/fixtures/davis (ATTRIBUTION.md): `scooter-black` frames
0-7 and, as a second sequence, frames 8-15. Its images are listed out of order in the JSON:
coco_to_bag must write them sequence by sequence, with one prompt id per sequence.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from picosam3_ros.evaluation.bag_eval import main as bag_eval_main
from picosam3_ros.evaluation.bag_io import COMPRESSED_IMAGE_TYPE, BagReader, prompts_from_msg
from picosam3_ros.evaluation.coco_to_bag import main as coco_to_bag_main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "davis"
SEQUENCES = {"scooter-a": range(0, 8), "scooter-b": range(8, 16)}
TOPICS = ["--image-topic", "/image", "--prompt-topic", "/prompts", "--gt-topic", "/ground_truth", "--quiet"]


@pytest.fixture(scope="module")
def video_bag(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("video")
    images, annotations = [], []
    for s, (sequence, frames) in enumerate(SEQUENCES.items()):
        for n, k in enumerate(frames):
            image_id = 1000 * (s + 1) + n
            name = f"scooter-black_{k:05d}.jpg"
            gt = cv2.imread(str(FIXTURES / name.replace(".jpg", ".png")), cv2.IMREAD_GRAYSCALE) > 0
            rle = mask_utils.encode(np.asfortranarray(gt.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            images.append({"id": image_id, "file_name": name, "width": 427, "height": 240,
                           "davis_sequence": sequence, "frame": n})
            annotations.append({"id": 9_000_000_000 + image_id, "image_id": image_id, "category_id": 1,
                                "segmentation": rle, "area": float(gt.sum()), "iscrowd": 0,
                                "bbox": [float(v) for v in mask_utils.toBbox(rle)]})
    images = images[::-1]  # out of order: coco_to_bag sorts a video set by sequence and frame
    (root / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}))
    bag = root / "bag"
    assert coco_to_bag_main([str(root / "instances.json"), str(FIXTURES), str(bag), "--rate", "24",
                             "--encoding", "jpeg"]) == 0
    return bag


def test_coco_to_bag_writes_a_video_set_in_order_with_one_prompt_id_per_sequence(video_bag):
    with BagReader(video_bag) as reader:
        assert reader.topics()["/image"] == COMPRESSED_IMAGE_TYPE
        messages = list(reader.messages(["/prompts", "/image"]))
    frames = [m.msg for m in messages if m.topic == "/image"]
    prompt_sets = [prompts_from_msg(m.msg, m.msgtype) for m in messages if m.topic == "/prompts"]
    expected_files = [f"scooter-black_{k:05d}.jpg" for frames_ in SEQUENCES.values() for k in frames_]
    # The original JPEG bytes, in sequence order (no second encoding).
    assert [bytes(f.data) for f in frames] == [(FIXTURES / name).read_bytes() for name in expected_files]
    ids = [[p.id for p in s] for s in prompt_sets]
    assert len(ids) == 16 and all(len(i) == 1 for i in ids)
    assert len({i[0] for i in ids[:8]}) == 1 and len({i[0] for i in ids[8:]}) == 1 and ids[0] != ids[8]
    # Each frame still carries its own ground-truth box.
    assert prompt_sets[0][0].box != prompt_sets[7][0].box


def run_bag_eval(bag: Path, tmp: Path, *extra: str) -> dict:
    out = tmp / f"report_{len(list(tmp.iterdir()))}.json"
    assert bag_eval_main([str(bag), *TOPICS, "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_prompt_every_thins_the_prompt_messages_like_a_slow_detector(video_bag, tmp_path):
    every_frame = run_bag_eval(video_bag, tmp_path)
    assert every_frame["prompt_messages_used"] == 16
    first_boxes = run_bag_eval(video_bag, tmp_path, "--prompt-every", "0")
    assert first_boxes["prompt_messages"] == 16 and first_boxes["prompt_messages_used"] == 2
    every4 = run_bag_eval(video_bag, tmp_path, "--prompt-every", "4")
    assert every4["prompt_messages_used"] == 4  # frames 0 and 4 of each sequence
    assert every_frame["miou_full"] > every4["miou_full"] > first_boxes["miou_full"]


def test_bag_eval_follow_on_both_backends(video_bag, tmp_path):
    held = run_bag_eval(video_bag, tmp_path, "--prompt-every", "0")
    followed = run_bag_eval(video_bag, tmp_path, "--prompt-every", "0", "--follow")
    assert followed["instances"] == 16 and followed["follow"]["settings"]["centre_gain"] == 1.0
    assert followed["miou_full"] >= held["miou_full"] + 0.1, (followed["miou_full"], held["miou_full"])
    sensor = run_bag_eval(video_bag, tmp_path, "--prompt-every", "0", "--follow", "--backend", "imx500",
                          "--roi-apply-delay", "2")
    # Every frame shown once with the lag in effect: each sequence's new prompt waits 3 frames for its
    # ROI (scored as empty masks, every prompt is scored on every frame), then the sensor serves it.
    assert sensor["instances"] == 16
    assert sensor["status_counts"] == {"NOT_SERVED": 6, "OK": 10}
    assert "3 frames after" in sensor["follow"]["frames"]
    waited = [row["iou_full"] for row in sensor["per_instance"]]
    assert waited[0:3] == [0.0] * 3 and waited[8:11] == [0.0] * 3
    # Once served, the followed sensor masks beat the held box on the same frames (the ends of the
    # sequences, where the scooter has left the held box).
    served = [k for k in range(16) if k % 8 >= 3]
    held_rows = [row["iou_full"] for row in held["per_instance"]]
    assert np.mean([waited[k] for k in served]) > np.mean([held_rows[k] for k in served]) + 0.05
    ends = (6, 7, 14, 15)
    assert np.mean([waited[k] for k in ends]) > np.mean([held_rows[k] for k in ends]) + 0.2


@pytest.mark.parametrize("extra, text", [
    (["--follow", "--segmentations-topic", "/segmentations"], "not with --segmentations-topic"),
    (["--prompt-every", "-1"], "--prompt-every must be >= 0"),
    (["--follow", "--protocols", "project,papers"], "no --protocols papers"),
])
def test_bad_follow_options_are_one_line_errors(video_bag, tmp_path, capsys, extra, text):
    assert bag_eval_main([str(video_bag), *TOPICS, "--json", str(tmp_path / "r.json"), *extra]) == 1
    assert text in capsys.readouterr().err
