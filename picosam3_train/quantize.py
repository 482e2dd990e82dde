"""INT8 post-training quantization with Sony's model-compression-toolkit (IMX500 target).

``quantize_model`` runs MCT PTQ with the IMX500 target platform capabilities,
calibrated on real crops preprocessed exactly as the model card says, and exports:

* ``*_int8.onnx``: the fake-quant export (QuantizeLinear/DequantizeLinear pairs, standard
  ops only) that stock ONNX Runtime runs: the CPU path's INT8 model. Its input and
  output are renamed to the card's ``image`` / ``logits``.
* ``*_mctq.onnx``: the MCTQ-format export (mct_quantizers custom ops), the only
  format Sony's ``imxconv-pt`` converts (see ``picosam3_train.imx500``).

For the sensor the normalisation is folded into the network (``NormalizedInput``):
the IMX500 feeds the network the ISP's RGB pixels, so the MCTQ model for
``imxconv-pt`` takes 0..255 pixels and starts with a fixed per-channel 1x1 conv
that computes ``(pixel * scale - mean) / std`` (see docs/imx500_packaging.md).

CLI: ``picosam3_train quantize --checkpoint CKPT --out DIR [--imx500]``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from picosam3_ros.core.coco_dataset import CocoDataset
from picosam3_ros.core.crop import crop_and_resize, crop_rect_for_box
from picosam3_ros.core.model_card import InputSpec

TPC_VERSION = (
    "1.0"  # MCT's default IMX500 TPC; its MCTQ output converts with imx500-converter 3.19 (verified)
)
DEFAULT_CALIBRATION_SPEC = "coco/annotations/instances_train2017.json:coco/train2017"


@dataclass
class QuantizeResult:
    int8_onnx: Path  # fake-quant QDQ, runs in stock ONNX Runtime
    mctq_onnx: Path  # MCTQ format, for imxconv-pt
    calibration_count: int
    seconds: float


class NormalizedInput:
    """Factory for a module computing ``model((pixel * scale - mean) / std)`` with the
    normalisation as a fixed depthwise 1x1 convolution (an op the IMX500 runs and MCT
    quantizes like any other layer)."""

    def __new__(cls, model, spec: InputSpec):
        import torch
        from torch import nn

        class _Normalized(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.normalize = nn.Conv2d(3, 3, 1, groups=3, bias=True)
                std = torch.tensor(spec.std, dtype=torch.float32)
                mean = torch.tensor(spec.mean, dtype=torch.float32)
                with torch.no_grad():
                    self.normalize.weight.copy_((spec.scale / std).view(3, 1, 1, 1))
                    self.normalize.bias.copy_(-mean / std)
                self.normalize.requires_grad_(False)
                self.model = model

            def forward(self, x):
                return self.model(self.normalize(x))

        return _Normalized().eval()


def pixel_input_spec(spec: InputSpec) -> InputSpec:
    """The input spec of a model with ``NormalizedInput`` folded in: raw 0..255 RGB pixels."""
    return InputSpec(spec.name, spec.size, spec.layout, spec.color, 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def calibration_crops(
    annotation_file: str | Path,
    image_dir: str | Path,
    count: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """``count`` real standard crops (uint8 RGB, N x 96 x 96 x 3) of random usable instances
    (the one reader's rule, ``picosam3_ros.core.coco_dataset``)."""
    dataset = CocoDataset(annotation_file, image_dir)
    candidates = [int(a["id"]) for anns in dataset.annotations_by_image.values() for a in anns]
    order = np.random.default_rng(seed).permutation(np.asarray(sorted(candidates), np.int64))
    crops: list[np.ndarray] = []
    start = 0
    # Draw in rounds: a drawn annotation may still turn out unusable (box or mask).
    while len(crops) < count and start < len(order):
        chosen = {int(a) for a in order[start : start + count - len(crops)]}
        start += len(chosen)
        for rgb, instance in dataset.instances(annotation_ids=chosen):
            crops.append(crop_and_resize(rgb, crop_rect_for_box(instance.bbox, (rgb.shape[1], rgb.shape[0]))))
    if not crops:
        raise ValueError(f"no calibration crops could be made from {annotation_file}")
    return np.stack(crops)


def _batches(data: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(data), batch_size):
        yield data[start : start + batch_size]


def rename_io(path: Path, input_name: str, output_name: str) -> None:
    """Rename the single graph input/output of an ONNX file in place (MCT names them
    'input'/'output'; the model card and the runtimes use 'image'/'logits')."""
    import onnx

    model = onnx.load(str(path))
    renames = {model.graph.input[0].name: input_name, model.graph.output[0].name: output_name}
    for old, new in list(renames.items()):
        if old == new:
            renames.pop(old)
    if not renames:
        return
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in list(model.graph.input) + list(model.graph.output):
        value.name = renames.get(value.name, value.name)
    onnx.save(model, str(path))


def quantize_model(
    model,
    calibration: np.ndarray,
    out_dir: str | Path,
    stem: str = "picosam3",
    batch_size: int = 16,
    input_name: str = "image",
    output_name: str = "logits",
    opset: int = 17,
    verbose: bool = True,
) -> QuantizeResult:
    """MCT PTQ of ``model`` (IMX500 TPC) on ``calibration`` (float32 NCHW, already in the
    model's input space); writes ``<stem>_int8.onnx`` (QDQ) and ``<stem>_mctq.onnx``."""
    import torch

    from picosam3_train.compat import import_mct, torchscript_onnx_export
    from picosam3_train.export import exportable_copy

    mct = import_mct()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = exportable_copy(model)
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or calibration.shape[1] != 3:
        raise ValueError(f"calibration must be float (N, 3, H, W), got {calibration.shape}")

    def representative_data() -> Iterator[list]:
        for batch in _batches(calibration, batch_size):
            yield [torch.from_numpy(batch)]

    tpc = mct.get_target_platform_capabilities(tpc_version=TPC_VERSION, device_type="imx500")
    start = time.perf_counter()
    quantized, _ = mct.ptq.pytorch_post_training_quantization(
        model, representative_data, target_platform_capabilities=tpc
    )
    int8_path, mctq_path = out_dir / f"{stem}_int8.onnx", out_dir / f"{stem}_mctq.onnx"
    formats = mct.exporter.QuantizationFormat
    for path, fmt in ((int8_path, formats.FAKELY_QUANT), (mctq_path, formats.MCTQ)):
        with torchscript_onnx_export():
            mct.exporter.pytorch_export_model(
                quantized,
                str(path),
                representative_data,
                quantization_format=fmt,
                onnx_opset_version=opset,
                output_names=[output_name],
            )
        rename_io(path, input_name, output_name)
    seconds = time.perf_counter() - start
    if verbose:
        print(
            f"MCT PTQ (IMX500 TPC {TPC_VERSION}) on {len(calibration)} crops in {seconds:.0f} s: "
            f"{int8_path.name} (QDQ, ONNX Runtime), {mctq_path.name} (MCTQ, imxconv-pt)"
        )
    return QuantizeResult(int8_path, mctq_path, len(calibration), seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="picosam3_train quantize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--calibration", default=DEFAULT_CALIBRATION_SPEC, help="annotations.json[:image_dir]"
    )
    parser.add_argument("--calibration-count", type=int, default=256)
    parser.add_argument(
        "--imx500",
        action="store_true",
        help="also quantize the pixel-input (normalisation folded) model and run imxconv-pt",
    )
    args = parser.parse_args(argv)

    from picosam3_train.checkpoint import load_checkpoint
    from picosam3_train.config import resolve_dataset
    from picosam3_train.predictors import input_spec_from_config

    model, config, _ = load_checkpoint(args.checkpoint)
    spec = input_spec_from_config(config)
    crops = calibration_crops(*resolve_dataset(args.calibration), count=args.calibration_count)
    stem = Path(args.checkpoint).stem
    quantize_model(model, spec.preprocess(crops), args.out, stem=stem)
    if args.imx500:
        from picosam3_train.imx500 import ConversionError, convert

        sensor = quantize_model(
            NormalizedInput(model, spec),
            pixel_input_spec(spec).preprocess(crops),
            Path(args.out) / "imx500",
            stem=f"{stem}_pixels",
        )
        try:
            result = convert(sensor.mctq_onnx, Path(args.out) / "imx500")
            print(result.describe())
        except ConversionError as exc:
            print(f"imxconv-pt failed: {exc}")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
