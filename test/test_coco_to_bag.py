"""coco_to_bag: the COCO-to-bag round trip, and agreement of bag_eval with picosam3_train's evaluator.

The dataset is built here from the committed demo clip (real images): masks as
polygons with float boxes (the COCO case) and as compressed RLE (the clip's own).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from node_helpers import write_disk_model, write_red_model

from picosam3_ros.core.clip import ANNOTATIONS_NAME, DEFAULT_CLIP_DIR
from picosam3_ros.core.coco_dataset import CocoDataset, decode_segmentation
from picosam3_ros.core.image_conversion import image_array
from picosam3_ros.evaluation.bag_io import PROMPT_ARRAY_TYPE, BagReader, label_array, stamp_ns
from picosam3_ros.evaluation.coco_to_bag import main as coco_to_bag_main

N_IMAGES = 4


@pytest.fixture(scope="module")
def polygon_dataset(tmp_path_factory) -> tuple[Path, Path]:
    """The first clip images, their instances as polygons with float COCO boxes (and one crowd)."""
    root = tmp_path_factory.mktemp("coco")
    clip = json.loads((DEFAULT_CLIP_DIR / ANNOTATIONS_NAME).read_text())
    images = clip["images"][:N_IMAGES]
    ids = {img["id"] for img in images}
    annotations = []
    for ann in clip["annotations"]:
        if ann["image_id"] not in ids:
            continue
        info = next(img for img in images if img["id"] == ann["image_id"])
        mask = decode_segmentation(ann["segmentation"], info["height"], info["width"]).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        polygons = [(c.reshape(-1, 2) + 0.5).ravel().tolist() for c in contours if len(c) >= 3]
        points = np.concatenate([np.asarray(p).reshape(-1, 2) for p in polygons])
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
        annotations.append(
            {
                "id": ann["id"],
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "segmentation": polygons,
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],  # float, like COCO
                "area": float(mask.sum()),
                "iscrowd": 0,
            }
        )
    crowd = dict(annotations[0], id=999_999, iscrowd=1)
    annotations.append(crowd)  # crowd regions are not instances: never a prompt
    dataset = dict(clip, images=images, annotations=annotations)
    (root / "instances.json").write_text(json.dumps(dataset))
    image_dir = root / "images"
    image_dir.mkdir()
    for img in images:
        shutil.copy(DEFAULT_CLIP_DIR / img["file_name"], image_dir / img["file_name"])
    return root / "instances.json", image_dir


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip(tmp_path, polygon_dataset, storage):
    annotations, image_dir = polygon_dataset
    bag = tmp_path / "bag"
    assert (
        coco_to_bag_main([str(annotations), str(image_dir), str(bag), "--rate", "5", "--storage", storage])
        == 0
    )
    dataset = CocoDataset(annotations, image_dir)
    expected = list(dataset.frames())
    assert len(expected) == N_IMAGES
    with BagReader(bag) as reader:
        assert reader.topics() == {
            "/prompts": PROMPT_ARRAY_TYPE,
            "/image": "sensor_msgs/msg/Image",
            "/ground_truth": "sensor_msgs/msg/Image",
        }
        messages = list(reader.messages(["/prompts", "/image", "/ground_truth"]))
    assert [m.topic for m in messages] == ["/prompts", "/image", "/ground_truth"] * N_IMAGES
    for i, frame in enumerate(expected):
        prompts, image, gt = (m.msg for m in messages[3 * i : 3 * i + 3])
        # Stamps: 5 Hz; the prompts are logged before their frame; GT carries the frame's stamp.
        assert stamp_ns(image.header) - stamp_ns(messages[1].msg.header) == i * 200_000_000
        assert messages[3 * i].log_time_ns < messages[3 * i + 1].log_time_ns
        assert stamp_ns(gt.header) == stamp_ns(image.header)
        assert image.encoding == "rgb8" and gt.encoding == "mono8"
        bgr = cv2.imread(str(image_dir / frame.file_name))
        np.testing.assert_array_equal(image_array(image), bgr[:, :, ::-1])
        ids = [p.id for p in prompts.prompts]
        assert ids == [inst.annotation_id for inst in frame.instances]
        assert 999_999 not in ids
        areas = [inst.area for inst in frame.instances]
        assert areas == sorted(areas, reverse=True)  # larger first: smaller ones win overlaps
        labels = label_array(gt)
        for k, (prompt, inst) in enumerate(zip(prompts.prompts, frame.instances), start=1):
            x, y, w, h = inst.bbox
            # The integer box is the float COCO box rounded to whole pixels.
            assert abs(prompt.roi.x_offset - x) <= 0.5 and abs(prompt.roi.y_offset - y) <= 0.5
            assert abs(prompt.roi.x_offset + prompt.roi.width - (x + w)) <= 0.5
            assert abs(prompt.roi.y_offset + prompt.roi.height - (y + h)) <= 0.5
            later = np.zeros_like(inst.mask)
            for other in frame.instances[k:]:
                later |= other.mask
            np.testing.assert_array_equal(labels[inst.mask & ~later], k)
        assert (labels[~np.any([inst.mask for inst in frame.instances], axis=0)] == 0).all()


def test_bytes_deserialize_with_rclpy(tmp_path, polygon_dataset):
    """The bag's CDR bytes are what rclpy would have recorded (rosbags and rclpy agree)."""
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader

    from picosam3_msgs.msg import RoiPromptArray

    annotations, image_dir = polygon_dataset
    bag = tmp_path / "bag"
    assert coco_to_bag_main([str(annotations), str(image_dir), str(bag), "--max-images", "1"]) == 0
    with Reader(bag) as reader:
        connection = next(c for c in reader.connections if c.topic == "/prompts")
        _, _, raw = next(reader.messages(connections=[connection]))
    msg = deserialize_message(bytes(raw), RoiPromptArray)
    frame = next(CocoDataset(annotations, image_dir).frames())
    assert [p.id for p in msg.prompts] == [inst.annotation_id for inst in frame.instances]
    assert [p.roi.width for p in msg.prompts] == [inst.box[2] for inst in frame.instances]


def _evaluator_miou(annotations: Path, image_dir: Path, model_dir: Path, cache: Path) -> tuple[float, int]:
    """picosam3_train's evaluation data (its standard crops and ground truth) through the same network."""
    from picosam3_ros.backends import BackendConfig, create_backend
    from picosam3_ros.core.metrics import mask_iou
    from picosam3_train.data import InstanceStore

    store = InstanceStore.build(annotations, image_dir, cache, kind="standard", quiet=True)
    backend = create_backend("onnx", BackendConfig(model_dir=model_dir))
    logits = backend.infer(np.asarray(store.images))
    ious = [mask_iou(logits[i] > 0, np.asarray(store.masks[i]) >= 128) for i in range(len(logits))]
    return float(np.mean(ious)), len(ious)


@pytest.mark.parametrize("model", ["red", "disk"])
def test_bag_eval_agrees_with_the_trainers_evaluator(tmp_path, polygon_dataset, model):
    from picosam3_ros.evaluation.bag_eval import main as bag_eval_main

    annotations, image_dir = polygon_dataset
    model_dir = write_red_model(tmp_path / "m") if model == "red" else write_disk_model(tmp_path / "m")
    bag = tmp_path / "bag"
    assert coco_to_bag_main([str(annotations), str(image_dir), str(bag)]) == 0
    out = tmp_path / "eval.json"
    assert (
        bag_eval_main(
            [
                str(bag),
                "--image-topic",
                "/image",
                "--prompt-topic",
                "/prompts",
                "--gt-topic",
                "/ground_truth",
                "--model",
                str(model_dir),
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    reference, count = _evaluator_miou(annotations, image_dir, model_dir, tmp_path / "cache")
    assert report["instances"] == count
    assert abs(report["miou_crop"] - reference) <= 0.005, (report["miou_crop"], reference)
    print(f"{model}: bag_eval {report['miou_crop']:.4f} vs evaluator {reference:.4f} on {count} instances")


def test_bad_dataset_inputs(tmp_path, polygon_dataset, capsys):
    annotations, image_dir = polygon_dataset
    assert coco_to_bag_main([str(tmp_path / "none.json"), str(image_dir), str(tmp_path / "b")]) == 1
    assert "no annotation file" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert coco_to_bag_main([str(tmp_path / "bad.json"), str(image_dir), str(tmp_path / "b")]) == 1
    assert "not a COCO-format JSON" in capsys.readouterr().err
    assert coco_to_bag_main([str(annotations), str(tmp_path / "nodir"), str(tmp_path / "b")]) == 1
    assert "no image directory" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    assert coco_to_bag_main([str(annotations), str(image_dir), str(tmp_path / "exists")]) == 1
    assert "already exists" in capsys.readouterr().err


def test_annotation_ids_beyond_uint32_become_prompt_ids(tmp_path, polygon_dataset):
    # DAVIS 2016 here offsets its ids by 9e9 (past RoiPrompt.id's uint32): the bag keeps their low 32 bits.
    annotations, image_dir = polygon_dataset
    dataset = json.loads(annotations.read_text())
    offset = 9_000_000_000
    for image in dataset["images"]:
        image["id"] += offset
    for ann in dataset["annotations"]:
        ann["id"] += offset
        ann["image_id"] += offset
    shifted = tmp_path / "shifted.json"
    shifted.write_text(json.dumps(dataset))
    bag = tmp_path / "bag"
    assert coco_to_bag_main([str(shifted), str(image_dir), str(bag)]) == 0
    with BagReader(bag) as reader:
        arrays = [m.msg for m in reader.messages(["/prompts"])]
    expected = [[inst.annotation_id & 0xFFFFFFFF for inst in frame.instances]
                for frame in CocoDataset(shifted, image_dir).frames()]
    assert [[p.id for p in a.prompts] for a in arrays] == expected
    assert all(0 <= i < 2**32 for ids in expected for i in ids) and expected[0]
