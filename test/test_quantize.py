"""INT8 PTQ with the real model-compression-toolkit on a tiny model, and the converter glue."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
try:
    from picosam3_train.compat import import_mct

    import_mct()
except ModuleNotFoundError:  # pragma: no cover - MCT is in requirements/train.txt
    pytest.skip("model-compression-toolkit is not installed", allow_module_level=True)

from test_evaluate import make_coco_fixture  # noqa: E402

from picosam3_train import imx500  # noqa: E402
from picosam3_train.evaluate import default_input_spec  # noqa: E402
from picosam3_train.quantize import (  # noqa: E402
    NormalizedInput,
    calibration_crops,
    pixel_input_spec,
    quantize_model,
)


def tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 1, 1),
    ).eval()


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    ann, images = make_coco_fixture(tmp_path_factory.mktemp("coco"), n_images=4)
    crops = calibration_crops(ann, images, count=8)
    assert crops.dtype == np.uint8 and crops.shape[1:] == (96, 96, 3)
    return crops


@pytest.fixture(scope="module")
def quantized(calibration, tmp_path_factory):
    out = tmp_path_factory.mktemp("q")
    spec = default_input_spec()
    model = tiny_net()
    result = quantize_model(
        model, spec.preprocess(calibration), out, stem="tiny", batch_size=4, verbose=False
    )
    return model, spec, result


def test_int8_qdq_onnx_runs_in_stock_onnxruntime(quantized, calibration):
    model, spec, result = quantized
    graph = onnx.load(str(result.int8_onnx))
    ops = {node.op_type for node in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert {o.domain for o in graph.opset_import} <= {"", "ai.onnx"}  # no custom ops
    session = ort.InferenceSession(str(result.int8_onnx), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "image" and session.get_outputs()[0].name == "logits"
    x = spec.preprocess(calibration)
    int8 = session.run(None, {"image": x})[0]
    assert int8.shape == (len(x), 1, 96, 96)
    with torch.inference_mode():
        fp32 = model(torch.from_numpy(x)).numpy()
    # Quantized, so not equal; but close relative to the output's range, and the sign map agrees.
    assert not np.array_equal(int8, fp32)
    assert np.abs(int8 - fp32).max() < 0.1 * (np.abs(fp32).max() + 1e-6) + 0.05
    assert np.mean((int8 > 0) == (fp32 > 0)) > 0.95


def test_mctq_onnx_carries_mct_quantizer_ops(quantized):
    _, _, result = quantized
    graph = onnx.load(str(result.mctq_onnx))
    assert "mct_quantizers" in {o.domain for o in graph.opset_import}
    assert graph.graph.input[0].name == "image"


def test_normalized_input_folds_the_model_card_normalisation(calibration):
    model = tiny_net()
    spec = default_input_spec()
    folded = NormalizedInput(model, spec)
    with torch.inference_mode():
        a = folded(torch.from_numpy(pixel_input_spec(spec).preprocess(calibration)))
        b = model(torch.from_numpy(spec.preprocess(calibration)))
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)


def test_converter_errors_are_explained(tmp_path):
    with pytest.raises(imx500.ConversionError):
        imx500.convert(tmp_path / "missing_mctq.onnx", tmp_path / "out")


@pytest.mark.skipif(
    imx500.find_imxconv() is None or shutil.which("java") is None,
    reason="imxconv-pt not installed (.venv-imx500 from requirements/venv-imx500.txt) or no Java",
)
def test_imxconv_produces_packer_out_that_fits(quantized, tmp_path):
    _, _, result = quantized
    conversion = imx500.convert(result.mctq_onnx, tmp_path)
    assert conversion.packer_zip.is_file() and conversion.fits
    assert conversion.memory_report["Total Memory Available On Chip"] == "8.00MB"


def test_package_writes_a_readable_card_and_explains_a_missing_converter(tmp_path, monkeypatch):
    from picosam3_ros.core.model_card import load_model_card
    from picosam3_train.checkpoint import save_checkpoint
    from picosam3_train.config import TrainConfig
    from picosam3_train.model import build_model
    from picosam3_train.package_model import build_package

    ann, images = make_coco_fixture(tmp_path / "coco", n_images=2)
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        tmp_path / "m.pt", build_model("picosam3", width_mult=0.25), TrainConfig(width_mult=0.25)
    )
    monkeypatch.setattr(imx500, "find_imxconv", lambda: None)  # as on a machine without the converter
    spec = f"{ann}:{images}"
    card = build_package(ckpt, tmp_path / "models", spec, 4, spec, work_dir=tmp_path / "work", command="test",
                         choose_on=spec)
    assert "imx500" not in card["files"] and "imxconv-pt not found" in card["imx500"]["missing_reason"]
    loaded = load_model_card(tmp_path / "models")
    assert loaded.path("fp32").is_file() and loaded.path("int8").is_file()
    assert loaded.input.mean == pytest.approx(default_input_spec().mean) and loaded.output_name == "logits"
    metrics = card["metrics"]
    assert metrics["instances"] == 4 and metrics["box"]["crop_miou"] > 0.85
    assert {"fp32", "int8", "imx500_fakequant", "int8_gap_full_miou_pt"} <= set(metrics)
    # Both protocols, GT and jittered boxes, raw and the node's post-processing, by size.
    assert {"project/gt/node", "papers/gt/raw", "project/jitter10/node"} <= set(metrics["fp32"]["variants"])
    assert set(metrics["box"]["by_size_full_miou"]) == {"small", "medium", "large"}
    # The card carries the post-processing it was evaluated with, and the runtime reads it.
    chosen = card["postprocess"]
    assert loaded.postprocess.threshold == chosen["threshold"]
    assert loaded.postprocess.box_margin == chosen["box_margin"]
    assert loaded.postprocess.grow_threshold == chosen["grow_threshold"]
    assert chosen["chosen_on"].startswith(spec)
