"""The one evaluator of box-prompted segmentation: the node's own code on every image.

For every usable non-crowd instance of a COCO-format dataset the prompt is the annotated
box (``gt``) or a detector-like box (``jitter``: each side moved by N(0, f) of the box
size, fixed seed). Every image goes through the node's pipeline
(``picosam3_ros.core.pipeline.segment_frame``: the crop rule, one batched network call,
the one post-processing step ``picosam3_ros.core.postprocess``), so the full-frame
figure is the one a user of the node gets. Reported per instance, averaged (mIoU; an
empty union counts IoU 1, ``picosam3_ros.core.metrics.mask_iou``):

* two crop protocols (``picosam3_ros.core.crop.crop_rect_for_box``'s ``border``):
  ``project`` (the node's rule: the padded square shrunk symmetrically at the frame
  border) and ``papers`` (the PicoSAM papers': the square cut at the frame border);
* crop space (96x96: the GT cut with the crop rule, nearest, against the post-processed
  mask on the network's grid) and full frame (the crop-local mask pasted back, against
  the full-resolution GT; object parts outside the crop count as missed);
* two post-processings: ``raw`` (logits > 0, nothing clipped: the papers' protocol) and
  ``node`` (the threshold and box margin the node uses: options > model card > default);
* the box itself as the mask, on the same pixels: a frame pixel is in the box when its
  centre lies inside it (``metrics.box_mask_in_rect``), in crop space taken through the
  crop rule like the GT;
* all of it by COCO size class (``area``: small < 32^2 <= medium < 96^2 <= large), the
  papers' "mAP" (``mean_frac_iou_50_95``), and a calibration table: predicted against
  true area by size, raw and node post-processing;
* optionally a sweep of thresholds and box margins (``--sweep``) to choose the node's.

Predictors are a torch model, an ONNX file (ONNX Runtime) or the GrabCut baseline. The
trainer's periodic evaluation calls :func:`evaluate_frames` too.

CLI: ``picosam3_train evaluate --checkpoint CKPT | --onnx FILE ... [--box-jitter 0.05] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from picosam3_ros.core.backend_api import CropSegmenter
from picosam3_ros.core.coco_dataset import CocoDataset, SkipCounts
from picosam3_ros.core.crop import (
    BORDER_RULES,
    MODEL_INPUT_SIZE,
    CropRect,
    InvalidRoiError,
    crop_rect_for_box,
)
from picosam3_ros.core.metrics import (
    CROWDING_BUCKETS,
    IOU_THRESHOLDS,
    box_mask_in_crop,
    box_mask_in_rect,
    crowding_bucket,
    gt_crop,
    jitter_box,
    mask_iou,
    mean_fraction_above_iou_thresholds,
    objects_in_crop,
    size_bucket,
)
from picosam3_ros.core.model_card import InputSpec, ModelCardError, load_model_card, postprocess_in_use
from picosam3_ros.core.onnx_session import cpu_session
from picosam3_ros.core.pipeline import Prompt, Status, segment_frame
from picosam3_ros.core.postprocess import (
    RAW_POSTPROCESS,
    Postprocess,
    add_postprocess_arguments,
    grid_mask,
    mask_from_logits,
)

SIZE_BUCKETS = ("small", "medium", "large")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
DEV_VAL_SPEC = "coco/annotations/instances_val2017_dev.json:coco/val2017"
# protocol name -> crop_rect_for_box border rule
PROTOCOLS = {"project": "shrink", "papers": "cut"}
assert set(PROTOCOLS.values()) <= set(BORDER_RULES)
HEADLINE = ("project", "gt", "node")  # the figure users feel: the node's rule, GT boxes, its post-processing
SWEEP_THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
SWEEP_MARGINS = (None, 0.0, 0.02, 0.05, 0.1)
SWEEP_GROWS = (None,)  # growth beyond the clip (postprocess.grow_threshold); --sweep-grows adds levels
# The robustness sweep every report carries: GT boxes and each side moved by N(0, j x size).
JITTER_SWEEP = (0.0, 0.05, 0.1, 0.2)


def box_set_name(fraction: float) -> str:
    """"gt" for the annotated box, "jitter10" for each side moved by N(0, 0.10) of its size."""
    return "gt" if fraction <= 0 else f"jitter{round(fraction * 100):d}"


def jitter_box_sets(fractions: Sequence[float] = JITTER_SWEEP) -> dict[str, float]:
    return {box_set_name(f): float(f) for f in sorted({0.0, *fractions})}


@dataclass(frozen=True)
class CropBatch:
    """What a predictor may know besides the crops: the instances (indices in evaluation
    order) and each prompt box as a mask on the crop grid (GrabCut starts from it)."""

    indices: np.ndarray
    box_masks: np.ndarray  # bool (N, S, S)


# uint8 RGB crops (N, S, S, 3) + their CropBatch -> logits (N, S, S) float.
Predictor = Callable[[np.ndarray, CropBatch], np.ndarray]


# --------------------------------------------------------------------------- the evaluation set
def resolve_dataset(spec: str, data_root: Path | None = None) -> tuple[Path, Path]:
    """'annotations.json:image_dir' (relative to cwd or to ../shared/data) -> absolute paths.
    A bare annotation file of the shared layout finds its image folder by itself; the spec
    ``calibration`` is the calibration split (picosam3_train/splits.py)."""
    root = Path(data_root) if data_root else DEFAULT_DATA_ROOT
    from picosam3_train.splits import CALIBRATION_SPEC, calibration_dataset

    if spec == CALIBRATION_SPEC:
        return calibration_dataset(root, REPO_ROOT / ".cache" / "picosam3_train")
    if ":" in spec:
        ann_text, images_text = spec.rsplit(":", 1)
    else:
        ann_text, images_text = spec, ""

    def locate(text: str) -> Path:
        path = Path(text).expanduser()
        if path.is_absolute() or path.exists():
            return path.resolve()
        return (root / path).resolve()

    annotations = locate(ann_text)
    if images_text:
        return annotations, locate(images_text)
    stem = annotations.stem.replace("instances_", "").replace("_dev", "")
    for candidate in (annotations.parent.parent / stem, annotations.parent / "images", annotations.parent):
        if candidate.is_dir() and candidate != annotations.parent.parent:
            return annotations, candidate
    raise FileNotFoundError(
        f"cannot find the image folder of {annotations}; pass 'annotations.json:image_dir'"
    )


@dataclass
class EvalImage:
    """One image of an evaluation set with its usable instances (see :func:`iter_eval_images`)."""

    image_id: int
    rgb: np.ndarray  # uint8 (H, W, 3)
    ann_ids: list[int]
    boxes: list[tuple[float, float, float, float]]  # xywh, as annotated
    masks: list[np.ndarray]  # bool (H, W)
    areas: list[float]  # GT mask pixels (``Instance.area``): the size classes


def iter_eval_images(
    annotation_file: str | Path,
    image_dir: str | Path,
    limit: int = 0,
    skipped: dict[str, int] | None = None,
    progress: bool = False,
) -> Iterator[EvalImage]:
    """Every image with usable instances (first ``limit`` instances if > 0), in image-id then
    annotation-id order: the one reader's rule (``picosam3_ros.core.coco_dataset``).

    Skipped and counted in ``skipped``: crowd annotations, boxes under 1 px or whose crop
    the rule rejects, empty masks, unreadable images."""
    annotation_file = Path(annotation_file)
    skipped = {} if skipped is None else skipped
    counts = SkipCounts()
    for key in counts.as_dict():
        skipped.setdefault(key, 0)

    def bar(ids: list[int]) -> Iterable[int]:
        from tqdm import tqdm

        return tqdm(ids, desc=f"reading {annotation_file.name}", unit="img")

    dataset = CocoDataset(annotation_file, image_dir)
    try:
        for image_id, rgb, found in dataset.image_groups(limit, counts, progress=bar if progress else None):
            yield EvalImage(image_id, rgb, [i.annotation_id for i in found], [i.bbox for i in found],
                            [i.mask for i in found], [float(i.area) for i in found])
    finally:
        for key, value in counts.as_dict().items():
            skipped[key] += value


# --------------------------------------------------------------------------- predictors
def default_input_spec() -> InputSpec:
    """The training normalisation (scale 1/255, ImageNet mean/std), as in the trainer's config."""
    from picosam3_train.config import IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALE

    return InputSpec(
        "image", MODEL_INPUT_SIZE, "NCHW", "RGB", PIXEL_SCALE, tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)
    )


def input_spec_from_config(config) -> InputSpec:
    """InputSpec from a checkpoint's TrainConfig (falls back to the trainer's constants)."""
    base = default_input_spec()
    return InputSpec(
        "image",
        MODEL_INPUT_SIZE,
        "NCHW",
        "RGB",
        float(getattr(config, "pixel_scale", getattr(config, "scale", base.scale))),
        tuple(float(v) for v in getattr(config, "mean", base.mean)),
        tuple(float(v) for v in getattr(config, "std", base.std)),
    )


def _squeeze_logits(out: np.ndarray) -> np.ndarray:
    out = np.asarray(out, dtype=np.float32)
    return out[:, 0] if out.ndim == 4 else out


class OnnxPredictor:
    """An ONNX model in ONNX Runtime (CPU), fed per ``input_spec``."""

    def __init__(self, path: str | Path, input_spec: InputSpec | None = None, threads: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX model at {self.path}")
        self.session = cpu_session(self.path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.input_spec = input_spec or default_input_spec()

    def __call__(self, crops: np.ndarray, batch: CropBatch | None = None) -> np.ndarray:
        x = self.input_spec.preprocess(crops)
        return _squeeze_logits(self.session.run(None, {self.input_name: x})[0])


class TorchPredictor:
    """A torch module (eval mode, no grad) fed per ``input_spec``, on ``device``."""

    def __init__(self, model, input_spec: InputSpec | None = None, device=None, channels_last: bool = False):
        self.model = model
        self.input_spec = input_spec or default_input_spec()
        self.device = device
        self.channels_last = channels_last

    def __call__(self, crops: np.ndarray, batch: CropBatch | None = None) -> np.ndarray:
        import torch

        x = torch.from_numpy(self.input_spec.preprocess(crops))
        if self.device is not None:
            x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                return _squeeze_logits(self.model(x).float().cpu().numpy())
        finally:
            self.model.train(was_training)


def grabcut_logits(crop_rgb: np.ndarray, box_in_crop: np.ndarray, iterations: int = 3) -> np.ndarray:
    """GrabCut on the 96x96 crop, initialised with the box rectangle; +1 = (probable) foreground.
    Falls back to the box itself when GrabCut cannot run (box covering the whole crop) or
    returns an empty mask."""
    size = crop_rgb.shape[0]
    ys, xs = np.nonzero(box_in_crop)
    if len(xs) == 0:
        return np.full((size, size), -1.0, np.float32)
    x0, y0 = max(int(xs.min()), 1), max(int(ys.min()), 1)
    x1, y1 = min(int(xs.max()) + 1, size - 1), min(int(ys.max()) + 1, size - 1)
    fallback = np.where(box_in_crop, 1.0, -1.0).astype(np.float32)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return fallback
    mask = np.zeros((size, size), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(
            cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR),
            mask,
            (x0, y0, x1 - x0, y1 - y0),
            bgd,
            fgd,
            iterations,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error:
        return fallback
    foreground = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    if not foreground.any():
        # On 96x96 crops the background strip outside the box is thin, and GrabCut often
        # converges to "all background" (about half of the COCO instances); an empty mask
        # is no segmentation at all, so the baseline falls back to the box there.
        return fallback
    return np.where(foreground, 1.0, -1.0).astype(np.float32)


def grabcut_predictor(iterations: int = 3) -> Predictor:
    """Baseline: cv2.grabCut initialised with the box, ``iterations`` rounds, on the crop."""

    def predict(crops: np.ndarray, batch: CropBatch) -> np.ndarray:
        return np.stack([grabcut_logits(crop, box, iterations) for crop, box in zip(crops, batch.box_masks)])

    return predict


# --------------------------------------------------------------------------- evaluation
@dataclass
class Scores:
    """Per-instance results of one method under one protocol, box set and post-processing."""

    crop_ious: list[float] = field(default_factory=list)
    full_ious: list[float] = field(default_factory=list)
    pred_areas: list[int] = field(default_factory=list)  # full-frame pixels of the mask

    def add(self, crop_iou: float, full_iou: float, pred_area: int) -> None:
        self.crop_ious.append(float(crop_iou))
        self.full_ious.append(float(full_iou))
        self.pred_areas.append(int(pred_area))


@dataclass
class Examples:
    """The headline variant's crops, predictions and GT on the crop grid (for the figures)."""

    crops: list[np.ndarray] = field(default_factory=list)
    predictions: list[np.ndarray] = field(default_factory=list)
    ground_truth: list[np.ndarray] = field(default_factory=list)


@dataclass
class FrameEvaluation:
    """Everything :func:`evaluate_frames` measured; keys of ``scores``: (protocol, boxes, setting)."""

    dataset: str
    settings: dict[str, Postprocess]
    protocols: tuple[str, ...]
    box_sets: dict[str, float]
    seed: int
    areas: list[float] = field(default_factory=list)  # COCO 'area' (size classes)
    gt_areas: list[int] = field(default_factory=list)  # mask pixels (calibration)
    ann_ids: list[int] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    crowding: list[int] = field(default_factory=list)  # other objects in the GT box's crop (project rule)
    skipped: dict[str, int] = field(default_factory=dict)
    invalid_prompts: dict[str, int] = field(default_factory=dict)  # per box set: boxes off the frame
    scores: dict[str, dict[tuple[str, str, str], Scores]] = field(default_factory=dict)
    box_scores: dict[tuple[str, str], Scores] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    examples: dict[str, Examples] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ann_ids)

    def size_classes(self) -> np.ndarray:
        return np.array([size_bucket(a) for a in self.areas])

    def crowding_classes(self) -> np.ndarray:
        return np.array([crowding_bucket(c) for c in self.crowding])


class _PredictorSegmenter(CropSegmenter):
    """A predictor behind the backend interface, so images go through ``segment_frame``."""

    name = "evaluate"

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.batch: CropBatch | None = None
        self.last_crops: np.ndarray | None = None

    @property
    def input_size(self) -> int:
        return MODEL_INPUT_SIZE

    def infer(self, crops_rgb: np.ndarray) -> np.ndarray:
        self.last_crops = crops_rgb
        logits = np.asarray(self.predictor(crops_rgb, self.batch), np.float32)
        if logits.shape != crops_rgb.shape[:3]:
            raise ValueError(f"expected logits of shape {crops_rgb.shape[:3]}, got {logits.shape}")
        return logits


def prompt_boxes(image: EvalImage, fraction: float, seed: int) -> list[tuple[float, float, float, float]]:
    """The image's GT boxes, or detector-like ones (``jitter_box``) seeded per annotation id,
    so an instance gets the same box whatever the limit, order or model."""
    if fraction <= 0:
        return list(image.boxes)
    return [
        jitter_box(box, fraction, np.random.default_rng([seed, ann_id]))
        for box, ann_id in zip(image.boxes, image.ann_ids)
    ]


def _in_rect_iou(pred: np.ndarray, gt_region: np.ndarray, gt_total: int) -> float:
    """Full-frame IoU of a mask that is empty outside its rectangle (the pasted crop mask)."""
    inter = int(np.logical_and(pred, gt_region).sum())
    union = int(pred.sum()) + gt_total - inter
    return 1.0 if union == 0 else inter / union


def evaluate_frames(
    predictors: dict[str, Predictor],
    annotation_file: str | Path,
    image_dir: str | Path,
    settings: dict[str, Postprocess],
    protocols: Sequence[str] = ("project", "papers"),
    box_sets: dict[str, float] | None = None,
    seed: int = 0,
    limit: int = 0,
    progress: bool = False,
    keep_examples: bool = True,
) -> FrameEvaluation:
    """Run every predictor through ``segment_frame`` on every image, for each protocol and
    box set; score each post-processing in ``settings`` (the first is the one
    ``segment_frame`` applies, the others re-run the same ``mask_from_logits`` on its logits)."""
    if not settings:
        raise ValueError("give at least one post-processing setting")
    box_sets = dict(box_sets or {"gt": 0.0})
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocols {unknown}; known: {list(PROTOCOLS)}")
    first = next(iter(settings))
    evaluation = FrameEvaluation(Path(annotation_file).name, dict(settings), tuple(protocols), box_sets, seed)
    segmenters = {name: _PredictorSegmenter(p) for name, p in predictors.items()}
    variants = [(p, b) for p in protocols for b in box_sets]
    for name in predictors:
        evaluation.scores[name] = {(p, b, s): Scores() for p, b in variants for s in settings}
        evaluation.seconds[name] = 0.0
        if keep_examples:
            evaluation.examples[name] = Examples()
    for p, b in variants:
        evaluation.box_scores[(p, b)] = Scores()
    headline_setting = "node" if "node" in settings else first
    for image in iter_eval_images(annotation_file, image_dir, limit, evaluation.skipped, progress):
        height, width = image.rgb.shape[:2]
        base = len(evaluation.ann_ids)
        evaluation.ann_ids += image.ann_ids
        evaluation.image_ids += [image.image_id] * len(image.ann_ids)
        evaluation.areas += image.areas
        gt_totals = [int(m.sum()) for m in image.masks]
        evaluation.gt_areas += gt_totals
        evaluation.crowding += [objects_in_crop(crop_rect_for_box(box, (width, height)), image.boxes, k)
                                for k, box in enumerate(image.boxes)]
        for box_name, fraction in box_sets.items():
            boxes = prompt_boxes(image, fraction, seed)
            for protocol in protocols:
                border = PROTOCOLS[protocol]
                rects: list[CropRect | None] = []
                for box in boxes:
                    try:
                        rects.append(crop_rect_for_box(box, (width, height), border=border))
                    except InvalidRoiError:
                        rects.append(None)
                valid = [k for k, r in enumerate(rects) if r is not None]
                if protocol == protocols[0]:
                    evaluation.invalid_prompts[box_name] = (
                        evaluation.invalid_prompts.get(box_name, 0) + len(boxes) - len(valid)
                    )
                gt96 = {k: gt_crop(image.masks[k], rects[k]) for k in valid}
                regions = {
                    k: image.masks[k][rects[k].y : rects[k].y_end, rects[k].x : rects[k].x_end] for k in valid
                }
                box96 = {k: box_mask_in_crop(boxes[k], rects[k]) for k in valid}
                box_scores = evaluation.box_scores[(protocol, box_name)]
                for k in range(len(boxes)):
                    if rects[k] is None:  # a jittered box off the frame: nothing to show
                        box_scores.add(0.0, 0.0, 0)
                        continue
                    in_box = box_mask_in_rect(boxes[k], rects[k])
                    box_scores.add(
                        mask_iou(box96[k], gt96[k]),
                        _in_rect_iou(in_box, regions[k], gt_totals[k]),
                        in_box.sum(),
                    )
                prompts = [Prompt(k, tuple(boxes[k])) for k in valid]
                for name, segmenter in segmenters.items():
                    segmenter.batch = CropBatch(
                        np.asarray([base + k for k in valid], np.int64),
                        np.stack([box96[k] for k in valid])
                        if valid
                        else np.zeros((0, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), bool),
                    )
                    setting = settings[first]
                    started = time.perf_counter()
                    results = segment_frame(segmenter, image.rgb, prompts, setting, None, border)
                    evaluation.seconds[name] += time.perf_counter() - started
                    by_index = {}
                    for row, (k, result) in enumerate(zip(valid, results)):
                        if result.status != Status.OK:
                            raise RuntimeError(f"{name}: {Status(result.status).name}: {result.detail}")
                        if result.crop != rects[k]:
                            raise RuntimeError(
                                f"{name}: the pipeline cropped {result.crop}, expected {rects[k]}"
                            )
                        by_index[k] = (row, result)
                    for setting_name, setting in settings.items():
                        scores = evaluation.scores[name][(protocol, box_name, setting_name)]
                        for k in range(len(boxes)):
                            if k not in by_index:
                                scores.add(0.0, 0.0, 0)
                                continue
                            row, result = by_index[k]
                            if setting_name == first:
                                crop_mask = result.crop_mask
                            else:
                                crop_mask, _ = mask_from_logits(
                                    result.logits96,
                                    result.crop,
                                    setting.threshold,
                                    boxes[k],
                                    setting.box_margin,
                                    setting.grow_threshold,
                                )
                            pred = crop_mask > 0
                            grid = grid_mask(
                                result.logits96, result.crop, setting.threshold, boxes[k], setting.box_margin,
                                setting.grow_threshold,
                            )
                            scores.add(
                                mask_iou(grid, gt96[k]),
                                _in_rect_iou(pred, regions[k], gt_totals[k]),
                                pred.sum(),
                            )
                            if keep_examples and (protocol, box_name, setting_name) == (
                                "project",
                                "gt",
                                headline_setting,
                            ):
                                examples = evaluation.examples[name]
                                examples.crops.append(segmenter.last_crops[row])
                                examples.predictions.append(grid)
                                examples.ground_truth.append(gt96[k])
    return evaluation


def summarize(crop_ious: Sequence[float], full_ious: Sequence[float], size_classes: np.ndarray,
              crowding_classes: np.ndarray | None = None) -> dict:
    """The numbers of one method: overall, by COCO size class and (given the crowding classes)
    by the number of other objects in the crop."""
    crop_ious, full_ious = np.asarray(crop_ious, np.float64), np.asarray(full_ious, np.float64)

    def block(mask: np.ndarray) -> dict:
        c, f = crop_ious[mask], full_ious[mask]
        return {
            "count": int(mask.sum()),
            "crop_miou": float(c.mean()) if c.size else None,
            "full_miou": float(f.mean()) if f.size else None,
            "crop_mean_frac_iou_50_95": mean_fraction_above_iou_thresholds(c) if c.size else None,
            "full_mean_frac_iou_50_95": mean_fraction_above_iou_thresholds(f) if f.size else None,
        }

    overall = block(np.ones(len(crop_ious), bool))
    overall["mean_frac_iou_50_95"] = overall["crop_mean_frac_iou_50_95"]
    overall["by_size"] = {bucket: block(size_classes == bucket) for bucket in SIZE_BUCKETS}
    if crowding_classes is not None and len(crowding_classes) == len(crop_ious):
        overall["by_crowding"] = {bucket: block(crowding_classes == bucket) for bucket in CROWDING_BUCKETS}
    return overall


def calibration(pred_areas: Sequence[int], true_areas: Sequence[int], size_classes: np.ndarray) -> dict:
    """Predicted against true mask area (full-frame pixels), overall and by size class:
    ``area_ratio`` = total predicted / total true; ``median_ratio`` of the per-instance ratios
    (< 1: the masks are too small, the network under-confident)."""
    pred, true = np.asarray(pred_areas, np.float64), np.asarray(true_areas, np.float64)

    def block(mask: np.ndarray) -> dict:
        if not mask.any():
            return {
                "count": 0,
                "true_area_mean": None,
                "pred_area_mean": None,
                "area_ratio": None,
                "median_ratio": None,
            }
        return {
            "count": int(mask.sum()),
            "true_area_mean": float(true[mask].mean()),
            "pred_area_mean": float(pred[mask].mean()),
            "area_ratio": float(pred[mask].sum() / max(true[mask].sum(), 1.0)),
            "median_ratio": float(np.median(pred[mask] / np.maximum(true[mask], 1.0))),
        }

    return {"all": block(np.ones(len(pred), bool)), **{b: block(size_classes == b) for b in SIZE_BUCKETS}}


def variant_key(protocol: str, boxes: str, setting: str | None = None) -> str:
    return "/".join(v for v in (protocol, boxes, setting) if v)


# --------------------------------------------------------------------------- reports
def build_report(evaluation: FrameEvaluation, meta: dict | None = None, sweep: Sequence[str] = ()) -> dict:
    """The report: per method the headline (project rule, GT boxes, the node's post-processing),
    every variant, the calibration; the box baseline per variant; the sweep rows."""
    sizes = evaluation.size_classes()
    crowds = evaluation.crowding_classes()
    methods: dict[str, dict] = {}
    headline = (
        HEADLINE if HEADLINE[2] in evaluation.settings else (*HEADLINE[:2], next(iter(evaluation.settings)))
    )
    for name, by_variant in evaluation.scores.items():
        variants = {
            variant_key(*key): summarize(s.crop_ious, s.full_ious, sizes, crowds)
            for key, s in by_variant.items()
            if key[2] not in sweep
        }
        calib = {
            variant_key(*key): calibration(s.pred_areas, evaluation.gt_areas, sizes)
            for key, s in by_variant.items()
            if key[0] == "project" and key[2] not in sweep
        }
        top = variants.get(variant_key(*headline)) or next(iter(variants.values()), {})
        methods[name] = {
            **top,
            "seconds": round(evaluation.seconds[name], 3),
            "variants": variants,
            "calibration": calib,
        }
    if evaluation.box_scores:
        box_variants = {
            variant_key(*key): summarize(s.crop_ious, s.full_ious, sizes, crowds)
            for key, s in evaluation.box_scores.items()
        }
        box_calib = {
            variant_key(*key): calibration(s.pred_areas, evaluation.gt_areas, sizes)
            for key, s in evaluation.box_scores.items()
            if key[0] == "project"
        }
        top = box_variants.get(variant_key(*headline[:2])) or next(iter(box_variants.values()))
        methods["box"] = {**top, "seconds": 0.0, "variants": box_variants, "calibration": box_calib}
    sweep_rows = []
    for name, by_variant in evaluation.scores.items():
        for (protocol, boxes, setting_name), s in by_variant.items():
            if setting_name not in sweep and setting_name not in ("raw", "node"):
                continue
            if protocol != "project":
                continue
            summary = summarize(s.crop_ious, s.full_ious, sizes)
            setting = evaluation.settings[setting_name]
            sweep_rows.append(
                {
                    "method": name,
                    "boxes": boxes,
                    "setting": setting_name,
                    "threshold": setting.threshold,
                    "box_margin": setting.box_margin,
                    "grow_threshold": setting.grow_threshold,
                    "crop_miou": summary["crop_miou"],
                    "full_miou": summary["full_miou"],
                    "full_by_size": {b: summary["by_size"][b]["full_miou"] for b in SIZE_BUCKETS},
                }
            )
    box_desc = {
        name: (
            "the annotated box"
            if f <= 0
            else f"each side moved by N(0, {f:g}) of the box size, "
            f"numpy default_rng([seed={evaluation.seed}, annotation id])"
        )
        for name, f in evaluation.box_sets.items()
    }
    report = {
        "dataset": evaluation.dataset,
        "instances": len(evaluation),
        "skipped": evaluation.skipped,
        "invalid_prompts": evaluation.invalid_prompts,
        "instances_by_size": {b: int((sizes == b).sum()) for b in SIZE_BUCKETS},
        "instances_by_crowding": {b: int((crowds == b).sum()) for b in CROWDING_BUCKETS},
        "headline": variant_key(*headline),
        "postprocess": {name: s.as_dict() for name, s in evaluation.settings.items() if name not in sweep},
        "boxes": box_desc,
        "protocol": {
            "project": "the node's crop rule: box +10% each side, square, shrunk symmetrically about the box "
            "centre to fit the frame, 96x96",
            "papers": "the PicoSAM papers' crop rule: the same square cut at the frame border, 96x96",
            "crop": "crop space: GT cut with the crop rule (nearest) vs the post-processed mask on the 96x96 "
            "grid; empty union = 1",
            "full": "full frame: the node's crop-local mask (pipeline.segment_frame) pasted back vs the "
            "full-resolution GT",
            "raw": "post-processing 'raw': logits > 0, nothing clipped (the papers')",
            "node": "post-processing 'node': the node's threshold and box clip (see 'postprocess')",
            "box": "the box itself as the mask: frame pixels whose centre lies inside the box; in crop space "
            "taken through the crop rule like the GT",
            "mean_frac_iou_50_95": "mean over IoU thresholds "
            + ",".join(f"{t:.2f}" for t in IOU_THRESHOLDS)
            + " of the fraction of instances with IoU >= threshold (the papers' 'mAP')",
            "size": "COCO classes of the annotation area: small < 32^2, medium < 96^2, large",
            "calibration": "predicted vs true mask area in full-frame pixels, project rule",
            "crowding": "other annotated objects with at least half their box inside the GT box's crop "
            "(project rule): 0, 1-2, 3+ (metrics.objects_in_crop)",
        },
        "methods": methods,
        "meta": meta or {},
    }
    if sweep:
        report["sweep"] = sweep_rows
    return report


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def robustness_markdown(report: dict, protocol: str = "project") -> list[str]:
    """The jitter sweep (full-frame mIoU of each box set, the node's post-processing) and the
    crowding breakdown (GT boxes), one row per method."""
    methods = report["methods"]
    box_sets = list(report.get("boxes", {}))
    post = "node" if any(k.endswith("/node") for m in methods.values() for k in m["variants"]) else "raw"

    def variant(m: dict, boxes: str) -> dict | None:
        variants = m["variants"]
        return variants.get(variant_key(protocol, boxes, post)) or variants.get(variant_key(protocol, boxes))

    lines = ["", f"## Box noise sweep ({protocol} rule, full-frame mIoU, models post-processed '{post}')", "",
             "| method | " + " | ".join(box_sets) + " |", "|---|" + "---|" * len(box_sets)]
    for name, m in methods.items():
        cells = [_fmt((variant(m, b) or {}).get("full_miou")) for b in box_sets]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = report.get("instances_by_crowding")
    if counts:
        lines += ["", f"## By other objects in the crop ({protocol} rule, GT boxes, full-frame mIoU)", "",
                  "| method | " + " | ".join(f"{b} (n={counts[b]})" for b in CROWDING_BUCKETS) + " |",
                  "|---|" + "---|" * len(CROWDING_BUCKETS)]
        for name, m in methods.items():
            by = (variant(m, "gt") or {}).get("by_crowding", {})
            cells = [_fmt(by.get(b, {}).get("full_miou")) for b in CROWDING_BUCKETS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def report_markdown(report: dict) -> str:
    by_size = ", ".join(f"{k} {v}" for k, v in report["instances_by_size"].items())
    lines = [
        f"# Evaluation on {report['dataset']}",
        "",
        f"{report['instances']} instances ({by_size}); skipped: {report['skipped']}; "
        f"prompts off the frame: {report['invalid_prompts']}.",
        f"Headline: {report['headline']}. Post-processing: "
        + "; ".join(f"{k} = {v}" for k, v in report["postprocess"].items())
        + ".",
        "",
        "| method | protocol | boxes | post | crop mIoU | full mIoU | full S | full M | full L "
        "| crop S | crop M | crop L |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in report["methods"].items():
        for key, v in m["variants"].items():
            parts = key.split("/") + [""]
            by = v["by_size"]
            lines.append(
                f"| {name} | {parts[0]} | {parts[1]} | {parts[2] or '-'} | {_fmt(v['crop_miou'])} | "
                f"{_fmt(v['full_miou'])} | "
                + " | ".join(_fmt(by[b]["full_miou"]) for b in SIZE_BUCKETS)
                + " | "
                + " | ".join(_fmt(by[b]["crop_miou"]) for b in SIZE_BUCKETS)
                + " |"
            )
    lines += robustness_markdown(report)
    lines += [
        "",
        "## Calibration: predicted vs true area (full-frame pixels, project rule)",
        "",
        "| method | variant | size | n | true area | predicted area | total ratio | median ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in report["methods"].items():
        for key, table in m.get("calibration", {}).items():
            for bucket, c in table.items():
                lines.append(
                    f"| {name} | {key} | {bucket} | {c['count']} | "
                    + " | ".join(
                        "n/a" if c[k] is None else f"{c[k]:.0f}" if "area_mean" in k else f"{c[k]:.3f}"
                        for k in ("true_area_mean", "pred_area_mean", "area_ratio", "median_ratio")
                    )
                    + " |"
                )
    if report.get("sweep"):
        lines += [
            "",
            "## Post-processing sweep (project rule; full-frame mIoU, crop mIoU in brackets)",
            "",
            "| method | boxes | threshold | box margin | full mIoU | crop mIoU | full S | full M | full L |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in report["sweep"]:
            margin = "none" if row["box_margin"] is None else f"{row['box_margin']:g}"
            if row.get("grow_threshold") is not None:
                margin += f", grow p>{row['grow_threshold']:g}"
            lines.append(
                f"| {row['method']} | {row['boxes']} | {row['threshold']:g} | {margin} | "
                f"{_fmt(row['full_miou'])} | {_fmt(row['crop_miou'])} | "
                + " | ".join(_fmt(row["full_by_size"][b]) for b in SIZE_BUCKETS)
                + " |"
            )
    lines += [""]
    for key, text in report["protocol"].items():
        lines.append(f"- **{key}**: {text}")
    for key, text in report.get("boxes", {}).items():
        lines.append(f"- boxes **{key}**: {text}")
    if report.get("meta"):
        lines += ["", "```json", json.dumps(report["meta"], indent=2), "```"]
    return "\n".join(lines) + "\n"


def plot_size_bars(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(report["methods"])
    groups = ["all", *SIZE_BUCKETS]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    width = 0.8 / max(1, len(methods))
    for k, name in enumerate(methods):
        m = report["methods"][name]
        values = [m["crop_miou"]] + [m["by_size"][b]["crop_miou"] or 0.0 for b in SIZE_BUCKETS]
        ax.bar(np.arange(len(groups)) + k * width, values, width, label=name)
    ax.set_xticks(np.arange(len(groups)) + width * (len(methods) - 1) / 2)
    ax.set_xticklabels(
        [f"{g}\n(n={report['instances'] if g == 'all' else report['instances_by_size'][g]})" for g in groups]
    )
    ax.set_ylabel("crop-space mIoU")
    ax.set_ylim(0, 1)
    ax.set_title(f"mIoU by size on {report['dataset']}")
    ax.legend(fontsize=8, ncol=min(4, len(methods)))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_examples(examples: Examples, ious: Sequence[float], name: str, path: Path, per_row: int = 8) -> None:
    """Worst (top row) and best (bottom row) instances: crop, GT outline green, prediction red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(np.asarray(ious), kind="stable")
    rows = [("worst", list(order[:per_row])), ("best", list(order[::-1][:per_row]))]
    fig, axes = plt.subplots(2, per_row, figsize=(per_row * 1.4, 3.4), dpi=110, squeeze=False)
    for r, (label, indices) in enumerate(rows):
        for c in range(per_row):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(indices):
                continue
            i = int(indices[c])
            pred = examples.predictions[i]
            overlay = examples.crops[i].astype(np.float32)
            overlay[pred] = overlay[pred] * 0.5 + np.array([255, 0, 0]) * 0.5
            overlay = overlay.astype(np.uint8)
            contours, _ = cv2.findContours(
                examples.ground_truth[i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
            )
            cv2.drawContours(overlay, contours, -1, (0, 255, 0), 1)
            ax.imshow(overlay)
            ax.set_title(f"{label} {ious[i]:.2f}", fontsize=7)
    fig.suptitle(f"{name}: worst and best crop-space IoU (green GT, red prediction)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(
    evaluation: FrameEvaluation,
    out_dir: str | Path,
    meta: dict | None = None,
    example_methods: Sequence[str] | None = None,
    sweep: Sequence[str] = (),
) -> dict:
    """report.json, report.md, size_bars.png and examples_<method>.png in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(evaluation, meta, sweep)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(report_markdown(report))
    plot_size_bars(report, out_dir / "size_bars.png")
    headline = tuple(report["headline"].split("/"))
    for name in example_methods if example_methods is not None else list(evaluation.examples):
        examples = evaluation.examples.get(name)
        if examples and examples.crops:
            ious = evaluation.scores[name][headline].crop_ious
            plot_examples(examples, ious, name, out_dir / f"examples_{_safe(name)}.png")
    return report


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def sweep_settings(
    thresholds: Sequence[float] = SWEEP_THRESHOLDS,
    margins: Sequence[float | None] = SWEEP_MARGINS,
    grows: Sequence[float | None] = SWEEP_GROWS,
) -> dict[str, Postprocess]:
    """Every threshold x margin x growth (growth only with a clip)."""
    settings = {}
    for t in thresholds:
        for m in margins:
            for g in grows if m is not None else (None,):
                name = f"p{t:g}/m{'none' if m is None else f'{m:g}'}" + ("" if g is None else f"/g{g:g}")
                settings[name] = Postprocess(t, m, g)
    return settings


# --------------------------------------------------------------------------- CLI
def _spec_for_onnx(path: Path, card: str | None) -> InputSpec:
    for candidate in ([Path(card)] if card else []) + [path.parent]:
        try:
            return load_model_card(candidate).input
        except ModelCardError:
            continue
    return default_input_spec()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="picosam3_train evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", action="append", default=[], help="torch checkpoint (repeatable)")
    parser.add_argument("--onnx", action="append", default=[], help="ONNX model file (repeatable)")
    parser.add_argument(
        "--model-card",
        help="model card (dir or json) for the ONNX input normalisation and the post-processing; "
        "default: the card beside the first ONNX file, else the training normalisation",
    )
    parser.add_argument(
        "--dataset", default=DEV_VAL_SPEC, help="annotations.json[:image_dir] (default: dev val)"
    )
    parser.add_argument("--data-root", default=None, help="root for relative dataset paths (../shared/data)")
    parser.add_argument("--baselines", default="box,grabcut", help="comma list of box,grabcut ('' for none)")
    parser.add_argument("--grabcut-iterations", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="first N instances only (0 = all)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = default)")
    add_postprocess_arguments(parser)
    parser.add_argument(
        "--box-jitter",
        default=",".join(f"{f:g}" for f in JITTER_SWEEP[1:]),
        help="comma list of box noise levels evaluated besides GT boxes: each side moved by N(0, f) of "
        "the box size (default: the sweep 0.05,0.1,0.2; '0' = GT boxes only)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the box jitter")
    parser.add_argument("--protocols", default="project,papers", help="comma list of project,papers")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="also score a grid of thresholds x box margins (to choose the node's)",
    )
    parser.add_argument(
        "--sweep-thresholds",
        default=",".join(f"{t:g}" for t in SWEEP_THRESHOLDS),
        help="comma list of thresholds for --sweep",
    )
    parser.add_argument(
        "--sweep-margins",
        default=",".join("none" if m is None else f"{m:g}" for m in SWEEP_MARGINS),
        help="comma list of box margins for --sweep ('none' = no clip)",
    )
    parser.add_argument(
        "--sweep-grows",
        default=",".join("none" if g is None else f"{g:g}" for g in SWEEP_GROWS),
        help="comma list of grow thresholds for --sweep ('none' = a hard clip)",
    )
    parser.add_argument("--out", default=None, help="write report.json/.md and figures here")
    args = parser.parse_args(argv)

    annotations, images = resolve_dataset(args.dataset, Path(args.data_root) if args.data_root else None)
    predictors: dict[str, Predictor] = {}
    for ckpt in args.checkpoint:
        from picosam3_train.checkpoint import load_checkpoint

        model, config, _ = load_checkpoint(ckpt)
        predictors[Path(ckpt).stem] = TorchPredictor(model, input_spec_from_config(config))
    for onnx_path in args.onnx:
        path = Path(onnx_path)
        predictors[path.name] = OnnxPredictor(path, _spec_for_onnx(path, args.model_card), args.threads)
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    for b in baselines:
        if b == "grabcut":
            predictors["grabcut"] = grabcut_predictor(args.grabcut_iterations)
        elif b != "box":
            parser.error(f"unknown baseline {b!r} (box, grabcut)")
    if not predictors and "box" not in baselines:
        parser.error("nothing to evaluate: give --checkpoint, --onnx or --baselines")
    # The node's post-processing comes with a model card; a bare checkpoint has none (yet).
    card = args.model_card or (Path(args.onnx[0]).parent if args.onnx else None)
    node = postprocess_in_use(card, args.threshold, args.box_margin, not args.no_box_clip, card=bool(card))
    settings = {"node": node, "raw": RAW_POSTPROCESS}
    sweep = {}
    if args.sweep:
        sweep = sweep_settings(
            [float(t) for t in args.sweep_thresholds.split(",")],
            [None if m.strip() == "none" else float(m) for m in args.sweep_margins.split(",")],
            [None if g.strip() == "none" else float(g) for g in args.sweep_grows.split(",")],
        )
    settings.update(sweep)
    box_sets = jitter_box_sets([float(f) for f in str(args.box_jitter).split(",") if f.strip()])
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    evaluation = evaluate_frames(
        predictors,
        annotations,
        images,
        settings,
        protocols,
        box_sets,
        args.seed,
        args.limit,
        progress=sys.stderr.isatty(),
    )
    if "box" not in baselines:
        evaluation.box_scores.clear()
    print(f"{evaluation.dataset}: {len(evaluation)} instances; skipped {evaluation.skipped}")
    meta = {
        "command": "picosam3_train evaluate " + " ".join(argv if argv is not None else sys.argv[1:]),
        "annotations": str(annotations),
        "images": str(images),
    }
    if args.out:
        report = write_report(evaluation, args.out, meta, sweep=list(sweep))
        print(f"wrote {args.out}/report.json, report.md and figures")
    else:
        report = build_report(evaluation, meta, list(sweep))
    print(report_markdown(report).split("\n- **")[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
