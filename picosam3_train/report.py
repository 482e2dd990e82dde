"""The report of ``picosam3_train evaluate``: report.json, report.md and the figures.

:func:`build_report` turns a :class:`~picosam3_train.scoring.FrameEvaluation` into the JSON report
(per method the headline, every variant, the calibration; the box baseline; the sweep rows);
:func:`report_markdown` and the plots read that report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from picosam3_ros.core.metrics import CROWDING_BUCKETS, IOU_THRESHOLDS
from picosam3_train.scoring import (
    HEADLINE,
    SIZE_BUCKETS,
    Examples,
    FrameEvaluation,
    calibration,
    summarize,
    variant_key,
)

# What each word of the report means (its "protocol" block).
PROTOCOL_NOTES = {
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
    "mean_frac_iou_50_95": "mean over IoU thresholds " + ",".join(f"{t:.2f}" for t in IOU_THRESHOLDS)
    + " of the fraction of instances with IoU >= threshold (the papers' 'mAP')",
    "size": "COCO classes of the annotation area: small < 32^2, medium < 96^2, large",
    "calibration": "predicted vs true mask area in full-frame pixels, project rule",
    "crowding": "other annotated objects with at least half their box inside the GT box's crop "
    "(project rule): 0, 1-2, 3+ (metrics.objects_in_crop)",
}


def _sweep_rows(evaluation: FrameEvaluation, sizes, sweep: Sequence[str]) -> list[dict]:
    """The post-processing rows (project rule): every swept setting, and raw and node beside them."""
    rows = []
    for name, by_variant in evaluation.scores.items():
        for (protocol, boxes, setting_name), s in by_variant.items():
            if setting_name not in sweep and setting_name not in ("raw", "node"):
                continue
            if protocol != "project":
                continue
            summary = summarize(s.crop_ious, s.full_ious, sizes)
            setting = evaluation.settings[setting_name]
            rows.append(
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
    return rows


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
    sweep_rows = _sweep_rows(evaluation, sizes, sweep)
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
        "protocol": dict(PROTOCOL_NOTES),
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
