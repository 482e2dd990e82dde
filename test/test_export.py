"""fp32 ONNX export round trip: names, dynamic batch, opset, onnx.checker, ORT == torch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from picosam3_train.export import INPUT_NAME, OUTPUT_NAME, export_onnx, main  # noqa: E402
from picosam3_train.model import build_model  # noqa: E402


@pytest.fixture(scope="module")
def small_picosam3():
    torch.manual_seed(0)
    model = build_model("picosam3", width_mult=0.25).eval()
    # Non-trivial batch-norm statistics, so the export has something to get wrong.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model


def test_round_trip_matches_torch(small_picosam3, tmp_path):
    result = export_onnx(small_picosam3, tmp_path / "m.onnx", verbose=False)
    assert result.max_abs_diff < 1e-4
    graph = onnx.load(str(result.path))
    onnx.checker.check_model(graph)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]
    rng = np.random.default_rng(3)
    for batch in (1, 5):  # dynamic batch
        x = rng.standard_normal((batch, 3, 96, 96)).astype(np.float32)
        out = session.run(None, {INPUT_NAME: x})[0]
        assert out.shape == (batch, 1, 96, 96)
        with torch.inference_mode():
            expected = small_picosam3(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-4)


def test_export_leaves_the_training_model_alone(small_picosam3, tmp_path):
    before = {k: v.clone() for k, v in small_picosam3.state_dict().items()}
    modules_before = [type(m) for m in small_picosam3.modules()]
    export_onnx(small_picosam3, tmp_path / "m.onnx", verbose=False)
    assert [type(m) for m in small_picosam3.modules()] == modules_before
    assert all(torch.equal(before[k], v) for k, v in small_picosam3.state_dict().items())


def test_cli_exports_a_checkpoint(small_picosam3, tmp_path, capsys):
    from picosam3_train.checkpoint import save_checkpoint
    from picosam3_train.config import TrainConfig

    ckpt = save_checkpoint(tmp_path / "c.pt", small_picosam3, TrainConfig(width_mult=0.25))
    assert main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "c.onnx")]) == 0
    assert "max abs diff" in capsys.readouterr().out
    assert (tmp_path / "c.onnx").is_file()
