"""Reports of a bag evaluation: JSON, a markdown summary, PNG figures, overlay images.

matplotlib is only needed for the figures (imported lazily, Agg backend);
overlays are drawn with OpenCV so the demo can draw them without matplotlib.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from picosam3_ros.core.palette import PALETTE as PROMPT_PALETTE
from picosam3_ros.evaluation.bag_evaluation import Evaluation, OverlaySample

# RGB colour per prompt value 1, 2, ... (cycled), the same as the node's and the page's.
PALETTE = np.array(PROMPT_PALETTE, dtype=np.uint8)


def draw_overlay(
    image_rgb: np.ndarray,
    label_mask: np.ndarray,
    boxes=(),
    ground_truth: np.ndarray | None = None,
    alpha: float = 0.5,
) -> np.ndarray:
    """RGB image: the label mask tinted (one colour per value), the boxes, GT outlines in white."""
    out = image_rgb.astype(np.float32).copy()
    values = label_mask.astype(np.int32)
    tinted = values > 0
    if tinted.any():
        colours = PALETTE[(values[tinted] - 1) % len(PALETTE)].astype(np.float32)
        out[tinted] = (1 - alpha) * out[tinted] + alpha * colours
    out = out.clip(0, 255).astype(np.uint8)
    if ground_truth is not None:
        edges = cv2.morphologyEx(ground_truth, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        out[edges] = (255, 255, 255)
    for k, (x, y, w, h) in enumerate(boxes, start=1):
        colour = tuple(int(c) for c in PALETTE[(k - 1) % len(PALETTE)])
        cv2.rectangle(out, (int(x), int(y)), (int(x + w - 1), int(y + h - 1)), colour, 2)
    return out


def image_grid(images: list[np.ndarray], columns: int = 3, cell_width: int = 320) -> np.ndarray:
    """Tile RGB images (resized to one cell width, keeping aspect) into one RGB image."""
    if not images:
        return np.zeros((cell_width * 3 // 4, cell_width, 3), np.uint8)
    cells = []
    for image in images:
        h, w = image.shape[:2]
        cells.append(
            cv2.resize(image, (cell_width, max(1, round(h * cell_width / w))), interpolation=cv2.INTER_AREA)
        )
    cell_height = max(c.shape[0] for c in cells)
    rows = []
    for start in range(0, len(cells), columns):
        row = [
            np.pad(c, ((0, cell_height - c.shape[0]), (0, 0), (0, 0))) for c in cells[start : start + columns]
        ]
        row += [np.zeros((cell_height, cell_width, 3), np.uint8)] * (columns - len(row))
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def overlay_image(sample: OverlaySample) -> np.ndarray:
    return draw_overlay(sample.image_rgb, sample.prediction, sample.boxes, sample.ground_truth)


def write_png(path: Path, image_rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(image_rgb[:, :, ::-1])):
        raise OSError(f"cannot write {path}")


def write_json(evaluation: Evaluation, path: Path | str, extra: dict | None = None) -> dict:
    report = evaluation.summary()
    if extra:
        report.update(extra)
    report["per_instance"] = evaluation.instance_rows()
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _fmt(value, digits: int = 1, scale: float = 1.0) -> str:
    return "n/a" if value is None else f"{value * scale:.{digits}f}"


def markdown_summary(summary: dict, figures: list[str] = ()) -> str:
    lat = summary["latency_ms"]
    statuses = ", ".join(f"{k}: {v}" for k, v in summary["status_counts"].items()) or "none"
    lines = [
        "# Bag evaluation",
        "",
        f"- bag: `{summary['bag']}`",
        f"- mode: {summary['mode']}, backend: {summary['backend'] or 'n/a'}"
        + (f", model: `{summary['model']}`" if summary.get("model") else ""),
        f"- topics: image `{summary['topics']['image']}`, prompts `{summary['topics']['prompt']}`, "
        f"ground truth `{summary['topics']['ground_truth']}`"
        + (
            f", segmentations `{summary['topics']['segmentations']}`"
            if summary["topics"].get("segmentations")
            else ""
        ),
        "",
        "| metric | value |",
        "|---|---|",
        f"| frames (with prompts / with ground truth) | {summary['frames']} "
        f"({summary['frames_with_prompts']} / {summary['frames_with_ground_truth']}) |",
        f"| prompts offered / instances scored | {summary['prompts']} / {summary['instances']} |",
        *([f"| frames skipped as bad images | {summary['bad_frames']} ({summary['bad_frame_reason']}) |"]
          if summary.get("bad_frames") else []),
        f"| mIoU crop space, 96x96 (%) | {_fmt(summary['miou_crop'], 2, 100)} |",
        f"| mIoU full frame (%) | {_fmt(summary['miou_full'], 2, 100)} |",
        "| box-as-mask mIoU crop space / full frame (%) | "
        f"{_fmt(summary['miou_crop_box_baseline'], 2, 100)} / "
        f"{_fmt(summary.get('miou_full_box_baseline'), 2, 100)} |",
        f"| mean fraction above IoU .50:.95, crop (%) | "
        f"{_fmt(summary['mean_fraction_above_iou_50_95_crop'], 2, 100)} |",
        "| mIoU crop by size small / medium / large (%) | "
        + " / ".join(
            f"{_fmt(summary['miou_crop_by_size'][k], 1, 100)} (n={summary['instances_by_size'][k]})"
            for k in ("small", "medium", "large")
        )
        + " |",
        *_size_rows(summary),
        f"| latency p50 / p90 / p99 (ms) | {_fmt(lat['p50'], 2)} / {_fmt(lat['p90'], 2)} / "
        f"{_fmt(lat['p99'], 2)} |",
        f"| throughput (frames/s) | {_fmt(summary['throughput_fps'], 1)} |",
        f"| result statuses | {statuses} |",
        "",
        f"Latency: {lat['what']}. Throughput: {summary['throughput_what']}.",
    ]
    if summary.get("postprocess"):
        post = summary["postprocess"]
        margin = "no box clip" if post["box_margin"] is None else f"box margin {post['box_margin']:g}"
        lines.append(f"Post-processing: threshold {post['threshold']:g}, {margin}. ")
        lines[-1] += f"Boxes: {summary['boxes']}."
    if summary.get("box_baseline_rule"):
        lines.append(f"Box baseline: {summary['box_baseline_rule']}.")
    if summary.get("unmatched_results"):
        lines.append(
            f"{summary['unmatched_results']} recorded results named prompts absent from the bag's prompt set "
            "at that frame (not scored)."
        )
    lines += _robustness_rows(summary)
    if figures:
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def _robustness_rows(summary: dict) -> list[str]:
    """The box-noise sweep (``--jitter-sweep``) and the crowding breakdown, full-frame mIoU (%)."""
    lines = []
    if summary.get("jitter_sweep"):
        lines += ["", "## Box noise sweep (full-frame mIoU, %)", "",
                  "| box noise | node | box itself |", "|---|---|---|"]
        for row in summary["jitter_sweep"]:
            lines.append(f"| {row['box_jitter']:g} | {_fmt(row['miou_full'], 2, 100)} | "
                         f"{_fmt(row['miou_full_box_baseline'], 2, 100)} |")
    counts = summary.get("instances_by_crowding")
    if counts and summary.get("instances"):
        lines += ["", "## By other prompted objects in the crop (full-frame mIoU, %)", "",
                  "| other objects | instances | node | box itself |", "|---|---|---|---|"]
        for bucket, n in counts.items():
            lines.append(f"| {bucket} | {n} | {_fmt(summary['miou_full_by_crowding'][bucket], 2, 100)} | "
                         f"{_fmt(summary['box_baseline_full_by_crowding'][bucket], 2, 100)} |")
    return lines


def _size_rows(summary: dict) -> list[str]:
    """Full-frame and box rows by size, and the papers' crop rule when it was run."""
    sizes = ("small", "medium", "large")

    def row(label: str, values: dict | None) -> str:
        return f"| {label} | " + " / ".join(_fmt((values or {}).get(k), 1, 100) for k in sizes) + " |"

    rows = [row("mIoU full frame by size small / medium / large (%)", summary.get("miou_full_by_size"))]
    box = summary.get("box_baseline_by_size") or {}
    rows.append(row("box-as-mask mIoU full frame by size (%)", box.get("full")))
    papers = summary.get("papers")
    if papers:
        rows.append(
            f"| papers' crop rule: mIoU crop / full (%) | {_fmt(papers['miou_crop'], 2, 100)} / "
            f"{_fmt(papers['miou_full'], 2, 100)} |"
        )
        rows.append(row("papers' crop rule: mIoU full by size (%)", papers["miou_full_by_size"]))
    return rows


def write_figures(evaluation: Evaluation, directory: Path | str) -> list[str]:
    """IoU histogram, latency over time, and overlay PNGs; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    if evaluation.instances:
        bins = np.linspace(0, 1, 21)
        ax.hist([s.iou_crop for s in evaluation.instances], bins=bins, alpha=0.7, label="crop space 96x96")
        ax.hist([s.iou_full for s in evaluation.instances], bins=bins, alpha=0.5, label="full frame")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no scored instances", ha="center", va="center")
    ax.set_xlabel("IoU per instance")
    ax.set_ylabel("instances")
    ax.set_title(f"IoU histogram ({len(evaluation.instances)} instances)")
    fig.tight_layout()
    path = directory / "iou_histogram.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(str(path))

    fig, ax = plt.subplots(figsize=(7, 3.5))
    latency = evaluation.frame_latency_ms
    if latency:
        ax.plot(np.arange(len(latency)), latency, ".", markersize=3)
        ax.axhline(float(np.percentile(latency, 50)), color="g", linestyle="--", label="p50")
        ax.axhline(float(np.percentile(latency, 99)), color="r", linestyle="--", label="p99")
        ax.legend()
    ax.set_xlabel("frame (run) / result (recorded), in bag order")
    ax.set_ylabel("latency (ms)")
    ax.set_title("latency over time")
    fig.tight_layout()
    path = directory / "latency.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(str(path))

    if evaluation.overlays:
        path = directory / "overlays.png"
        write_png(path, image_grid([overlay_image(s) for s in evaluation.overlays]))
        written.append(str(path))
    return written
