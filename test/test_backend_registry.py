"""The backend registry is the one source of backend names: a backend registered in
``picosam3_ros.backends`` (and nowhere else) is a choice of the node's ``backend`` parameter and
of ``bag_eval --backend``, is what ``auto`` picks when it says it is available, is dispatched by
capability by the frame server, and runs behind ``Predictor``.

The fake backend is a real :class:`CropSegmenter` (numpy: the left half of every crop is object),
so the answers are known: the same bag and answers as test_bag_eval's left-half ONNX model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_bag_eval import BOX_A, BOX_B, FRAME_H, FRAME_W, known_topics, left_half_of_crop, write_known_bag

from picosam3_ros.backends import (
    BackendConfig,
    BackendSpec,
    CropSegmenter,
    backend_names,
    register_backend,
    resolve_auto,
    unregister_backend,
)
from picosam3_ros.core.metrics import mask_iou
from picosam3_ros.core.postprocess import RAW_POSTPROCESS


class LeftHalf(CropSegmenter):
    name = "lefthalf"

    def __init__(self, config: BackendConfig):
        self.config = config

    @property
    def input_size(self) -> int:
        return 96

    def infer(self, crops_rgb: np.ndarray) -> np.ndarray:
        logits = np.full(crops_rgb.shape[:3], -10.0, np.float32)
        logits[:, :, : crops_rgb.shape[2] // 2] = 10.0
        return logits


@pytest.fixture
def lefthalf():
    register_backend(BackendSpec("lefthalf", LeftHalf, available=lambda camera: camera == "none"))
    try:
        yield "lefthalf"
    finally:
        unregister_backend("lefthalf")
    assert "lefthalf" not in backend_names()


def test_a_registered_backend_is_a_choice_of_the_node_and_of_bag_eval(lefthalf):
    from picosam3_ros.evaluation.bag_eval import build_arg_parser
    from picosam3_ros.nodes.node_config import ConfigError
    from picosam3_ros.nodes.sensor_params import SENSOR_PARAMS, validate

    assert lefthalf in SENSOR_PARAMS.params["backend"].choices
    assert validate({"backend": lefthalf}).backend == lefthalf
    with pytest.raises(ConfigError, match="allowed: auto, imx500, onnx, lefthalf"):
        validate({"backend": "lefthalf2"})
    args = build_arg_parser().parse_args(["bag", "--image-topic", "i", "--prompt-topic", "p",
                                          "--json", "o.json", "--backend", lefthalf])
    assert args.backend == lefthalf


def test_auto_picks_a_registered_backend_that_says_it_is_available(lefthalf):
    assert resolve_auto("none") == lefthalf  # its own rule
    assert resolve_auto("emulator") == "imx500"  # registered first, and available there


def test_the_frame_server_dispatches_it_by_capability(lefthalf):
    from picosam3_ros.backends.frame_server import build_frame_server
    from picosam3_ros.core.pipeline import Prompt, Status

    server = build_frame_server(lefthalf, "none", BackendConfig(), RAW_POSTPROCESS)
    assert server.backend == lefthalf and server.sensor is None
    image = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    result = server.serve_image(image, [Prompt(7, BOX_A)]).results[0]
    assert result.status == Status.OK and result.backend == lefthalf
    full = np.zeros((FRAME_H, FRAME_W), bool)
    full[result.crop.y : result.crop.y_end, result.crop.x : result.crop.x_end] = result.crop_mask > 0
    assert mask_iou(full, left_half_of_crop(BOX_A)) == 1.0


def test_bag_eval_runs_it_with_the_known_answers(lefthalf, tmp_path):
    from picosam3_ros.evaluation.bag_eval import main

    bag = tmp_path / "bag"
    write_known_bag(bag, "mcap")
    out = tmp_path / "report.json"
    assert main([*known_topics(bag), "--backend", lefthalf, "--threshold", "0.5", "--no-box-clip",
                 "--json", str(out), "--quiet"]) == 0
    summary = json.loads(out.read_text())
    assert summary["backend"] == lefthalf
    # frame 1: A 1.0, B 0.5 (the left half of its whole crop); frame 3 (the roi topic is not read)
    assert summary["instances"] == 2
    assert summary["miou_full"] == pytest.approx(0.75)


def test_the_predictor_runs_it_by_name(lefthalf):
    from picosam3_ros import Predictor

    predictor = Predictor(backend=lefthalf, postprocess=RAW_POSTPROCESS)
    masks = predictor.predict(np.zeros((FRAME_H, FRAME_W, 3), np.uint8), [BOX_A, BOX_B])
    assert [m.ok for m in masks] == [True, True]
    assert mask_iou(masks[0].mask, left_half_of_crop(BOX_A)) == 1.0
    assert masks[1].mask.shape == (FRAME_H, FRAME_W) and masks[1].score > 0.99
