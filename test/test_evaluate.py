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
from picosam3_ros.core.postprocess import RAW_POSTPROCESS, Postprocess, grid_mask, mask_from_logits
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
def fixture_data(tmp_path_factory) -> tuple[Path, Path]:
    return make_coco_fixture(tmp_path_factory.mktemp("coco"))


def gt_crops_in_order(ann: Path, images: Path, border: str = "shrink") -> list[np.ndarray]:
    """Each usable instance's GT on the crop grid, in the evaluator's order."""
    out = []
    for image in ev.iter_eval_images(ann, images):
        size = image.rgb.shape[1], image.rgb.shape[0]
        for box, mask in zip(image.boxes, image.masks):
            out.append(metrics.gt_crop(mask, crop_rect_for_box(box, size, border=border)))
    return out


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


def test_box_rasterised_by_pixel_centres():
    rect = CropRect(0, 0, 96, 96)
    box = metrics.box_mask_in_crop((10.2, 20.7, 5.1, 3.0), rect)  # centres x 10.5..14.5, y 21.5..23.5
    rows, cols = np.nonzero(box)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (10, 14, 21, 23)


def test_jitter_box_is_seeded_and_moves_each_side():
    box = (100.0, 50.0, 40.0, 20.0)
    a = metrics.jitter_box(box, 0.05, np.random.default_rng([0, 7]))
    b = metrics.jitter_box(box, 0.05, np.random.default_rng([0, 7]))
    assert a == b and a != box
    sides = np.array([[*metrics.jitter_box(box, 0.05, np.random.default_rng([0, i]))] for i in range(2000)])
    left_shift = (sides[:, 0] - box[0]) / box[2]
    bottom_shift = (sides[:, 1] + sides[:, 3] - box[1] - box[3]) / box[3]
    assert abs(left_shift.std() - 0.05) < 0.005 and abs(bottom_shift.std() - 0.05) < 0.005
    tiny = metrics.jitter_box((5, 5, 1, 1), 3.0, np.random.default_rng(1))
    assert tiny[2] >= 1.0 and tiny[3] >= 1.0


def test_in_rect_full_iou_equals_the_full_frame_iou():
    rng = np.random.default_rng(2)
    rect = CropRect(30, 20, 50, 40)
    logits = rng.normal(size=(96, 96)).astype(np.float32)
    full_gt = rng.random((90, 120)) > 0.7
    pred = mask_from_logits(logits, rect, 0.5)[0] > 0
    region = full_gt[rect.y : rect.y_end, rect.x : rect.x_end]
    full_pred = np.zeros_like(full_gt)
    full_pred[rect.y : rect.y_end, rect.x : rect.x_end] = pred
    expected = metrics.mask_iou(full_pred, full_gt)
    assert metrics.in_rect_iou(pred, region, int(full_gt.sum())) == pytest.approx(expected)


def test_reader_skips_crowd_and_degenerate(fixture_data):
    skipped: dict[str, int] = {}
    images = list(ev.iter_eval_images(*fixture_data, skipped=skipped))
    assert sum(len(i.ann_ids) for i in images) == 6
    assert skipped["crowd"] == 3 and skipped["degenerate_box"] == 3
    assert all(m.dtype == bool and m.shape == i.rgb.shape[:2] for i in images for m in i.masks)
    assert sum(len(i.ann_ids) for i in ev.iter_eval_images(*fixture_data, limit=4)) == 4


def test_perfect_empty_and_box_predictors(fixture_data):
    ann, images = fixture_data
    gt96 = gt_crops_in_order(ann, images)

    def perfect(crops, batch):
        return np.where(np.stack([gt96[i] for i in batch.indices]), 5.0, -5.0).astype(np.float32)

    def empty(crops, batch):
        return np.full(crops.shape[:3], -1.0, np.float32)

    def box(crops, batch):
        return np.where(batch.box_masks, 1.0, -1.0).astype(np.float32)

    evaluation = ev.evaluate_frames(
        {"perfect": perfect, "empty": empty, "box_model": box}, ann, images, {"raw": RAW_POSTPROCESS},
        protocols=("project",),
    )
    sizes = evaluation.size_classes()
    key = ("project", "gt", "raw")
    perfect_scores = evaluation.scores["perfect"][key]
    summary = ev.summarize(perfect_scores.crop_ious, perfect_scores.full_ious, sizes)
    assert summary["crop_miou"] == 1.0 and summary["mean_frac_iou_50_95"] == 1.0
    assert summary["full_miou"] > 0.95
    assert np.mean(evaluation.scores["empty"][key].crop_ious) == 0.0
    baseline = evaluation.box_scores[("project", "gt")]
    rect_instances = np.asarray(evaluation.ann_ids) % 4 == 1  # the rectangles: the box is the mask
    assert np.all(np.asarray(baseline.crop_ious)[rect_instances] == 1.0)
    assert np.all(np.asarray(baseline.full_ious)[rect_instances] == 1.0)
    disc = np.asarray(baseline.crop_ious)[~rect_instances]  # a disc fills pi/4 of its box
    assert np.all((disc > 0.7) & (disc < 0.85))
    # The box as a network output, through the pipeline, scores what the baseline scores.
    assert np.allclose(evaluation.scores["box_model"][key].crop_ious, baseline.crop_ious)


def test_box_clip_keeps_the_mask_inside_the_box(fixture_data):
    """A network that says 'object' everywhere, clipped to the box with margin 0, is the box."""
    ann, images = fixture_data

    def everything(crops, batch):
        return np.full(crops.shape[:3], 4.0, np.float32)

    settings = {"clip": Postprocess(0.5, 0.0), "raw": RAW_POSTPROCESS}
    evaluation = ev.evaluate_frames({"all": everything}, ann, images, settings, protocols=("project",))
    box = evaluation.box_scores[("project", "gt")]
    clipped = evaluation.scores["all"][("project", "gt", "clip")]
    raw = evaluation.scores["all"][("project", "gt", "raw")]
    assert np.allclose(clipped.full_ious, box.full_ious)  # the same frame pixels as the baseline
    assert clipped.pred_areas == box.pred_areas
    assert np.allclose(clipped.crop_ious, box.crop_ious, atol=0.03)  # grid vs nearest-resampled pixels
    assert np.all(np.asarray(raw.full_ious) < np.asarray(clipped.full_ious))


def test_grid_mask_is_the_crop_mask_on_the_network_grid():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(96, 96)).astype(np.float32) * 3
    rect = CropRect(0, 0, 96, 96)  # crop grid = frame pixels: both must agree exactly
    box = (20.0, 30.0, 40.0, 20.0)
    for setting in (Postprocess(0.5, None), Postprocess(0.3, 0.0), Postprocess(0.7, 0.1)):
        grid = grid_mask(logits, rect, setting.threshold, box, setting.box_margin)
        crop, _ = mask_from_logits(logits, rect, setting.threshold, box, setting.box_margin)
        np.testing.assert_array_equal(grid, crop > 0)
    assert not grid_mask(logits, rect, 0.3, box, 0.0)[:, :20].any()


def test_papers_protocol_cuts_the_square_at_the_border(tmp_path):
    """A wide object on the top border: the papers' square (cut at the border) holds it
    off-centre, the project's (shrunk symmetrically) keeps it in the middle."""
    ann, images = make_coco_fixture(tmp_path / "coco", n_images=1)
    data = json.loads(ann.read_text())
    mask = np.zeros((120, 160), np.uint8)
    mask[0:20, 30:130] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    segmentation = {**rle, "counts": rle["counts"].decode()}
    data["annotations"][0].update(bbox=[30.0, 0.0, 100.0, 20.0], area=float(mask.sum()))
    data["annotations"][0]["segmentation"] = segmentation
    ann.write_text(json.dumps(data))
    assert crop_rect_for_box((30, 0, 100, 20), (160, 120), border="cut") == CropRect(20, 0, 120, 70)
    assert crop_rect_for_box((30, 0, 100, 20), (160, 120)) == CropRect(20, 0, 120, 20)
    with pytest.raises(ValueError):
        crop_rect_for_box((30, 0, 100, 20), (160, 120), border="pad")

    def centre_square(crops, batch):  # "the object is in the middle": what an implicit prompt learns
        out = np.full(crops.shape[:3], -5.0, np.float32)
        out[:, 10:86, 10:86] = 5.0
        return out

    evaluation = ev.evaluate_frames({"centre": centre_square}, ann, images, {"raw": RAW_POSTPROCESS}, limit=1)
    project = evaluation.scores["centre"][("project", "gt", "raw")].full_ious[0]
    papers = evaluation.scores["centre"][("papers", "gt", "raw")].full_ious[0]
    assert project > 0.6 and papers < 0.35, (project, papers)
    # The box baseline is the same frame pixels under both rules.
    boxes = evaluation.box_scores
    assert boxes[("project", "gt")].full_ious == boxes[("papers", "gt")].full_ious


def test_grabcut_finds_a_high_contrast_object(fixture_data):
    evaluation = ev.evaluate_frames(
        {"grabcut": ev.grabcut_predictor()}, *fixture_data, {"raw": RAW_POSTPROCESS}, protocols=("project",)
    )
    assert np.mean(evaluation.scores["grabcut"][("project", "gt", "raw")].crop_ious) > 0.8


def test_torch_and_onnx_predictors_agree(fixture_data, tmp_path):
    torch = pytest.importorskip("torch")
    from picosam3_train.export import export_onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)
    )
    path = export_onnx(model, tmp_path / "tiny.onnx", verbose=False).path
    spec = ev.default_input_spec()
    evaluation = ev.evaluate_frames(
        {"torch": ev.TorchPredictor(model, spec), "onnx": ev.OnnxPredictor(path, spec)},
        *fixture_data,
        {"raw": RAW_POSTPROCESS},
    )
    for key in evaluation.scores["torch"]:
        torch_ious = evaluation.scores["torch"][key].crop_ious
        assert np.allclose(torch_ious, evaluation.scores["onnx"][key].crop_ious, atol=1e-3)


def test_calibration_table_hand_computed():
    sizes = np.array(["small", "small", "large"])
    table = ev.calibration([10, 30, 5000], [20, 20, 10000], sizes)
    assert table["small"]["area_ratio"] == pytest.approx(1.0)
    assert table["small"]["median_ratio"] == pytest.approx(1.0)
    assert table["large"]["area_ratio"] == pytest.approx(0.5)
    assert table["medium"]["count"] == 0 and table["all"]["count"] == 3


def test_cli_writes_report_and_figures(fixture_data, tmp_path):
    ann, images = fixture_data
    out = tmp_path / "report"
    args = ["--dataset", f"{ann}:{images}", "--baselines", "box,grabcut", "--box-jitter", "0.05"]
    args += ["--out", str(out)]
    assert ev.main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["instances"] == 6 and report["headline"] == "project/gt/node"
    box = report["methods"]["box"]
    assert set(box) >= {"crop_miou", "full_miou", "mean_frac_iou_50_95", "by_size", "variants", "calibration"}
    assert 0.85 < box["crop_miou"] < 0.95  # three exact rectangles (1.0) and three discs (~pi/4)
    assert set(box["variants"]) == {"project/gt", "project/jitter5", "papers/gt", "papers/jitter5"}
    assert box["variants"]["project/jitter5"]["full_miou"] < box["full_miou"]  # jittered boxes are worse
    grabcut = report["methods"]["grabcut"]
    assert {"project/gt/node", "project/gt/raw", "papers/jitter5/raw"} <= set(grabcut["variants"])
    assert set(grabcut["calibration"]["project/gt/raw"]) == {"all", "small", "medium", "large"}
    text = (out / "report.md").read_text()
    assert "| box | papers | jitter5 |" in text and "## Calibration" in text
    for name in ("size_bars.png", "examples_grabcut.png"):
        assert cv2.imread(str(out / name)) is not None


def test_cli_sweep_rows(fixture_data, tmp_path):
    ann, images = fixture_data
    out = tmp_path / "sweep"
    args = ["--dataset", f"{ann}:{images}", "--baselines", "grabcut", "--protocols", "project", "--sweep",
            "--sweep-thresholds", "0.3,0.5", "--sweep-margins", "none,0", "--out", str(out)]
    assert ev.main(args) == 0
    report = json.loads((out / "report.json").read_text())
    swept = [r for r in report["sweep"] if r["setting"] not in ("raw", "node")]
    grid = {(r["threshold"], r["box_margin"]) for r in swept}
    assert grid == {(0.3, None), (0.3, 0.0), (0.5, None), (0.5, 0.0)}
    assert "box" not in report["methods"]
