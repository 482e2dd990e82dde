"""The evaluator: per-instance IoU rules, baselines, batched predictors, reports and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from picosam3_ros.core import metrics
from picosam3_ros.core.crop import CropRect, crop_rect_for_box
from picosam3_train import evaluate as ev


def make_coco_fixture(root: Path, n_images: int = 3) -> tuple[Path, Path]:
    """Synthetic COCO dataset: per image a bright rectangle (mask = its box), a dark disc,
    a crowd annotation and a degenerate box (both must be skipped)."""
    rng = np.random.default_rng(0)
    image_dir = root / "images"
    image_dir.mkdir(parents=True)
    images, anns = [], []
    next_id = 1

    def add(image_id: int, mask: np.ndarray, bbox, crowd: int = 0) -> None:
        nonlocal next_id
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode()
        anns.append(
            {
                "id": next_id,
                "image_id": image_id,
                "category_id": 1,
                "segmentation": rle,
                "area": float(mask.sum()),
                "bbox": [float(v) for v in bbox],
                "iscrowd": crowd,
            }
        )
        next_id += 1

    for i in range(n_images):
        h, w = 120, 160
        image = (rng.normal(60, 8, (h, w, 3))).clip(0, 255).astype(np.uint8)
        x, y, bw, bh = 20 + 8 * i, 30, 50, 40
        image[y : y + bh, x : x + bw] = (220, 60, 60)
        rect_mask = np.zeros((h, w), np.uint8)
        rect_mask[y : y + bh, x : x + bw] = 1
        disc = np.zeros((h, w), np.uint8)
        cv2.circle(disc, (120, 80), 12 + i, 1, -1)
        image[disc.astype(bool)] = (20, 200, 40)
        cv2.imwrite(str(image_dir / f"{i:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": f"{i:03d}.png", "width": w, "height": h})
        add(i + 1, rect_mask, (x, y, bw, bh))
        ys, xs = np.nonzero(disc)
        add(i + 1, disc, (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
        add(i + 1, rect_mask, (x, y, bw, bh), crowd=1)
        add(i + 1, rect_mask, (x, y, 0.0, bh))
    ann_file = root / "instances_fixture.json"
    ann_file.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]})
    )
    return ann_file, image_dir


@pytest.fixture(scope="module")
def fixture_set(tmp_path_factory) -> tuple[Path, Path, ev.EvalSet]:
    ann, images = make_coco_fixture(tmp_path_factory.mktemp("coco"))
    return ann, images, ev.load_eval_set(ann, images)


def test_box_mask_in_crop_hand_computed():
    # Box (50, 20, 40, 30) in a 200x100 image: padded square side 48 around (70, 35)
    # -> crop rect (46, 11, 48, 48); at 96 px each source pixel is 2x2 crop pixels.
    rect = crop_rect_for_box((50, 20, 40, 30), (200, 100))
    assert rect == CropRect(46, 11, 48, 48)
    box = metrics.box_mask_in_crop((50, 20, 40, 30), rect)
    rows, cols = np.nonzero(box)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (8, 87, 18, 77)
    assert box.sum() == 80 * 60
    # GT = the left half of the box (x 50..69): IoU = 40*60 / 4800 = 0.5 exactly.
    gt_full = np.zeros((100, 200), np.uint8)
    gt_full[20:50, 50:70] = 1
    gt = metrics.gt_crop(gt_full, rect)
    assert metrics.crop_space_iou(np.where(box, 3.0, -3.0), gt) == pytest.approx(0.5)


def test_box_mask_outward_rounding_of_fractional_boxes():
    rect = CropRect(0, 0, 96, 96)
    box = metrics.box_mask_in_crop((10.2, 20.7, 5.1, 3.0), rect)  # touches x 10..15, y 20..23
    rows, cols = np.nonzero(box)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (10, 15, 20, 23)


def test_vectorised_iou_matches_per_instance_rule():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20, 96, 96)).astype(np.float32)
    gts = rng.random((20, 96, 96)) > 0.6
    logits[3] = -1.0  # empty prediction ...
    gts[3] = False  # ... and empty GT: union 0 counts 1
    gts[4] = False  # empty GT, non-empty prediction: 0
    batch = metrics.crop_space_ious(logits, gts)
    single = [metrics.crop_space_iou(logit, g) for logit, g in zip(logits, gts)]
    assert np.allclose(batch, single)
    assert batch[3] == 1.0 and batch[4] == 0.0


def test_full_resolution_fast_path_equals_paste_back(fixture_set):
    _, _, evalset = fixture_set
    rng = np.random.default_rng(2)
    for i in range(len(evalset)):
        logits = rng.normal(size=(96, 96)).astype(np.float32) + 2 * evalset.gt_crops[i] - 1
        rect = evalset.rects[i]
        full_gt = np.zeros((rect.y_end + 7, rect.x_end + 9), bool)
        full_gt[rect.y : rect.y_end, rect.x : rect.x_end] = evalset.gt_in_rect[i]
        full_gt[0, 0 : evalset.gt_outside[i]] = True  # the same count of GT pixels outside the crop
        assert ev._full_iou_in_rect(
            logits, rect, evalset.gt_in_rect[i], int(evalset.gt_outside[i])
        ) == pytest.approx(metrics.full_resolution_iou(logits, rect, full_gt))


def test_eval_set_skips_crowd_and_degenerate(fixture_set):
    _, _, evalset = fixture_set
    assert len(evalset) == 6
    assert evalset.skipped["crowd"] == 3 and evalset.skipped["degenerate_box"] == 3
    assert evalset.crops.shape == (6, 96, 96, 3) and evalset.crops.dtype == np.uint8
    assert set(evalset.size_classes()) <= {"small", "medium", "large"}


def test_perfect_empty_and_box_predictors(fixture_set):
    _, _, evalset = fixture_set

    def perfect(crops, idx):
        return np.where(evalset.gt_crops[idx], 5.0, -5.0).astype(np.float32)

    def empty(crops, idx):
        return np.full((len(idx), 96, 96), -1.0, np.float32)

    res = ev.evaluate_methods(
        {"perfect": perfect, "empty": empty, "box": ev.box_predictor(evalset)}, evalset, batch_size=4
    )
    sizes = evalset.size_classes()
    perfect_summary = res["perfect"].summary(sizes)
    assert perfect_summary["crop_miou"] == 1.0 and perfect_summary["mean_frac_iou_50_95"] == 1.0
    assert perfect_summary["full_miou"] > 0.95
    assert res["empty"].summary(sizes)["crop_miou"] == 0.0
    rect_instances = evalset.ann_ids % 4 == 1  # the rectangles: the box is the mask
    assert np.all(res["box"].crop_ious[rect_instances] == 1.0)
    disc = ~rect_instances  # a disc fills pi/4 of its box
    assert np.all((res["box"].crop_ious[disc] > 0.7) & (res["box"].crop_ious[disc] < 0.85))


def test_grabcut_finds_a_high_contrast_object(fixture_set):
    _, _, evalset = fixture_set
    result = ev.evaluate_predictor(ev.grabcut_predictor(evalset), evalset, "grabcut")
    assert result.crop_ious.mean() > 0.8


def test_torch_and_onnx_predictors_agree(fixture_set, tmp_path):
    torch = pytest.importorskip("torch")
    from picosam3_train.export import export_onnx

    _, _, evalset = fixture_set
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)
    )
    path = export_onnx(model, tmp_path / "tiny.onnx", verbose=False).path
    spec = ev.default_input_spec()
    a = ev.evaluate_predictor(ev.TorchPredictor(model, spec), evalset, batch_size=4)
    b = ev.evaluate_predictor(ev.OnnxPredictor(path, spec), evalset, batch_size=5)
    assert np.allclose(a.crop_ious, b.crop_ious, atol=1e-3)
    assert ev.quick_crop_miou(model, evalset, spec) == pytest.approx(a.crop_ious.mean())


def test_cli_writes_report_and_figures(fixture_set, tmp_path):
    ann, images, _ = fixture_set
    out = tmp_path / "report"
    assert ev.main(["--dataset", f"{ann}:{images}", "--baselines", "box,grabcut", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["instances"] == 6
    box = report["methods"]["box"]
    assert set(box) >= {"crop_miou", "full_miou", "mean_frac_iou_50_95", "by_size"}
    assert 0.85 < box["crop_miou"] < 0.95  # three exact rectangles (1.0) and three discs (~pi/4)
    assert "| box |" in (out / "report.md").read_text()
    for name in ("size_bars.png", "examples_box.png", "examples_grabcut.png"):
        assert cv2.imread(str(out / name)) is not None
