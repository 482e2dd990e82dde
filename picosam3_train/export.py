"""fp32 ONNX export of a PicoSAM model.

The graph has one input ``image`` (N, 3, 96, 96) float32, normalised per the model
card, with a dynamic batch axis, and one output ``logits`` (N, 1, 96, 96) (> 0 =
object). Exported with the TorchScript exporter (``dynamo=False``; opset 17), then
checked with ``onnx.checker`` and compared with torch in ONNX Runtime.

CLI: ``picosam3_train export --checkpoint CKPT --out model.onnx``.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from picosam3_ros.core.crop import MODEL_INPUT_SIZE

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 17


@dataclass
class ExportResult:
    path: Path
    max_abs_diff: float  # ONNX Runtime vs torch on a random batch
    opset: int


def exportable_copy(model):
    """A CPU eval-mode copy with export-friendly blocks (ECA as a banded 1x1 conv, if the
    trainer's model offers ``prepare_for_export``); the training model is left untouched."""
    model = copy.deepcopy(model).cpu().eval()
    try:
        from picosam3_train.model import prepare_for_export
    except ImportError:  # a foreign model: export as it is
        return model
    return prepare_for_export(model)


def export_onnx(
    model,
    path: str | Path,
    input_size: int = MODEL_INPUT_SIZE,
    opset: int = OPSET,
    check_batch: int = 3,
    seed: int = 0,
    verbose: bool = True,
) -> ExportResult:
    """Export ``model`` to ``path``; run onnx.checker and compare ONNX Runtime with torch."""
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = exportable_copy(model)
    dummy = torch.zeros(1, 3, input_size, input_size)
    with torch.inference_mode():
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx_model = onnx.load(str(path))
    onnx.checker.check_model(onnx_model, full_check=True)
    diff = compare_with_torch(model, path, input_size, check_batch, seed)
    if verbose:
        print(
            f"exported {path} (opset {opset}, {path.stat().st_size / 1e6:.2f} MB); "
            f"onnx.checker OK; ONNX Runtime vs torch max abs diff {diff:.3g} (batch {check_batch})"
        )
    return ExportResult(path, diff, opset)


def compare_with_torch(
    model, onnx_path: str | Path, input_size: int = MODEL_INPUT_SIZE, batch: int = 3, seed: int = 0
) -> float:
    """Max |ORT - torch| of the logits on a random normal batch."""
    import onnxruntime as ort
    import torch

    x = np.random.default_rng(seed).standard_normal((batch, 3, input_size, input_size)).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ort_out = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.inference_mode():
        torch_out = model.eval()(torch.from_numpy(x)).numpy()
    if ort_out.shape != torch_out.shape:
        raise AssertionError(f"ONNX output {ort_out.shape} differs from torch {torch_out.shape}")
    return float(np.abs(ort_out - torch_out).max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="picosam3_train export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True, help="output .onnx file")
    parser.add_argument("--opset", type=int, default=OPSET)
    args = parser.parse_args(argv)
    if args.opset < 17:
        parser.error("opset must be >= 17")
    from picosam3_train.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(args.checkpoint)
    export_onnx(model, args.out, opset=args.opset)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
