"""Evaluation of box-prompted segmentation: the PicoSAM papers' protocol and more.

For every non-crowd instance of a COCO-format dataset the prompt is the annotated
box and the network sees the standard crop (``picosam3_ros.core.crop``). Reported:

* crop-space mIoU at 96x96 (the papers' protocol): the ground-truth mask cropped
  with the same rule (nearest), the prediction ``logits > 0``; an empty union
  counts as IoU 1 (``picosam3_ros.core.metrics.mask_iou``);
* full-resolution mIoU: the logits pasted back into the frame
  (``picosam3_ros.core.crop.paste_back``: bilinear to the crop rectangle), thresholded
  at 0 and compared with the full ground-truth mask (object parts outside the
  crop count as missed);
* ``mean_frac_iou_50_95``: the papers' "mAP", i.e. the mean over IoU thresholds
  .50:.05:.95 of the fraction of instances at or above the threshold (not COCO AP);
* all of these by COCO size class of the ground-truth area;
* baselines on the very same instances: the box itself as the mask ("box") and
  OpenCV GrabCut initialised with the box ("grabcut").

Predictors are a torch model, an ONNX file (ONNX Runtime), or a baseline; the
torch/ONNX paths run batched. The per-instance core (``crop_space_iou``,
``gt_crop``, ``box_mask_in_crop``) is small so that bag_eval computes the same
numbers. ``EvalSet`` decodes a dataset once; ``evaluate_predictor`` /
``quick_crop_miou`` are what the trainer calls for quick checks.

CLI: ``picosam3_train evaluate --checkpoint CKPT | --onnx FILE ... [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from picosam3_ros.core.coco_dataset import CocoDataset, SkipCounts
from picosam3_ros.core.crop import (
    MODEL_INPUT_SIZE,
    CropRect,
    crop_and_resize,
    crop_rect_for_box,
    resize_to_crop,
)
from picosam3_ros.core.metrics import (
    IOU_THRESHOLDS,
    box_mask_in_crop,
    crop_space_ious,
    gt_crop,
    mean_fraction_above_iou_thresholds,
    size_bucket,
)
from picosam3_ros.core.model_card import InputSpec, ModelCardError, load_model_card
from picosam3_ros.core.onnx_session import cpu_session

SIZE_BUCKETS = ("small", "medium", "large")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
DEV_VAL_SPEC = "coco/annotations/instances_val2017_dev.json:coco/val2017"

# logits -> (N, 96, 96) float; input: uint8 RGB crops (N, 96, 96, 3) and their indices in the EvalSet.
Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- the evaluation set
@dataclass
class EvalSet:
    """A dataset decoded once: crops, crop-space GT, and what full-resolution IoU needs."""

    name: str
    crops: np.ndarray  # uint8 (N, 96, 96, 3) RGB
    gt_crops: np.ndarray  # bool (N, 96, 96)
    boxes: np.ndarray  # float64 (N, 4) xywh
    rects: list[CropRect]
    gt_in_rect: list[np.ndarray]  # bool (rect.height, rect.width): full-res GT inside the crop
    gt_outside: np.ndarray  # int64 (N,): GT pixels outside the crop rectangle
    areas: np.ndarray  # float64 (N,): GT mask pixels (``Instance.area``) for the size classes
    ann_ids: np.ndarray  # int64 (N,)
    image_ids: np.ndarray  # int64 (N,)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.crops)

    def size_classes(self) -> np.ndarray:
        return np.array([size_bucket(a) for a in self.areas])


def resolve_dataset(spec: str, data_root: Path | None = None) -> tuple[Path, Path]:
    """'annotations.json:image_dir' (relative to cwd or to ../shared/data) -> absolute paths.
    A bare annotation file of the shared layout finds its image folder by itself."""
    root = Path(data_root) if data_root else DEFAULT_DATA_ROOT
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


def load_eval_set(
    annotation_file: str | Path, image_dir: str | Path, limit: int = 0, progress: bool = False
) -> EvalSet:
    """Decode every usable instance (first ``limit`` if > 0, in image-id order): the one
    reader's rule (``picosam3_ros.core.coco_dataset``); skipped annotations are counted by reason."""
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    skips = SkipCounts()
    crops, gts, boxes, rects, inside, outside, areas, ann_ids, image_ids = ([] for _ in range(9))

    def bar(ids: list[int]) -> Iterable[int]:
        from tqdm import tqdm

        return tqdm(ids, desc=f"decoding {annotation_file.name}", unit="img")

    dataset = CocoDataset(annotation_file, image_dir)
    for rgb, instance in dataset.instances(limit, skips, progress=bar if progress else None):
        height, width = rgb.shape[:2]
        rect = crop_rect_for_box(instance.bbox, (width, height))
        mask = instance.mask
        region = mask[rect.y : rect.y_end, rect.x : rect.x_end]
        crops.append(crop_and_resize(rgb, rect))
        gts.append(gt_crop(mask, rect))
        boxes.append(instance.bbox)
        rects.append(rect)
        inside.append(region.copy())
        outside.append(instance.area - int(region.sum()))
        areas.append(float(instance.area))
        ann_ids.append(instance.annotation_id)
        image_ids.append(instance.image_id)
    skipped = skips.as_dict()
    size = MODEL_INPUT_SIZE
    return EvalSet(
        name=annotation_file.name,
        crops=np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
        gt_crops=np.stack(gts) if gts else np.zeros((0, size, size), bool),
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        rects=rects,
        gt_in_rect=inside,
        gt_outside=np.asarray(outside, np.int64),
        areas=np.asarray(areas, np.float64),
        ann_ids=np.asarray(ann_ids, np.int64),
        image_ids=np.asarray(image_ids, np.int64),
        skipped=skipped,
    )


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

    def __call__(self, crops: np.ndarray, indices: np.ndarray | None = None) -> np.ndarray:
        x = self.input_spec.preprocess(crops)
        return _squeeze_logits(self.session.run(None, {self.input_name: x})[0])


class TorchPredictor:
    """A torch module (eval mode, no grad) fed per ``input_spec``."""

    def __init__(self, model, input_spec: InputSpec | None = None):
        self.model = model.eval()
        self.input_spec = input_spec or default_input_spec()

    def __call__(self, crops: np.ndarray, indices: np.ndarray | None = None) -> np.ndarray:
        import torch

        x = torch.from_numpy(self.input_spec.preprocess(crops))
        with torch.inference_mode():
            return _squeeze_logits(self.model(x).float().cpu().numpy())


def box_predictor(evalset: EvalSet) -> Predictor:
    """Baseline: the prompt box itself as the mask (+1 inside, -1 outside)."""

    def predict(crops: np.ndarray, indices: np.ndarray) -> np.ndarray:
        masks = [box_mask_in_crop(evalset.boxes[i], evalset.rects[i]) for i in indices]
        return np.where(np.stack(masks), 1.0, -1.0).astype(np.float32)

    return predict


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


def grabcut_predictor(evalset: EvalSet, iterations: int = 3) -> Predictor:
    """Baseline: cv2.grabCut initialised with the box, ``iterations`` rounds, on the crop."""

    def predict(crops: np.ndarray, indices: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                grabcut_logits(crop, box_mask_in_crop(evalset.boxes[i], evalset.rects[i]), iterations)
                for crop, i in zip(crops, indices)
            ]
        )

    return predict


# --------------------------------------------------------------------------- evaluation
@dataclass
class MethodResult:
    name: str
    crop_ious: np.ndarray  # (N,)
    full_ious: np.ndarray  # (N,)
    seconds: float
    worst_best_logits: dict[int, np.ndarray] = field(default_factory=dict)  # index -> logits, for figures

    def summary(self, size_classes: np.ndarray) -> dict:
        return summarize(self.crop_ious, self.full_ious, size_classes)


def summarize(crop_ious: np.ndarray, full_ious: np.ndarray, size_classes: np.ndarray) -> dict:
    """The numbers of one method: overall and by COCO size class."""

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
    return overall


def evaluate_predictor(
    predictor: Predictor,
    evalset: EvalSet,
    name: str = "model",
    batch_size: int = 64,
    full_resolution: bool = True,
    progress: bool = False,
    keep_examples: int = 8,
) -> MethodResult:
    """Run ``predictor`` over ``evalset`` in batches; per-instance crop and full-res IoU."""
    n = len(evalset)
    crop_ious = np.zeros(n, np.float64)
    full_ious = np.zeros(n, np.float64)
    all_logits = np.zeros((n, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), np.float16) if keep_examples else None
    starts = range(0, n, batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"evaluating {name}", unit="batch")
    start_time = time.perf_counter()
    for start in starts:
        idx = np.arange(start, min(n, start + batch_size))
        logits = predictor(evalset.crops[idx], idx)
        if logits.shape != (len(idx), MODEL_INPUT_SIZE, MODEL_INPUT_SIZE):
            raise ValueError(f"{name}: expected logits of shape {(len(idx), 96, 96)}, got {logits.shape}")
        crop_ious[idx] = crop_space_ious(logits, evalset.gt_crops[idx])
        if full_resolution:
            for j, i in enumerate(idx):
                full_ious[i] = _full_iou_in_rect(
                    logits[j], evalset.rects[i], evalset.gt_in_rect[i], int(evalset.gt_outside[i])
                )
        if all_logits is not None:
            all_logits[idx] = np.clip(logits, -60000, 60000)
    seconds = time.perf_counter() - start_time
    examples: dict[int, np.ndarray] = {}
    if all_logits is not None and n:
        order = np.argsort(crop_ious, kind="stable")
        for i in list(order[:keep_examples]) + list(order[-keep_examples:]):
            examples[int(i)] = all_logits[i].astype(np.float32)
    return MethodResult(
        name, crop_ious, full_ious if full_resolution else crop_ious * np.nan, seconds, examples
    )


def _full_iou_in_rect(logits: np.ndarray, rect: CropRect, gt_in_rect: np.ndarray, gt_outside: int) -> float:
    """``full_resolution_iou`` without allocating the frame: the pasted prediction is 0
    (background) outside the crop rectangle, so only the rectangle and the GT count outside it matter."""
    pred = resize_to_crop(logits, rect) > 0
    inter = int(np.logical_and(pred, gt_in_rect).sum())
    union = int(pred.sum()) + int(gt_in_rect.sum()) + gt_outside - inter
    return 1.0 if union == 0 else inter / union


def quick_crop_miou(
    model, evalset: EvalSet, input_spec: InputSpec | None = None, batch_size: int = 64
) -> float:
    """The trainer's quick check: crop-space mIoU of a torch model (no full-res pass)."""
    result = evaluate_predictor(
        TorchPredictor(model, input_spec),
        evalset,
        batch_size=batch_size,
        full_resolution=False,
        keep_examples=0,
    )
    return float(result.crop_ious.mean())


def evaluate_methods(
    predictors: dict[str, Predictor], evalset: EvalSet, batch_size: int = 64, progress: bool = False
) -> dict[str, MethodResult]:
    return {
        name: evaluate_predictor(p, evalset, name, batch_size, progress=progress)
        for name, p in predictors.items()
    }


# --------------------------------------------------------------------------- reports
def build_report(results: dict[str, MethodResult], evalset: EvalSet, meta: dict | None = None) -> dict:
    sizes = evalset.size_classes()
    return {
        "dataset": evalset.name,
        "instances": len(evalset),
        "skipped": evalset.skipped,
        "instances_by_size": {b: int((sizes == b).sum()) for b in SIZE_BUCKETS},
        "protocol": {
            "crop": "standard crop (box +10% each side, square, clipped, 96x96); GT nearest; "
            "pred logits > 0; empty union = 1",
            "full": "logits pasted back (bilinear) into the frame, > 0, vs full-resolution GT",
            "mean_frac_iou_50_95": "mean over IoU thresholds "
            + ",".join(f"{t:.2f}" for t in IOU_THRESHOLDS)
            + " of the fraction of instances with IoU >= threshold (the papers' 'mAP')",
            "size": "COCO classes of the GT area: small < 32^2, medium < 96^2, large",
        },
        "methods": {
            name: {**r.summary(sizes), "seconds": round(r.seconds, 3)} for name, r in results.items()
        },
        "meta": meta or {},
    }


def report_markdown(report: dict) -> str:
    by_size = ", ".join(f"{k} {v}" for k, v in report["instances_by_size"].items())
    lines = [
        f"# Evaluation on {report['dataset']}",
        "",
        f"{report['instances']} instances ({by_size}); skipped: {report['skipped']}.",
        "",
        "| method | crop mIoU | full-res mIoU | mean_frac_iou_50_95 (crop) | small | medium | large |",
        "|---|---|---|---|---|---|---|",
    ]

    def fmt(v) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"

    for name, m in report["methods"].items():
        by = m["by_size"]
        lines.append(
            f"| {name} | {fmt(m['crop_miou'])} | {fmt(m['full_miou'])} | {fmt(m['mean_frac_iou_50_95'])} | "
            + " | ".join(fmt(by[b]["crop_miou"]) for b in SIZE_BUCKETS)
            + " |"
        )
    lines += ["", "Size columns: crop-space mIoU per COCO size class.", ""]
    for key, text in report["protocol"].items():
        lines.append(f"- **{key}**: {text}")
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


def plot_examples(result: MethodResult, evalset: EvalSet, path: Path, per_row: int = 8) -> None:
    """Worst (top row) and best (bottom row) instances: crop, GT outline green, prediction red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(result.crop_ious, kind="stable")
    chosen = [i for i in order[:per_row] if i in result.worst_best_logits]
    chosen_best = [i for i in order[::-1][:per_row] if i in result.worst_best_logits]
    rows = [("worst", chosen), ("best", chosen_best)]
    fig, axes = plt.subplots(2, per_row, figsize=(per_row * 1.4, 3.4), dpi=110, squeeze=False)
    for r, (label, indices) in enumerate(rows):
        for c in range(per_row):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(indices):
                continue
            i = int(indices[c])
            image = evalset.crops[i].copy()
            pred = result.worst_best_logits[i] > 0
            overlay = image.astype(np.float32)
            overlay[pred] = overlay[pred] * 0.5 + np.array([255, 0, 0]) * 0.5
            overlay = overlay.astype(np.uint8)
            contours, _ = cv2.findContours(
                evalset.gt_crops[i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
            )
            cv2.drawContours(overlay, contours, -1, (0, 255, 0), 1)
            ax.imshow(overlay)
            ax.set_title(f"{label} {result.crop_ious[i]:.2f}", fontsize=7)
    fig.suptitle(f"{result.name}: worst and best crop-space IoU (green GT, red prediction)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(
    results: dict[str, MethodResult],
    evalset: EvalSet,
    out_dir: str | Path,
    meta: dict | None = None,
    example_methods: Sequence[str] | None = None,
) -> dict:
    """report.json, report.md, size_bars.png and examples_<method>.png in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(results, evalset, meta)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(report_markdown(report))
    plot_size_bars(report, out_dir / "size_bars.png")
    for name in example_methods if example_methods is not None else list(results):
        if results[name].worst_best_logits:
            plot_examples(results[name], evalset, out_dir / f"examples_{_safe(name)}.png")
    return report


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


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
        help="model card (dir or json) for the ONNX input normalisation; "
        "default: the card beside each ONNX file, else the training one",
    )
    parser.add_argument(
        "--dataset", default=DEV_VAL_SPEC, help="annotations.json[:image_dir] (default: dev val)"
    )
    parser.add_argument("--data-root", default=None, help="root for relative dataset paths (../shared/data)")
    parser.add_argument("--baselines", default="box,grabcut", help="comma list of box,grabcut ('' for none)")
    parser.add_argument("--grabcut-iterations", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="first N instances only (0 = all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = default)")
    parser.add_argument("--out", default=None, help="write report.json/.md and figures here")
    args = parser.parse_args(argv)

    annotations, images = resolve_dataset(args.dataset, Path(args.data_root) if args.data_root else None)
    evalset = load_eval_set(annotations, images, limit=args.limit, progress=sys.stderr.isatty())
    print(f"{evalset.name}: {len(evalset)} instances; skipped {evalset.skipped}")
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
        if b == "box":
            predictors["box"] = box_predictor(evalset)
        elif b == "grabcut":
            predictors["grabcut"] = grabcut_predictor(evalset, args.grabcut_iterations)
        else:
            parser.error(f"unknown baseline {b!r} (box, grabcut)")
    if not predictors:
        parser.error("nothing to evaluate: give --checkpoint, --onnx or --baselines")
    results = evaluate_methods(predictors, evalset, args.batch_size, progress=sys.stderr.isatty())
    meta = {
        "command": "picosam3_train evaluate " + " ".join(argv if argv is not None else sys.argv[1:]),
        "annotations": str(annotations),
        "images": str(images),
    }
    if args.out:
        report = write_report(results, evalset, args.out, meta)
        print(f"wrote {args.out}/report.json, report.md and figures")
    else:
        report = build_report(results, evalset, meta)
    print(report_markdown(report).split("\nSize columns")[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
