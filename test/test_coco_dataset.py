"""The one COCO instance reader (picosam3_ros.core.coco_dataset): its rule, order, counts and
sizes, and that training, evaluation, calibration, teacher caching and the bag tools all see
exactly the instances it yields."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from test_evaluate import make_coco_fixture

from picosam3_ros.core.coco_dataset import CocoDataset, SkipCounts
from picosam3_ros.core.crop import MODEL_INPUT_SIZE
from picosam3_ros.core.metrics import box_mask_in_crop


@pytest.fixture
def awkward_dataset(tmp_path) -> tuple[Path, Path]:
    """The synthetic fixture (4 images: rectangle, disc, crowd, zero-width box each) plus an
    empty mask, a box outside its image and an image file that does not exist."""
    ann, images = make_coco_fixture(tmp_path / "coco", n_images=4)
    data = json.loads(ann.read_text())
    good = data["annotations"][0]
    empty = mask_utils.encode(np.zeros((120, 160), np.uint8, order="F"))
    empty["counts"] = empty["counts"].decode()
    data["annotations"] += [
        {**good, "id": 900001, "segmentation": empty},
        {**good, "id": 900002, "bbox": [500.0, 10.0, 20.0, 20.0]},
        {**good, "id": 900003, "image_id": 99},
        {**good, "id": 900004, "image_id": 99, "iscrowd": 1},
    ]
    data["images"].append({"id": 99, "file_name": "missing.png", "width": 160, "height": 120})
    ann.write_text(json.dumps(data))
    return ann, images


def expected_usable(ann: Path) -> list[int]:
    data = json.loads(ann.read_text())
    return [a["id"] for a in sorted(data["annotations"], key=lambda a: (a["image_id"], a["id"]))
            if not a["iscrowd"] and a["bbox"][2] >= 1 and a["id"] < 900000]


def test_the_rule_the_order_the_counts_and_the_size(awkward_dataset):
    ann, images = awkward_dataset
    skipped = SkipCounts()
    pairs = list(CocoDataset(ann, images).instances(skipped=skipped))
    assert [inst.annotation_id for _, inst in pairs] == expected_usable(ann) and len(pairs) == 8
    assert skipped == SkipCounts(crowd=4, degenerate_box=5, empty_mask=1, missing_image=2)
    for rgb, inst in pairs:
        assert inst.mask.shape == rgb.shape[:2] and inst.area == int(inst.mask.sum()) > 0
    assert [inst.annotation_id for _, inst in CocoDataset(ann, images).instances(limit=3)] == \
        expected_usable(ann)[:3]
    groups = list(CocoDataset(ann, images).image_groups())
    assert [g[0] for g in groups] == [1, 2, 3, 4]
    assert [inst.annotation_id for g in groups for inst in g[2]] == expected_usable(ann)
    assert all(inst.image_id == image_id for image_id, _, found in groups for inst in found)


def test_every_consumer_sees_the_same_instances(awkward_dataset, tmp_path):
    from picosam3_train.data import InstanceStore
    from picosam3_train.evaluate import iter_eval_images
    from picosam3_train.quantize import calibration_crops
    from picosam3_train.teachers.base import Teacher, TeacherOutput, standard_rect
    from picosam3_train.teachers.cache import build_cache

    class BoxTeacher(Teacher):
        """A teacher that answers the prompt box itself."""

        name = "box"

        def predict(self, image_rgb, box_xywh):
            box = box_mask_in_crop(box_xywh, standard_rect(image_rgb, box_xywh)).astype(np.float32)
            return TeacherOutput(box, 1.0)

    ann, images = awkward_dataset
    usable = expected_usable(ann)
    dataset = CocoDataset(ann, images)
    areas = {inst.annotation_id: inst.area for _, inst in dataset.instances()}

    store = InstanceStore.build(ann, images, tmp_path / "store", "standard", quiet=True)
    assert list(store.ann_ids) == usable
    stats = store.stats
    assert (stats.crowd_skipped, stats.degenerate_skipped, stats.missing_images) == (4, 6, 2)
    assert [float(a) for a in store.areas] == [float(areas[i]) for i in usable]

    skipped: dict[str, int] = {}
    eval_images = list(iter_eval_images(ann, images, skipped=skipped))
    assert [a for image in eval_images for a in image.ann_ids] == usable
    assert skipped == {"crowd": 4, "degenerate_box": 5, "empty_mask": 1, "missing_image": 2}
    assert [a for image in eval_images for a in image.areas] == [float(areas[i]) for i in usable]

    cache = build_cache(BoxTeacher(), ann, images, tmp_path / "teacher")
    assert list(cache.ann_ids) == usable and cache.meta["skipped"]["empty_mask"] == 1

    side = MODEL_INPUT_SIZE
    assert calibration_crops(ann, images, count=100).shape == (len(usable), side, side, 3)
    # the bag tools stop at an unreadable image (a bag must not silently lose frames): the first 4
    in_frames = [inst.annotation_id for frame in dataset.frames(max_images=4) for inst in frame.instances]
    assert sorted(in_frames) == sorted(usable)


@pytest.mark.parametrize("num_shards", [1, 2, 3, 7])
def test_shards_are_contiguous_runs_that_add_up_to_the_whole_walk(awkward_dataset, num_shards):
    dataset = CocoDataset(*awkward_dataset)
    shards = [dataset.shard_images(i, num_shards) for i in range(num_shards)]
    assert sum(shards, []) == dataset.annotated_image_ids() == [1, 2, 3, 4, 99]
    with pytest.raises(ValueError):
        dataset.shard_images(num_shards, num_shards)
