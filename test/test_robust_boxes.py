"""Masks for the boxes a robot gives: the clip that grows on evidence, crowding counts, the
detector-like training boxes, the calibration split and fine-tuning from the shipped ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from picosam3_ros.core.crop import CropRect
from picosam3_ros.core.metrics import crowding_bucket, objects_in_crop
from picosam3_ros.core.postprocess import Postprocess, grid_mask, mask_from_logits, postprocess_from_card

REPO = Path(__file__).resolve().parent.parent
SHIPPED_ONNX = REPO / "picosam3_ros" / "models" / "picosam3_fp32.onnx"


def object_beyond_the_box() -> tuple[np.ndarray, tuple[float, float, float, float], CropRect]:
    """Logits on a 40x40 crop: an object over columns 5-29 (confident, +4), a box that stops at
    column 20, and a confident neighbour at columns 34-38 that does not touch the object."""
    logits = np.full((40, 40), -4.0, np.float32)
    logits[10:30, 5:30] = 4.0
    logits[10:30, 34:39] = 4.0
    return logits, (5.0, 10.0, 15.0, 20.0), CropRect(0, 0, 40, 40)


def test_the_clip_grows_where_the_object_goes_on_and_not_into_a_neighbour():
    logits, box, rect = object_beyond_the_box()
    hard = grid_mask(logits, rect, 0.5, box, 0.0)
    grown = grid_mask(logits, rect, 0.5, box, 0.0, grow_threshold=0.9)
    assert hard[:, 20:].sum() == 0  # the hard clip cuts at the box edge
    assert grown[10:30, 5:30].all()  # the object continues beyond the box: kept
    assert not grown[:, 30:].any()  # the confident neighbour does not touch it: still cut
    # Growth asks for confidence: a weak continuation (p = 0.73 < 0.9) stays cut.
    weak = logits.copy()
    weak[10:30, 20:30] = 1.0
    assert grid_mask(weak, rect, 0.5, box, 0.0, grow_threshold=0.9)[:, 20:].sum() == 0
    # The crop-resolution step does the same.
    mask, _ = mask_from_logits(logits, rect, 0.5, box, 0.0, grow_threshold=0.9)
    assert (mask[10:30, 5:30] == 255).all() and not mask[:, 30:].any()


def test_growth_is_read_from_the_card_and_checked():
    post = postprocess_from_card({"threshold": 0.3, "box_margin": 0.0, "grow_threshold": 0.8})
    assert post == Postprocess(0.3, 0.0, 0.8)
    assert post.with_overrides(box_margin=0.1).grow_threshold == 0.8  # a node override keeps growth
    assert postprocess_from_card({"threshold": 0.3, "box_margin": 0.0}).grow_threshold is None
    with pytest.raises(ValueError, match="grow_threshold"):
        Postprocess(0.5, 0.0, 1.5)


def test_objects_in_crop_counts_boxes_at_least_half_inside():
    rect = CropRect(0, 0, 100, 100)
    boxes = [(10, 10, 50, 50), (80, 80, 40, 40), (70, 0, 40, 10), (200, 200, 5, 5), (0, 0, 100, 100)]
    # own box (index 0) is not counted; (80,80,40,40): 1/4 inside -> no; (70,0,40,10): 3/4 -> yes;
    # (200,200): outside; (0,0,100,100): all inside -> yes.
    assert objects_in_crop(rect, boxes, 0) == 2
    assert [crowding_bucket(n) for n in (0, 1, 2, 3, 7)] == ["0", "1-2", "1-2", "3+", "3+"]


def test_evaluate_reports_the_jitter_sweep_and_crowding(tmp_path):
    from test_evaluate import make_coco_fixture

    from picosam3_train import evaluate as ev

    ann, images = make_coco_fixture(tmp_path / "coco")
    out = tmp_path / "report"
    assert ev.main(["--dataset", f"{ann}:{images}", "--baselines", "box", "--protocols", "project",
                    "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["boxes"]) == ["gt", "jitter5", "jitter10", "jitter20"]  # the default sweep
    box = report["methods"]["box"]["variants"]
    sweep = [box[f"project/{name}"]["full_miou"] for name in report["boxes"]]
    assert sweep == sorted(sweep, reverse=True) and sweep[0] > sweep[-1] + 0.1  # noisier boxes score lower
    # Each fixture image holds a rectangle and a disc far apart: no crop shows another object.
    assert report["instances_by_crowding"] == {"0": 6, "1-2": 0, "3+": 0}
    assert box["project/gt"]["by_crowding"]["0"]["count"] == 6
    text = (out / "report.md").read_text()
    assert "## Box noise sweep" in text and "| gt | jitter5 | jitter10 | jitter20 |" in text
    assert "## By other objects in the crop" in text


def test_detector_like_boxes_vary_their_noise_and_crowded_crops_repeat(tmp_path):
    from test_evaluate import make_coco_fixture

    from picosam3_train.config import IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALE
    from picosam3_train.data import CropDataset, InstanceStore, sample_repeats

    ann, images = make_coco_fixture(tmp_path / "coco", n_images=2)
    store = InstanceStore.build(ann, images, tmp_path / "cache", "context", 64, quiet=True)
    plain = CropDataset([store], IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALE)
    assert len(plain) == len(store) == 4 and plain.crowding.tolist() == [0, 0, 0, 0]
    dataset = CropDataset([store], IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALE, box_jitter_max=0.25,
                          lag_prob=1.0, box_lag=0.1, scale_jitter=0.0)
    box = np.array([40.0, 40.0, 40.0, 40.0])
    centres = np.array([dataset.jitter_box(box, (200, 200))[:2] + 20 for _ in range(400)])
    widths = np.array([dataset.jitter_box(box, (200, 200))[2] for _ in range(400)])
    assert np.std(centres[:, 0] - 60) > 3.0  # the lag moves the whole box
    assert (widths < 36).mean() > 0.1 and (widths > 44).mean() > 0.1  # too small and too large both
    # Crowded crops repeat: up to crowd_oversample x for 3 or more other objects, once for none.
    assert sample_repeats(np.array([3, 0, 1, 5]), 4.0).tolist() == [4, 1, 2, 4]
    assert sample_repeats(np.array([3, 0, 1, 5]), 1.0).tolist() == [1, 1, 1, 1]


def test_the_calibration_split_is_whole_images_left_out_of_training(tmp_path):
    from picosam3_train import splits

    split = splits.load_split()
    assert split["count"] == len(split["image_ids"]) == 64
    assert split["source"].endswith("instances_train2017.json")
    source = REPO.parent / "shared" / "data" / split["source"]
    if not source.is_file():
        pytest.skip("../shared/data is not beside the repository")
    assert splits.choose_calibration_images(source, 64, 0) == split["image_ids"]  # reproducible
    fit = json.loads(splits.fit_annotation_file(source, tmp_path).read_text())
    calib_ann, _ = splits.calibration_dataset(source.parents[2], tmp_path)
    calib = json.loads(calib_ann.read_text())
    fit_ids = {img["id"] for img in fit["images"]}
    calib_ids = {img["id"] for img in calib["images"]}
    assert calib_ids == set(split["image_ids"]) and not fit_ids & calib_ids
    assert {a["image_id"] for a in fit["annotations"]} <= fit_ids
    everything = json.loads(source.read_text())["annotations"]
    assert len(fit["annotations"]) + len(calib["annotations"]) == len(everything)


def test_training_refuses_the_calibration_split():
    from picosam3_train.config import TrainConfig
    from picosam3_train.train import build_train_dataset

    with pytest.raises(ValueError, match="evaluation only"):
        build_train_dataset(TrainConfig(train_datasets=["calibration"]), quiet=True)


def test_the_shipped_onnx_becomes_a_checkpoint_with_the_same_output():
    import torch

    from picosam3_train.import_onnx import check, model_from_onnx

    frames = sorted((REPO / "test" / "fixtures" / "davis").rglob("*.jpg"))[:4]
    assert frames, "DAVIS fixture frames missing"
    import cv2

    from picosam3_ros.core.model_card import load_model_card

    spec = load_model_card(SHIPPED_ONNX.parent).input
    crops = np.stack([cv2.resize(cv2.imread(str(f))[:, :, ::-1], (96, 96)) for f in frames])
    batch = torch.from_numpy(spec.preprocess(crops))
    model = model_from_onnx(SHIPPED_ONNX, batch)
    assert check(model, SHIPPED_ONNX, batch) < 1e-4  # eval mode: the exported function exactly
    # Train mode normalises with the batch's own statistics, measured on this batch: still the same model.
    model.train()
    with torch.no_grad():
        train_out = model(batch)
    model.eval()
    with torch.no_grad():
        eval_out = model(batch)
    assert ((train_out > 0) == (eval_out > 0)).float().mean() > 0.97
