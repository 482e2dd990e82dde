"""The model card: written and read by one module, checked against its ONNX graph.

Unit tests of ``picosam3_ros.core.model_card`` and start-up tests of the real node process
with wrong cards (issue 13 item 7): each stops with exit code 2 and one clear line, where
it used to start and then fail every frame (or answer OK with empty masks) in silence.
"""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import pytest
from node_helpers import REPO, node_command, ros_env, write_red_model

from picosam3_ros.core.model_card import InputSpec, ModelCardError, load_model_card, write_model_card

DOMAIN = 86
SPEC = InputSpec("image", 96, "NCHW", "RGB", 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def arg(name, shape, type_="tensor(float)"):
    return SimpleNamespace(name=name, shape=shape, type=type_)


def test_written_card_reads_back_with_its_descriptive_sections(tmp_path):
    card = write_model_card(tmp_path, {"fp32": "m.onnx"}, SPEC, "logits", metrics={"crop_miou": 0.6})
    loaded = load_model_card(tmp_path)
    assert loaded.input == SPEC == card.input and loaded.output_name == "logits"
    assert loaded.raw["metrics"] == {"crop_miou": 0.6}
    assert loaded.raw["output"]["shape"] == [None, 1, 96, 96]
    assert loaded.raw["input"]["formula"] == "x = (pixel * scale - mean) / std"


def test_writer_refuses_preprocessing_no_runtime_could_use(tmp_path):
    with pytest.raises(ModelCardError, match="std must be > 0"):
        write_model_card(tmp_path, {}, InputSpec("image", 96, "NCHW", "RGB", 1.0, (0, 0, 0), (0, 0, 0)))
    assert not (tmp_path / "model_card.json").exists()


@pytest.mark.parametrize(
    "change, text",
    [
        ({"size": 0}, "input.size must be a positive integer"),
        ({"size": "96"}, "input.size must be a positive integer"),
        ({"mean": [0.5, 0.5]}, "input.mean must be 3 finite numbers"),
        ({"mean": 0.5}, "input.mean must be a list of 3 numbers"),
        ({"std": [0.2, "NaN", 0.2]}, "input.std must be 3 finite numbers"),
        ({"std": [0.0, 0.0, 0.0]}, "input.std must be > 0"),
        ({"scale": -1.0}, "input.scale must be a finite number > 0"),
        ({"layout": "NHWC"}, "only NCHW RGB"),
    ],
)
def test_reader_rejects_bad_preprocessing_with_one_line(tmp_path, change, text):
    write_model_card(tmp_path, {"fp32": "m.onnx"}, SPEC)
    raw = json.loads((tmp_path / "model_card.json").read_text())
    raw["input"].update(change)
    (tmp_path / "model_card.json").write_text(json.dumps(raw))
    with pytest.raises(ModelCardError, match=text) as info:
        load_model_card(tmp_path)
    assert "\n" not in str(info.value) and "model_card.json" in str(info.value)


def test_check_graph_accepts_dynamic_batches_and_rejects_mismatches(tmp_path):
    card = write_model_card(tmp_path, {"fp32": "m.onnx"}, SPEC, "logits")
    good_in, good_out = [arg("image", ["batch", 3, 96, 96])], [arg("logits", ["batch", 1, 96, 96])]
    card.check_graph("m.onnx", good_in, good_out)
    card.check_graph("m.onnx", [arg("image", [1, 3, 96, 96])], [arg("logits", [1, 96, 96])])
    bad = [
        ([arg("input", ["N", 3, 96, 96])], good_out, "no input 'image'"),
        ([arg("image", ["N", 3, 64, 64])], good_out, r"is \[N, 3, 64, 64\] in the graph"),
        ([arg("image", ["N", 96, 96, 3])], good_out, "the card says"),
        ([arg("image", ["N", 3, 96, 96], "tensor(uint8)")], good_out, "feeds float32"),
        (good_in, [arg("mask", ["N", 1, 96, 96])], "no output 'logits'"),
        (good_in, [arg("logits", ["N", 2, 96, 96])], "one 96x96 logit map per crop"),
    ]
    for inputs, outputs, text in bad:
        with pytest.raises(ModelCardError, match=text):
            card.check_graph("m.onnx", inputs, outputs)


# --- start-up of the real node with a wrong card ------------------------------------------------
def edit_card(directory, **changes):
    path = directory / "model_card.json"
    raw = json.loads(path.read_text())
    for key, value in changes.items():
        section, field = key.split("__")
        raw[section][field] = value
    path.write_text(json.dumps(raw))


CARD_CASES = {
    "size_64": ({"input__size": 64}, "is [N, 3, 96, 96] in the graph, the card says [N, 3, 64, 64]"),
    "two_value_mean": ({"input__mean": [0.0, 0.0]}, "input.mean must be 3 finite numbers"),
    "zero_std": ({"input__std": [0, 0, 0]}, "input.std must be > 0"),
    "wrong_output": ({"output__name": "mask"}, "no output 'mask'"),
}


@pytest.mark.parametrize("camera", ["none", "emulator"])
@pytest.mark.parametrize("case", sorted(CARD_CASES))
def test_node_with_a_wrong_card_stops_at_startup_with_one_line(tmp_path, case, camera):
    changes, text = CARD_CASES[case]
    model = write_red_model(tmp_path / "model")
    edit_card(model, **changes)
    params = {"model": str(model), "camera": camera, "backend": "auto"}
    cmd = node_command("picosam3_ros.nodes.sensor_node", params, REPO / "config" / "sensor.yaml")
    result = subprocess.run(cmd, env=ros_env(DOMAIN), capture_output=True, text=True, timeout=120)
    output = result.stderr + result.stdout
    assert result.returncode == 2, output
    lines = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1 and text in lines[0], output
    assert "Traceback" not in output
