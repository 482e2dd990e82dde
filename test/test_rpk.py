"""network.rpk: our reader on files of our rpk builder, and the node's .rpk step."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from node_helpers import REPO, node_command, ros_env, write_red_model
from rpk_builder import NORMALISING_REGISTERS, firmware_block, network_info_text, write_rpk

from picosam3_ros.backends import BackendConfig, ModelLoadError, ModelMismatchError
from picosam3_ros.backends.imx500_backend import resolve_network_file
from picosam3_ros.core.rpk import RpkError, check_against_card, package_command, read_rpk

DOMAIN = 57


def test_read_rpk_gives_network_info_registers_and_intrinsics(tmp_path):
    info = read_rpk(write_rpk(tmp_path / "a.rpk", intrinsics={"inference_rate": 15, "task": "segmentation"}))
    assert info.input_size == (96, 96) and info.input_format == "RGB" and info.output_count == 1
    assert info.normalisation.is_identity and info.inference_rate == 15.0
    assert info.files == ("imx500_regs", "network_info.txt", "network_intrinsics")
    normalising = write_rpk(tmp_path / "b.rpk", network_info_text(registers=NORMALISING_REGISTERS))
    norm = read_rpk(normalising).normalisation
    assert norm.signed and norm.norm_val == (-1084, -1042, -924) and norm.div_val == (561, 574, 571)
    assert read_rpk(write_rpk(tmp_path / "c.rpk", network_info_text(output_count=None))).output_count is None


def test_read_rpk_refuses_what_is_not_one(tmp_path):
    junk = tmp_path / "junk.rpk"
    junk.write_bytes(b"PK\x03\x04 not an rpk")
    with pytest.raises(RpkError, match="not a network.rpk"):
        read_rpk(junk)
    cut = tmp_path / "cut.rpk"
    cut.write_bytes(firmware_block(b"x" * 64)[:-4])
    with pytest.raises(RpkError, match="footer"):
        read_rpk(cut)
    with pytest.raises(RpkError, match="cannot read"):
        read_rpk(tmp_path / "missing.rpk")


def test_an_rpk_that_contradicts_the_card_is_refused_in_one_line(tmp_path):
    check_against_card(read_rpk(write_rpk(tmp_path / "ok.rpk")), 96)
    for name, text, match in (("small.rpk", network_info_text(64, 64), "64x64 input"),
                              ("two.rpk", network_info_text(output_count=2), "2 output tensors")):
        with pytest.raises(RpkError, match=match) as caught:
            check_against_card(read_rpk(write_rpk(tmp_path / name, text)), 96)
        assert "\n" not in str(caught.value)


def _packaged_card(tmp_path):
    """A card whose IMX500 network is only packerOut.zip (as the project ships it)."""
    model = write_red_model(tmp_path / "model")
    shutil.copy(REPO / "picosam3_ros" / "models" / "packerOut.zip", model / "packerOut.zip")
    card = json.loads((model / "model_card.json").read_text())
    card["files"]["imx500"] = "packerOut.zip"
    (model / "model_card.json").write_text(json.dumps(card))
    return model


def test_resolve_network_file_uses_network_rpk_or_says_how_to_make_it(tmp_path):
    model = _packaged_card(tmp_path)
    on_pi = BackendConfig(model_dir=model, camera="picamera2")
    with pytest.raises(ModelMismatchError) as caught:
        resolve_network_file(on_pi)
    assert package_command(model / "packerOut.zip", model) in str(caught.value)
    assert resolve_network_file(BackendConfig(model_dir=model, camera="emulator")) == model / "packerOut.zip"
    rpk = write_rpk(model / "network.rpk")
    assert resolve_network_file(on_pi) == rpk == resolve_network_file(BackendConfig(model_dir=model))
    write_rpk(rpk, network_info_text(128, 128))
    with pytest.raises(ModelMismatchError, match="128x128 input but the model card says 96x96"):
        resolve_network_file(on_pi)
    with pytest.raises(ModelLoadError, match="does not exist"):
        missing = str(tmp_path / "x.rpk")
        resolve_network_file(BackendConfig(model_dir=model, camera="picamera2", network_file=missing))


@pytest.mark.parametrize("case", ["packer_only", "wrong_rpk"])
def test_node_exits_2_with_the_package_command_or_the_mismatch(tmp_path, case):
    model = _packaged_card(tmp_path)
    if case == "wrong_rpk":
        write_rpk(model / "network.rpk", network_info_text(64, 64))
    cmd = node_command("picosam3_ros.nodes.sensor_node",
                       {"backend": "imx500", "camera": "picamera2", "model": str(model)})
    proc = subprocess.run(cmd, env=ros_env(DOMAIN), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1, proc.stderr
    if case == "packer_only":
        assert f"imx500-package -i {model.resolve()}/packerOut.zip -o {model.resolve()}" in lines[0]
    else:
        assert "64x64 input but the model card says 96x96" in lines[0]
