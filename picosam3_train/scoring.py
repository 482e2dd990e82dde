"""The one evaluator of box-prompted segmentation: the node's own call on every image, scored.

For every usable non-crowd instance of a COCO-format dataset the prompt is the annotated box
(``gt``) or a detector-like box (``jitter10``: each side moved by N(0, 0.10) of the box size, fixed
seed). Every image goes through the node's call (``picosam3_ros.core.predictor.Predictor``: the crop
rule, one batched network call, the one post-processing step), and every mask through the one
instance scorer (``picosam3_ros.core.metrics.score_instance``, which bag evaluation uses too), so
the full-frame figure is the one a user of the node gets. ``picosam3_train evaluate`` (the CLI,
``evaluate.py``) and the trainer's periodic evaluation both call :func:`evaluate_frames`; the report
is :mod:`picosam3_train.report`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

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
    InstanceTruth,
    box_mask_in_crop,
    box_mask_in_rect,
    crowding_bucket,
    jitter_box,
    mean_fraction_above_iou_thresholds,
    objects_in_crop,
    score_instance,
    size_bucket,
)
from picosam3_ros.core.pipeline import Prompt, Status
from picosam3_ros.core.postprocess import Postprocess, grid_mask, mask_from_logits
from picosam3_ros.core.predictor import Predictor
from picosam3_train.predictors import CropBatch, CropPredictor, PredictorSegmenter

SIZE_BUCKETS = ("small", "medium", "large")
# protocol name -> crop_rect_for_box border rule
PROTOCOLS = {"project": "shrink", "papers": "cut"}
assert set(PROTOCOLS.values()) <= set(BORDER_RULES)
HEADLINE = ("project", "gt", "node")  # the figure users feel: the node's rule, GT boxes, its post-processing
# The robustness sweep every report carries: GT boxes and each side moved by N(0, j x size).
JITTER_SWEEP = (0.0, 0.05, 0.1, 0.2)
# The post-processing grid of --sweep (package chooses the node's from it).
SWEEP_THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
SWEEP_MARGINS = (None, 0.0, 0.02, 0.05, 0.1)
SWEEP_GROWS = (None, 0.8, 0.9)  # growth beyond the clip (postprocess.grow_threshold; None = a hard clip)


def box_set_name(fraction: float) -> str:
    """"gt" for the annotated box, "jitter10" for each side moved by N(0, 0.10) of its size."""
    return "gt" if fraction <= 0 else f"jitter{round(fraction * 100):d}"


def jitter_box_sets(fractions: Sequence[float] = JITTER_SWEEP) -> dict[str, float]:
    return {box_set_name(f): float(f) for f in sorted({0.0, *fractions})}


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


def prompt_boxes(image: EvalImage, fraction: float, seed: int) -> list[tuple[float, float, float, float]]:
    """The image's GT boxes, or detector-like ones (``jitter_box``) seeded per annotation id,
    so an instance gets the same box whatever the limit, order or model."""
    if fraction <= 0:
        return list(image.boxes)
    return [
        jitter_box(box, fraction, np.random.default_rng([seed, ann_id]))
        for box, ann_id in zip(image.boxes, image.ann_ids)
    ]


@dataclass
class _Cut:
    """One image's prompts under one crop rule: each box's crop (None: the rule refuses it), the
    ground truth cut for the scorer, and the box as a mask on the crop grid."""

    boxes: list[tuple[float, float, float, float]]
    rects: list[CropRect | None]
    truths: dict[int, InstanceTruth]
    box96: dict[int, np.ndarray]

    @property
    def valid(self) -> list[int]:
        return [k for k, r in enumerate(self.rects) if r is not None]


def _cut(image: EvalImage, boxes: list, border: str, gt_totals: list[int]) -> _Cut:
    height, width = image.rgb.shape[:2]
    rects: list[CropRect | None] = []
    for box in boxes:
        try:
            rects.append(crop_rect_for_box(box, (width, height), border=border))
        except InvalidRoiError:
            rects.append(None)
    valid = [k for k, r in enumerate(rects) if r is not None]
    truths = {k: InstanceTruth.cut(image.masks[k], rects[k], total=gt_totals[k]) for k in valid}
    return _Cut(list(boxes), rects, truths, {k: box_mask_in_crop(boxes[k], rects[k]) for k in valid})


def _score_boxes(scores: Scores, cut: _Cut) -> None:
    """The box itself as the mask, through the one scorer; a box the crop rule refuses scores 0."""
    for k, box in enumerate(cut.boxes):
        if cut.rects[k] is None:  # a jittered box off the frame: nothing to show
            scores.add(0.0, 0.0, 0)
            continue
        in_box = box_mask_in_rect(box, cut.rects[k])
        scores.add(*score_instance(cut.truths[k], cut.box96[k], in_box), in_box.sum())


def _run_predictor(name: str, segmenter: PredictorSegmenter, image: EvalImage, cut: _Cut, base: int,
                   setting: Postprocess, border: str) -> tuple[dict[int, tuple[int, object]], float]:
    """The node's call on the image for one predictor: {instance: (row in the batch, result)}, seconds."""
    valid = cut.valid
    segmenter.batch = CropBatch(
        np.asarray([base + k for k in valid], np.int64),
        np.stack([cut.box96[k] for k in valid]) if valid
        else np.zeros((0, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), bool),
    )
    prompts = [Prompt(k, tuple(cut.boxes[k])) for k in valid]
    started = time.perf_counter()
    results = Predictor(backend=segmenter, postprocess=setting, border=border).segment(image.rgb, prompts)
    seconds = time.perf_counter() - started
    by_index = {}
    for row, (k, result) in enumerate(zip(valid, results)):
        if result.status != Status.OK:
            raise RuntimeError(f"{name}: {Status(result.status).name}: {result.detail}")
        if result.crop != cut.rects[k]:
            raise RuntimeError(f"{name}: the pipeline cropped {result.crop}, expected {cut.rects[k]}")
        by_index[k] = (row, result)
    return by_index, seconds


def _score_settings(evaluation: FrameEvaluation, name: str, segmenter: PredictorSegmenter, cut: _Cut,
                    by_index: dict, variant: tuple[str, str], examples_for: str | None) -> None:
    """Score every post-processing of ``evaluation.settings`` on the predictor's logits (the first is
    the one the node's call applied; the others re-run the same step on its logits)."""
    first = next(iter(evaluation.settings))
    for setting_name, setting in evaluation.settings.items():
        scores = evaluation.scores[name][(*variant, setting_name)]
        for k, box in enumerate(cut.boxes):
            if k not in by_index:
                scores.add(0.0, 0.0, 0)
                continue
            row, result = by_index[k]
            if setting_name == first:
                crop_mask = result.crop_mask
            else:
                crop_mask, _ = mask_from_logits(result.logits96, result.crop, setting.threshold, box,
                                                setting.box_margin, setting.grow_threshold)
            pred = crop_mask > 0
            grid = grid_mask(result.logits96, result.crop, setting.threshold, box, setting.box_margin,
                             setting.grow_threshold)
            scores.add(*score_instance(cut.truths[k], grid, pred), pred.sum())
            if setting_name == examples_for:
                examples = evaluation.examples[name]
                examples.crops.append(segmenter.last_crops[row])
                examples.predictions.append(grid)
                examples.ground_truth.append(cut.truths[k].grid)


def _start(predictors: dict, annotation_file, settings: dict[str, Postprocess], protocols: Sequence[str],
           box_sets: dict[str, float], seed: int, keep_examples: bool) -> FrameEvaluation:
    if not settings:
        raise ValueError("give at least one post-processing setting")
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocols {unknown}; known: {list(PROTOCOLS)}")
    evaluation = FrameEvaluation(Path(annotation_file).name, dict(settings), tuple(protocols), box_sets, seed)
    variants = [(p, b) for p in protocols for b in box_sets]
    for name in predictors:
        evaluation.scores[name] = {(p, b, s): Scores() for p, b in variants for s in settings}
        evaluation.seconds[name] = 0.0
        if keep_examples:
            evaluation.examples[name] = Examples()
    for p, b in variants:
        evaluation.box_scores[(p, b)] = Scores()
    return evaluation


def evaluate_frames(
    predictors: dict[str, CropPredictor],
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
    """Run every predictor through the node's call (``picosam3_ros.core.predictor.Predictor``) on
    every image, for each protocol and box set; score each post-processing in ``settings`` (the first
    is the one the call applies, the others re-run the same ``mask_from_logits`` on its logits) with
    the one instance scorer (``picosam3_ros.core.metrics.score_instance``)."""
    box_sets = dict(box_sets or {"gt": 0.0})
    evaluation = _start(predictors, annotation_file, settings, protocols, box_sets, seed, keep_examples)
    first = next(iter(settings))
    segmenters = {name: PredictorSegmenter(p) for name, p in predictors.items()}
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
                cut = _cut(image, boxes, PROTOCOLS[protocol], gt_totals)
                if protocol == protocols[0]:
                    evaluation.invalid_prompts[box_name] = (
                        evaluation.invalid_prompts.get(box_name, 0) + len(boxes) - len(cut.valid)
                    )
                _score_boxes(evaluation.box_scores[(protocol, box_name)], cut)
                headline_variant = keep_examples and (protocol, box_name) == ("project", "gt")
                examples_for = headline_setting if headline_variant else None
                for name, segmenter in segmenters.items():
                    by_index, seconds = _run_predictor(name, segmenter, image, cut, base, settings[first],
                                                       PROTOCOLS[protocol])
                    evaluation.seconds[name] += seconds
                    _score_settings(evaluation, name, segmenter, cut, by_index, (protocol, box_name),
                                    examples_for)
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
