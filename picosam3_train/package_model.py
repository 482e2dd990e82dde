"""Build the shipped model folder from a checkpoint.

``picosam3_train package --checkpoint CKPT --out picosam3_ros/models`` does, in order:

1. fp32 ONNX export (``picosam3_fp32.onnx``; onnx.checker, ORT vs torch);
2. MCT INT8 PTQ (IMX500 target), calibrated on real COCO-train crops preprocessed per
   the card -> ``picosam3_int8.onnx`` (QDQ, stock ONNX Runtime);
3. the sensor model: normalisation folded in (pixel input), PTQ, MCTQ export,
   ``imxconv-pt`` -> ``packerOut.zip`` with its memory report;
4. the model's post-processing (threshold, box margin, growth) chosen on the calibration
   split (COCO train images held out of training, ``picosam3_train/splits.py``; never dev
   val) by a sweep under GT boxes and the box-noise sweep (5, 10, 20%), then the evaluation
   on dev val of fp32, INT8 and the sensor model
   (fake-quant twin) against the box baseline (``picosam3_train.scoring``: both crop
   protocols, crop space and full frame, by size);
5. ``model_card.json``, written by ``picosam3_ros.core.model_card`` (the module every
   runtime reads it with; it checks the card against the fp32 and INT8 graphs; its
   ``postprocess`` block is what the node uses by default), and the evaluation report.

If the converter step fails, fp32 and INT8 are still written and the card says why
``imx500`` is missing.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from picosam3_ros.core.crop import CROP_RULE_VERSION
from picosam3_ros.core.model_card import MODEL_CARD_NAME, InputSpec, ModelCard, write_model_card
from picosam3_ros.core.postprocess import Postprocess
from picosam3_train.splits import CALIBRATION_SPEC

FP32_NAME = "picosam3_fp32.onnx"
INT8_NAME = "picosam3_int8.onnx"
IMX500_NAME = "packerOut.zip"
REPORT_DIR = "eval"


def _teacher_info(config) -> list[dict]:
    """Teacher name and provenance from the cache meta.json files the config trained with."""
    teachers = []
    for cache in getattr(config, "teacher_caches", []) or []:
        meta_path = Path(cache) / "meta.json"
        if not meta_path.is_absolute():
            meta_path = Path(__file__).resolve().parent.parent / meta_path
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            teachers.append({"cache": str(cache), "error": "meta.json unreadable"})
            continue
        teachers.append(
            {"cache": str(cache), **{k: meta.get(k) for k in ("teacher", "provenance", "dataset")}}
        )
    return teachers


def _metrics(method: dict) -> dict:
    """The card's figures of one method: the headline (project rule, GT boxes, the node's
    post-processing) and every protocol / box set / post-processing variant, by size."""
    keys = ("count", "crop_miou", "full_miou", "mean_frac_iou_50_95", "full_mean_frac_iou_50_95")
    out = {k: method.get(k) for k in keys}
    out["by_size_crop_miou"] = {b: v["crop_miou"] for b, v in method["by_size"].items()}
    out["by_size_full_miou"] = {b: v["full_miou"] for b, v in method["by_size"].items()}
    out["variants"] = {
        key: {
            "crop_miou": v["crop_miou"],
            "full_miou": v["full_miou"],
            "by_size_crop_miou": {b: s["crop_miou"] for b, s in v["by_size"].items()},
            "by_size_full_miou": {b: s["full_miou"] for b, s in v["by_size"].items()},
            **({"by_crowding_full_miou": {b: s["full_miou"] for b, s in v["by_crowding"].items()}}
               if "by_crowding" in v else {}),
        }
        for key, v in method.get("variants", {}).items()
    }
    return out


def choose_postprocess(report: dict, method: str) -> dict:
    """The sweep setting with the best mean full-frame mIoU over the box sets (GT and the
    box-noise sweep): a robot's boxes are anywhere between tight and 20% off."""
    totals: dict[tuple, list[float]] = {}
    for row in report.get("sweep", []):
        if row["method"] == method and row["setting"] not in ("raw", "node"):
            key = (row["threshold"], row["box_margin"], row.get("grow_threshold"))
            totals.setdefault(key, []).append(row["full_miou"])
    (threshold, margin, grow), values = max(totals.items(), key=lambda kv: sum(kv[1]) / len(kv[1]))
    return {"threshold": threshold, "box_margin": margin, "grow_threshold": grow,
            "mean_full_miou": sum(values) / len(values)}


@dataclass
class _SensorModel:
    """Step 3's outcome: the fake-quant twin to evaluate (None if it failed), the card's imx500 block."""

    quantized: object | None
    info: dict


def build_package(
    checkpoint: str | Path,
    out_dir: str | Path,
    calibration_spec: str,
    calibration_count: int,
    eval_spec: str,
    eval_limit: int = 0,
    work_dir: str | Path | None = None,
    skip_imx500: bool = False,
    command: str = "",
    choose_on: str = CALIBRATION_SPEC,
) -> dict:
    """Steps 1-5 of the module docstring; returns the card as written."""
    from picosam3_train.checkpoint import load_checkpoint
    from picosam3_train.config import resolve_dataset
    from picosam3_train.export import OUTPUT_NAME, export_onnx
    from picosam3_train.predictors import input_spec_from_config
    from picosam3_train.quantize import calibration_crops, quantize_model

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="picosam3_package_"))
    work.mkdir(parents=True, exist_ok=True)
    model, config, extra = load_checkpoint(checkpoint)
    spec: InputSpec = input_spec_from_config(config)

    print("[1/5] fp32 ONNX export")
    exported = export_onnx(model, out_dir / FP32_NAME)

    print(f"[2/5] INT8 PTQ, calibration: {calibration_count} crops of {calibration_spec}")
    calib_ann, calib_images = resolve_dataset(calibration_spec)
    crops = calibration_crops(calib_ann, calib_images, count=calibration_count)
    cpu_q = quantize_model(model, spec.preprocess(crops), work, stem="picosam3")
    shutil.copyfile(cpu_q.int8_onnx, out_dir / INT8_NAME)
    files = {"fp32": FP32_NAME, "int8": INT8_NAME}

    print("[3/5] sensor model (normalisation folded in) and imxconv-pt")
    sensor = _sensor_model(model, spec, crops, work, out_dir, skip_imx500)
    if "missing_reason" in sensor.info:
        print(f"    imx500 file missing: {sensor.info['missing_reason']}")
        (out_dir / IMX500_NAME).unlink(missing_ok=True)
    else:
        files["imx500"] = IMX500_NAME

    print(f"[4/5] post-processing sweep on {choose_on}, then the evaluation on {eval_spec}")
    metrics, node = _evaluate(out_dir, spec, sensor.quantized, eval_spec, eval_limit, work, checkpoint,
                              choose_on)

    print("[5/5] model card")
    card = write_model_card(
        out_dir,
        files,
        spec,
        OUTPUT_NAME,
        crop=f"picosam3_ros.core.crop.crop_rect_for_box (rule v{CROP_RULE_VERSION}): box + 10% each side, "
        "square, shrunk symmetrically about the box centre to fit the image, resized to 96x96 "
        "without keeping aspect",
        model={
            "name": getattr(config, "model", None),
            "width_mult": getattr(config, "width_mult", None),
            "stem_stride": getattr(config, "stem_stride", 2),
            "checkpoint": str(checkpoint),
            "training_extra": {k: v for k, v in extra.items() if isinstance(v, (int, float, str))},
        },
        training_data=list(getattr(config, "train_datasets", [])),
        teacher=_teacher_info(config) or "none (ground truth only)",
        export={"opset": exported.opset, "ort_vs_torch_max_abs_diff": exported.max_abs_diff},
        quantization={
            "tool": "model-compression-toolkit PTQ",
            "target": "imx500",
            "tpc_version": sensor.info["tpc_version"],
            "calibration": f"{cpu_q.calibration_count} crops of {calibration_spec}",
            "int8_format": "fake-quant QDQ ONNX (QuantizeLinear/DequantizeLinear)",
        },
        imx500=sensor.info,
        postprocess={
            "threshold": node.threshold,
            "box_margin": node.box_margin,
            "grow_threshold": node.grow_threshold,
            "chosen_on": f"{choose_on}, best mean full-frame mIoU over GT boxes and each side moved by "
            "N(0, 5/10/20%) of the box size (picosam3_train evaluate --sweep); dev val only reports",
        },
        metrics=metrics,
        reproduce={
            "train": extra.get("command")
            or "picosam3_train train --config CONFIG.yaml (training_config below)",
            "package": command,
            "training_config": config.to_dict() if hasattr(config, "to_dict") else {},
        },
    )
    # The card's names and shapes must be the exported graphs' (what every runtime checks at start-up).
    for role in ("fp32", "int8"):
        _check_against_graph(card, role)
    print(f"wrote {out_dir / MODEL_CARD_NAME}; files {files}; evaluation report in {work / REPORT_DIR}")
    return card.raw


def _sensor_model(model, spec: InputSpec, crops, work: Path, out_dir: Path, skip: bool) -> _SensorModel:
    """Quantize the pixel-input twin, convert it to packerOut.zip; a failure only sets ``missing_reason``."""
    from picosam3_train.quantize import TPC_VERSION, NormalizedInput, pixel_input_spec, quantize_model

    info: dict = {"tpc_version": TPC_VERSION}
    if skip:
        info["missing_reason"] = "skipped (--skip-imx500)"
        return _SensorModel(None, info)
    try:
        from picosam3_train.imx500 import ConversionError, convert

        quantized = quantize_model(
            NormalizedInput(model, spec),
            pixel_input_spec(spec).preprocess(crops),
            work / "imx500",
            stem="picosam3_pixels",
        )
    except Exception as exc:  # noqa: BLE001  (MCT failures must not lose fp32/int8)
        info["missing_reason"] = f"sensor-model quantization failed: {exc!r}"
        return _SensorModel(None, info)
    try:
        result = convert(quantized.mctq_onnx, work / "imx500")
    except ConversionError as exc:
        info["missing_reason"] = str(exc)
        return _SensorModel(quantized, info)
    except Exception as exc:  # noqa: BLE001  (a converter crash must not lose fp32/int8 either)
        info["missing_reason"] = f"imxconv-pt failed: {exc!r}"
        return _SensorModel(quantized, info)
    print("   ", result.describe())
    shutil.copyfile(result.packer_zip, out_dir / IMX500_NAME)
    info.update(
        {
            "memory_report": result.memory_report,
            "fits_8mb": result.fits,
            "input": "RGB pixels 0..255 (normalisation folded into the network)",
        }
    )
    return _SensorModel(quantized, info)


def _evaluate(
    out_dir: Path, spec: InputSpec, sensor_q, eval_spec: str, eval_limit: int, work: Path, checkpoint: Path,
    choose_on: str = CALIBRATION_SPEC,
) -> tuple[dict, Postprocess]:
    """The model's post-processing (a sweep on ``choose_on`` under GT and jittered boxes, fp32),
    then the card's metrics on ``eval_spec``: fp32, INT8, the sensor model's fake-quant twin and
    the box, both crop protocols, the box-noise sweep."""
    from picosam3_ros.core.postprocess import RAW_POSTPROCESS
    from picosam3_train.config import resolve_dataset
    from picosam3_train.predictors import OnnxPredictor
    from picosam3_train.quantize import pixel_input_spec
    from picosam3_train.report import build_report, write_report
    from picosam3_train.scoring import evaluate_frames, jitter_box_sets, sweep_settings

    eval_ann, eval_images = resolve_dataset(eval_spec)
    box_sets = jitter_box_sets()
    # The model's own calibration, on data the project does not report on.
    choose_ann, choose_images = resolve_dataset(choose_on)
    sweep = sweep_settings()
    fp32 = {"fp32": OnnxPredictor(out_dir / FP32_NAME, spec)}
    settings = {"raw": RAW_POSTPROCESS, **sweep}
    swept = evaluate_frames(fp32, choose_ann, choose_images, settings, ("project",), box_sets,
                            limit=eval_limit, keep_examples=False)
    chosen = choose_postprocess(build_report(swept, sweep=list(sweep)), "fp32")
    node = Postprocess(chosen["threshold"], chosen["box_margin"], chosen["grow_threshold"])
    print(f"    post-processing: {node.label()} (mean full-frame mIoU {chosen['mean_full_miou']:.4f})")
    predictors = {
        "fp32": fp32["fp32"],
        "int8": OnnxPredictor(out_dir / INT8_NAME, spec),
    }
    if sensor_q is not None:
        predictors["imx500_fakequant"] = OnnxPredictor(sensor_q.int8_onnx, pixel_input_spec(spec))
    evaluation = evaluate_frames(predictors, eval_ann, eval_images, {"node": node, "raw": RAW_POSTPROCESS},
                                 ("project", "papers"), box_sets, limit=eval_limit)
    report = write_report(
        evaluation, work / REPORT_DIR, meta={"checkpoint": str(checkpoint)}, example_methods=["fp32"]
    )
    methods = report["methods"]
    gap_pt = 100.0 * (methods["fp32"]["full_miou"] - methods["int8"]["full_miou"])
    print(
        f"    full-frame mIoU fp32 {methods['fp32']['full_miou']:.4f}, "
        f"int8 {methods['int8']['full_miou']:.4f} (gap {gap_pt:.2f} pt), "
        f"box {methods['box']['full_miou']:.4f}"
    )
    metrics = {
        "dataset": eval_spec,
        "instances": len(evaluation),
        "headline": report["headline"],
        "protocol": report["protocol"],
        "boxes": report["boxes"],
        **{name: _metrics(m) for name, m in methods.items()},
        "int8_gap_full_miou_pt": gap_pt,
    }
    return metrics, node


def _check_against_graph(card: ModelCard, role: str) -> None:
    from picosam3_ros.core.onnx_session import cpu_session

    session = cpu_session(card.path(role), threads=1)
    card.check_graph(card.path(role), session.get_inputs(), session.get_outputs())


def main(argv: list[str] | None = None) -> int:
    from picosam3_train.config import DEV_VAL_DATASET
    from picosam3_train.quantize import DEFAULT_CALIBRATION_SPEC

    parser = argparse.ArgumentParser(prog="picosam3_train package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", default="picosam3_ros/models")
    parser.add_argument(
        "--calibration", default=DEFAULT_CALIBRATION_SPEC, help="annotations.json[:image_dir]"
    )
    parser.add_argument("--calibration-count", type=int, default=256)
    parser.add_argument("--eval-dataset", default=DEV_VAL_DATASET,
                        help="the split the card reports (dev val)")
    parser.add_argument("--choose-on", default=CALIBRATION_SPEC,
                        help="the split the post-processing is chosen on (default: the calibration split)")
    parser.add_argument("--eval-limit", type=int, default=0)
    parser.add_argument("--work-dir", default="runs/package", help="intermediate files and the eval report")
    parser.add_argument("--skip-imx500", action="store_true")
    args = parser.parse_args(argv)
    command = "picosam3_train package " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    build_package(
        args.checkpoint,
        args.out,
        args.calibration,
        args.calibration_count,
        args.eval_dataset,
        args.eval_limit,
        args.work_dir,
        args.skip_imx500,
        command,
        args.choose_on,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
