"""bag_eval --backend imx500 (the emulated sensor replay) scores what --backend onnx scores.

The bag mixes landscape and portrait frames and moves one `roi`-topic prompt (id 0) on
every frame: the replay must wait for each frame's own crop (not the previous frame's
ROI with the same id), map portrait streams onto the sensor correctly, and upload the
network once for the whole run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from node_helpers import write_red_model

from picosam3_ros.evaluation.bag_io import IMAGE_TYPE, ROI_TYPE, BagWriter, make_image, make_roi

T0 = 1_700_000_000 * 1_000_000_000
PERIOD = 100_000_000
# (frame width, height, red object box x, y, w, h): landscape and portrait, tall and wide,
# one touching the border.
FRAMES = [
    (320, 240, (40, 50, 60, 120)),
    (240, 320, (120, 30, 110, 50)),
    (240, 320, (0, 200, 70, 120)),
    (320, 240, (200, 90, 90, 60)),
]


def _write_bag(path) -> None:
    rng = np.random.default_rng(3)
    with BagWriter(path) as writer:
        writer.add_topic("/roi", ROI_TYPE)
        writer.add_topic("/image", IMAGE_TYPE)
        writer.add_topic("/gt", IMAGE_TYPE)
        for i, (width, height, box) in enumerate(FRAMES):
            stamp = T0 + i * PERIOD
            x, y, w, h = box
            image = rng.integers(0, 110, (height, width, 3), dtype=np.uint8)
            gt = np.zeros((height, width), np.uint8)
            # A red object that fills its box unevenly, so that the ramp model cuts it off-centre.
            yy, xx = np.mgrid[0:h, 0:w]
            inside = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2 <= 1.0
            patch = image[y : y + h, x : x + w]
            patch[inside, 0] = (150 + 100 * xx[inside] / w).astype(np.uint8)
            gt[y : y + h, x : x + w][inside] = 255
            writer.write("/roi", stamp - 1000, make_roi(box))
            writer.write("/image", stamp, make_image(image, "rgb8", stamp))
            writer.write("/gt", stamp, make_image(gt, "mono8", stamp))


@pytest.fixture
def bag_and_model(tmp_path):
    bag = tmp_path / "bag"
    _write_bag(bag)
    return bag, write_red_model(tmp_path / "ramp", ramp=0.6)


def _run(bag, model, out, *extra) -> dict:
    from picosam3_ros.evaluation.bag_eval import main

    args = [str(bag), "--image-topic", "/image", "--prompt-topic", "/roi", "--gt-topic", "/gt"]
    assert main([*args, "--model", str(model), "--json", str(out), "--quiet", *extra]) == 0
    return json.loads(out.read_text())


def test_sensor_replay_scores_like_the_cpu_and_loads_the_network_once(bag_and_model, tmp_path, capfd):
    bag, model = bag_and_model
    cpu = _run(bag, model, tmp_path / "cpu.json", "--precision", "int8")
    capfd.readouterr()
    sensor = _run(bag, model, tmp_path / "imx.json", "--backend", "imx500", "--roi-apply-delay", "2")
    assert capfd.readouterr().err.count("Loading network firmware") == 1
    assert sensor["status_counts"] == {"OK": len(FRAMES)} == cpu["status_counts"]
    assert cpu["miou_crop"] > 0.5  # the ramp model finds most of each object: a real comparison
    for want, got in zip(cpu["per_instance"], sensor["per_instance"]):
        assert got["frame"] == want["frame"]
        assert got["iou_crop"] == pytest.approx(want["iou_crop"], abs=0.03), (want, got)
        assert got["iou_full"] == pytest.approx(want["iou_full"], abs=0.03), (want, got)
