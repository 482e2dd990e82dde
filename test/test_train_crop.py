"""The one crop rule (picosam3_ros.core.crop) on hand-computed cases, and the training sampler's
use of it: an un-augmented training sample equals crop_and_resize on the full image."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from picosam3_ros.core.coco_dataset import read_rgb
from picosam3_ros.core.crop import (
    CropRect,
    InvalidRoiError,
    crop_and_resize,
    crop_rect_for_box,
    resize_to_crop,
)
from picosam3_train.config import IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALE
from picosam3_train.data import CropDataset, InstanceStore, TeacherEntry

FIXTURES = Path(__file__).parent / "fixtures" / "train"


@pytest.mark.parametrize("box, image_size, expected", [
    # side = 1.2 * max(w, h) = 24 around centre (50, 35): [38, 62) x [23, 47)
    ((40, 30, 20, 10), (200, 100), (38, 23, 24, 24)),
    # tall box: side = 1.2 * 50 = 60 around (105, 75): [75, 135) x [45, 105)
    ((100, 50, 10, 50), (640, 480), (75, 45, 60, 60)),
    # top-left corner: square [-1, 11) around (5, 5) shrinks symmetrically to [0, 10)
    ((0, 0, 10, 10), (100, 100), (0, 0, 10, 10)),
    # bottom-right corner: centre (95, 97.5), half-side 6 -> half 5 in x, 2.5 in y: the box itself
    ((90, 95, 10, 5), (100, 100), (90, 95, 10, 5)),
    # near the left edge only: centre (8, 50), half-side 12 -> x half 8: [0, 16), y [38, 62)
    ((3, 40, 10, 20), (100, 100), (0, 38, 16, 24)),
    # box poking out of the frame: its visible part (0, 0, 40, 40) is what gets padded
    ((-20, -20, 60, 60), (640, 480), (0, 0, 40, 40)),
    # fractional box: side 8.4 around (14, 21.75): [9.8, 18.2) x [17.55, 25.95) -> outward rounding
    ((10.5, 20.25, 7, 3), (640, 480), (9, 17, 10, 9)),
    # box larger than the image: the crop is the whole frame
    ((-50, -50, 400, 300), (320, 240), (0, 0, 320, 240)),
])
def test_crop_rect_hand_computed(box, image_size, expected):
    assert crop_rect_for_box(box, image_size).as_xywh() == expected


@pytest.mark.parametrize("box", [(10, 10, 0, 5), (10, 10, 5, -1), (math.nan, 0, 5, 5), (0, 0, math.inf, 5),
                                 (500, 500, 10, 10), (1, 2, 3)])
def test_invalid_boxes_raise(box):
    with pytest.raises(InvalidRoiError):
        crop_rect_for_box(box, (100, 100))


def test_crop_and_resize_and_back_to_the_crop():
    image = np.zeros((100, 200), np.uint8)
    image[23:47, 38:50] = 255  # left half of the crop of the first case
    rect = CropRect(38, 23, 24, 24)
    crop = crop_and_resize(image, rect, interpolation=cv2.INTER_NEAREST)
    assert crop.shape == (96, 96)
    assert (crop[:, :48] == 255).all() and (crop[:, 48:] == 0).all()
    frame = np.zeros((100, 200), np.float32)
    frame[rect.y : rect.y_end, rect.x : rect.x_end] = resize_to_crop(crop.astype(np.float32) / 255.0, rect)
    assert frame[30, 40] == pytest.approx(1.0) and frame[30, 60] == pytest.approx(0.0)
    assert frame[:, :38].max() == 0.0


@pytest.fixture(scope="module")
def train_store(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return InstanceStore.build(FIXTURES / "instances_fixture_train.json", FIXTURES / "images", cache,
                               "context", 192, quiet=True)


def test_unaugmented_sample_matches_the_crop_rule(train_store):
    dataset = CropDataset([train_store], IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALE, augment=False)
    from pycocotools.coco import COCO  # an independent reader of the same file

    coco = COCO(str(FIXTURES / "instances_fixture_train.json"))
    for i in range(len(dataset)):
        sample = dataset[i]
        ann = coco.loadAnns([int(train_store.ann_ids[i])])[0]
        info = coco.loadImgs(ann["image_id"])[0]
        rgb = read_rgb(FIXTURES / "images" / info["file_name"])
        rect = crop_rect_for_box(ann["bbox"], (rgb.shape[1], rgb.shape[0]))
        expected_image = crop_and_resize(rgb, rect).astype(np.float32)
        expected_mask = crop_and_resize(coco.annToMask(ann), rect, interpolation=cv2.INTER_NEAREST) > 0
        image = sample["image"].transpose(1, 2, 0) * np.float32(IMAGENET_STD) + np.float32(IMAGENET_MEAN)
        image = image * 255
        assert np.abs(image - expected_image).mean() < 8.0
        mask = sample["mask"][0] > 0
        iou = (mask & expected_mask).sum() / max(1, (mask | expected_mask).sum())
        assert iou > 0.85, (i, iou)


def test_jittered_teacher_is_warped_with_the_crop(train_store):
    """A teacher equal to the GT in the standard frame must still equal the GT after jitter."""
    clean = CropDataset([train_store], IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALE, augment=False)
    soft = np.stack([(clean[i]["mask"][0] * 255).astype(np.uint8) for i in range(len(clean))])
    entry = TeacherEntry(soft, np.ones(len(soft), np.float32),
                         {int(a): i for i, a in enumerate(train_store.ann_ids)})
    dataset = CropDataset([train_store], IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALE, augment=True,
                          box_jitter=0.15, scale_jitter=0.25, color_jitter=0.0,
                          teachers={train_store.name: entry}, seed=3)
    ious = []
    for _ in range(3):
        for i in range(len(dataset)):
            s = dataset[i]
            valid = s["teacher_valid"][0] > 0
            assert valid.mean() > 0.2 and s["teacher_score"] == 1.0
            t, g = (s["teacher"][0] > 0.5) & valid, (s["mask"][0] > 0) & valid
            ious.append((t & g).sum() / max(1, (t | g).sum()))
    assert np.mean(ious) > 0.85


def test_degenerate_and_crowd_annotations_are_skipped_and_counted(tmp_path):
    data = json.loads((FIXTURES / "instances_fixture_train.json").read_text())
    good = dict(data["annotations"][0])
    data["annotations"].append({**good, "id": 990001, "bbox": [10.0, 10.0, 0.0, 20.0]})  # zero width
    data["annotations"].append({**good, "id": 990002, "bbox": [10.0, 10.0, 0.3, 20.0]})  # < 1 px
    data["annotations"].append({**good, "id": 990003, "iscrowd": 1})
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(json.dumps(data))
    store = InstanceStore.build(ann_file, FIXTURES / "images", tmp_path / "cache", "context", 64, quiet=True)
    assert store.stats.degenerate_skipped == 2
    assert store.stats.crowd_skipped == 1
    assert len(store) == 8
    assert "2 degenerate" in store.stats.summary("x")
