"""``picosam3_train evaluate``: the one evaluator of box-prompted segmentation (the node's own code).

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

Predictors are a torch model, an ONNX file (ONNX Runtime) or the GrabCut baseline.

This module is the CLI: ``picosam3_train evaluate --checkpoint CKPT | --onnx FILE ... [--box-jitter
0.05] [--out DIR]``. The work is in three rooms: :mod:`picosam3_train.predictors` (what makes the
logits), :mod:`picosam3_train.scoring` (the evaluation itself, :func:`evaluate_frames`, which the
trainer calls too) and :mod:`picosam3_train.report` (report.json, report.md, figures); datasets are
named as :func:`picosam3_train.config.resolve_dataset` reads them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from picosam3_ros.core.model_card import InputSpec, ModelCardError, load_model_card, postprocess_in_use
from picosam3_ros.core.postprocess import RAW_POSTPROCESS, add_postprocess_arguments
from picosam3_train.config import DEV_VAL_DATASET as DEV_VAL_SPEC
from picosam3_train.config import resolve_dataset
from picosam3_train.predictors import (
    CropBatch,
    CropPredictor,
    OnnxPredictor,
    TorchPredictor,
    default_input_spec,
    grabcut_logits,
    grabcut_predictor,
    input_spec_from_config,
)
from picosam3_train.report import build_report, report_markdown, write_report
from picosam3_train.scoring import (
    JITTER_SWEEP,
    PROTOCOLS,
    SWEEP_GROWS,
    SWEEP_MARGINS,
    SWEEP_THRESHOLDS,
    EvalImage,
    FrameEvaluation,
    Scores,
    box_set_name,
    calibration,
    evaluate_frames,
    iter_eval_images,
    jitter_box_sets,
    prompt_boxes,
    summarize,
    sweep_settings,
    variant_key,
)

# What other modules and tests reach through this one (the CLI's neighbours, re-exported).
__all__ = [
    "DEV_VAL_SPEC", "JITTER_SWEEP", "PROTOCOLS", "CropBatch", "CropPredictor", "EvalImage", "FrameEvaluation",
    "OnnxPredictor", "Scores", "TorchPredictor", "box_set_name", "build_report", "calibration",
    "default_input_spec", "evaluate_frames", "grabcut_logits", "grabcut_predictor", "input_spec_from_config",
    "iter_eval_images", "jitter_box_sets", "main", "prompt_boxes", "report_markdown", "resolve_dataset",
    "summarize", "sweep_settings", "variant_key", "write_report",
]


def _spec_for_onnx(path: Path, card: str | None) -> InputSpec:
    for candidate in ([Path(card)] if card else []) + [path.parent]:
        try:
            return load_model_card(candidate).input
        except ModelCardError:
            continue
    return default_input_spec()


def build_arg_parser() -> argparse.ArgumentParser:
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
    return parser


def _predictors(args, parser: argparse.ArgumentParser) -> tuple[dict[str, CropPredictor], list[str]]:
    """The predictors the options name, and the baselines."""
    predictors: dict[str, CropPredictor] = {}
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
    return predictors, baselines


def main(argv: list[str] | None = None) -> int:
    parser = build_arg_parser()
    args = parser.parse_args(argv)

    annotations, images = resolve_dataset(args.dataset, Path(args.data_root) if args.data_root else None)
    predictors, baselines = _predictors(args, parser)
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
