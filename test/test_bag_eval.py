"""bag_eval on small bags written here, with a model whose output is known.

The "left-half" model outputs logits +4 on the left 48 columns of its 96x96
output and -4 elsewhere, whatever the input: its mask is known exactly, in
crop space and (through the one crop rule and paste-back) in the full frame,
and a transposed or mirrored output would score differently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from picosam3_ros.core.crop import crop_rect_for_box
from picosam3_ros.evaluation.bag_io import (
    IMAGE_TYPE,
    PROMPT_ARRAY_TYPE,
    ROI_TYPE,
    BagReader,
    BagWriter,
    make_image,
    make_prompt_array,
    make_roi,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SIZE = 96
FRAME_W, FRAME_H = 200, 150
T0 = 1_700_000_000 * 1_000_000_000
PERIOD = 100_000_000


# ------------------------------------------------------------------ models of known output


def write_model(directory: Path, pattern: np.ndarray | None = None, red_gain: float = 0.0) -> Path:
    """A model dir (model.onnx + model_card.json): logits = pattern + red_gain * (R/255 - 0.5).

    pattern: (96, 96) float logits added for every input (default: the left-half pattern).
    """
    directory.mkdir(parents=True, exist_ok=True)
    if pattern is None:
        pattern = np.where(np.arange(SIZE)[None, :] < SIZE // 2, 4.0, -4.0) * np.ones((SIZE, 1))
    pattern = pattern.astype(np.float32).reshape(1, 1, SIZE, SIZE)
    weight = np.zeros((1, 3, 1, 1), np.float32)
    weight[0, 0, 0, 0] = red_gain
    nodes = [
        # x is (pixel / 255); the 1x1 conv reads the red channel, the bias centres it.
        helper.make_node("Conv", ["input", "w", "b"], ["red"]),
        helper.make_node("Add", ["red", "pattern"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "known_output",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1, SIZE, SIZE])],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array([-0.5 * red_gain], np.float32), "b"),
            numpy_helper.from_array(pattern, "pattern"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, directory / "model.onnx")
    card = {
        "files": {"fp32": "model.onnx"},
        "input": {
            "name": "input",
            "size": SIZE,
            "layout": "NCHW",
            "color": "RGB",
            "scale": 1.0 / 255.0,
            "mean": [0, 0, 0],
            "std": [1, 1, 1],
        },
        "output": {"name": "logits"},
    }
    (directory / "model_card.json").write_text(json.dumps(card))
    return directory


@pytest.fixture(scope="module")
def left_half_model(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "left_half")


# ------------------------------------------------------------------ a bag with known answers

BOX_A = (40, 30, 50, 50)  # crop 60x60 at (35, 25)
BOX_B = (120, 60, 40, 40)  # crop 48x48 at (116, 56)


def left_half_of_crop(box) -> np.ndarray:
    rect = crop_rect_for_box(box, (FRAME_W, FRAME_H))
    assert rect.width % 2 == 0
    mask = np.zeros((FRAME_H, FRAME_W), bool)
    mask[rect.y : rect.y_end, rect.x : rect.x + rect.width // 2] = True
    return mask


def whole_crop(box) -> np.ndarray:
    rect = crop_rect_for_box(box, (FRAME_W, FRAME_H))
    mask = np.zeros((FRAME_H, FRAME_W), bool)
    mask[rect.y : rect.y_end, rect.x : rect.x_end] = True
    return mask


def write_known_bag(path: Path, storage: str) -> None:
    """Frames 0..4; answers with the left-half model:

    frame 0: no prompt yet (not evaluated)
    frame 1: RoiPromptArray [A (id 7), B (id 9)]; GT 1 = left half of A's crop (IoU 1),
             GT 2 = all of B's crop (IoU 0.5)
    frame 2: same prompts, no ground truth (run, not scored)
    frame 3: /prompts: empty array (cleared); /roi: A (one prompt, id 0); GT 255 on A's left half -> IoU 1
    frame 4: no new prompt, no ground truth
    """
    rng = np.random.default_rng(0)
    with BagWriter(path, storage) as writer:
        writer.add_topic("/prompts", PROMPT_ARRAY_TYPE)
        writer.add_topic("/roi", ROI_TYPE)
        writer.add_topic("/image", IMAGE_TYPE)
        writer.add_topic("/gt", IMAGE_TYPE)

        def frame(i: int, gt: np.ndarray | None) -> None:
            stamp = T0 + i * PERIOD
            image = rng.integers(0, 255, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
            writer.write("/image", stamp, make_image(image, "rgb8", stamp))
            if gt is not None:
                writer.write("/gt", stamp + 1000, make_image(gt, "mono8", stamp))

        frame(0, None)
        writer.write("/prompts", T0 + PERIOD - 10, make_prompt_array([(7, BOX_A), (9, BOX_B)], T0))
        gt = np.zeros((FRAME_H, FRAME_W), np.uint8)
        gt[left_half_of_crop(BOX_A)] = 1
        gt[whole_crop(BOX_B)] = 2
        frame(1, gt)
        frame(2, None)
        writer.write("/prompts", T0 + 3 * PERIOD - 20, make_prompt_array([], T0))
        writer.write("/roi", T0 + 3 * PERIOD - 10, make_roi(BOX_A))
        frame(3, left_half_of_crop(BOX_A).astype(np.uint8) * 255)
        frame(4, None)


def known_topics(bag) -> list[str]:
    """The bag argument and the topics ``write_known_bag`` writes, as bag_eval arguments."""
    return [str(bag), "--image-topic", "/image", "--prompt-topic", "/prompts", "--gt-topic", "/gt"]


def run_cli(*args: str, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", "picosam3_ros.evaluation.bag_eval", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=300,
    )
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_known_answers_both_storage_formats(tmp_path, left_half_model, storage):
    from picosam3_ros.evaluation.bag_eval import main

    bag = tmp_path / "bag"
    write_known_bag(bag, storage)
    # The prompt topic mixes types only across topics: evaluate the array topic first.
    out = tmp_path / "report.json"
    assert (
        main(
            [
                str(bag),
                "--image-topic",
                "/image",
                "--prompt-topic",
                "prompts",
                "--gt-topic",
                "/gt",
                "--model",
                str(left_half_model),
                "--json",
                str(out),
                "--markdown",
                str(tmp_path / "r.md"),
                "--figures",
                str(tmp_path / "fig"),
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["frames"] == 5
    assert report["frames_with_prompts"] == 2  # frames 1 and 2; the array is cleared before frame 3
    assert report["prompts"] == 4
    assert report["instances"] == 2
    assert report["miou_crop"] == pytest.approx(0.75)
    assert report["miou_full"] == pytest.approx(0.75)
    by_id = {row["prompt_id"]: row for row in report["per_instance"]}
    assert by_id[7]["iou_crop"] == pytest.approx(1.0) and by_id[7]["gt_value"] == 1
    assert by_id[9]["iou_crop"] == pytest.approx(0.5) and by_id[9]["iou_full"] == pytest.approx(0.5)
    assert report["status_counts"] == {"OK": 4}
    assert set(report["latency_ms"]) >= {"p50", "p90", "p99"} and report["latency_ms"]["p50"] > 0
    assert report["throughput_fps"] > 0
    assert (tmp_path / "r.md").read_text().startswith("# Bag evaluation")
    for name in ("iou_histogram.png", "latency.png", "overlays.png"):
        assert (tmp_path / "fig" / name).stat().st_size > 1000

    # The RegionOfInterest topic: one prompt (id 0) from frame 3 on, GT non-zero = object.
    out_roi = tmp_path / "roi.json"
    assert (
        main(
            [
                str(bag),
                "--image-topic",
                "/image",
                "--prompt-topic",
                "/roi",
                "--gt-topic",
                "/gt",
                "--model",
                str(left_half_model),
                "--json",
                str(out_roi),
                "--quiet",
            ]
        )
        == 0
    )
    roi_report = json.loads(out_roi.read_text())
    assert roi_report["frames_with_prompts"] == 2  # frames 3 and 4: the ROI stays in effect
    assert roi_report["instances"] == 1
    assert roi_report["per_instance"][0]["prompt_id"] == 0
    assert roi_report["miou_crop"] == pytest.approx(1.0)
    assert roi_report["miou_full"] == pytest.approx(1.0)


def test_emulated_imx500_backend_gives_the_same_known_answers(tmp_path, left_half_model):
    """--backend imx500: the real IMX500 backend on the emulated sensor, one ROI per frame."""
    from picosam3_ros.evaluation.bag_eval import main

    bag = tmp_path / "bag"
    write_known_bag(bag, "mcap")
    out = tmp_path / "imx.json"
    assert (
        main(
            [
                *known_topics(str(bag)),
                "--model",
                str(left_half_model),
                "--backend",
                "imx500",
                "--roi-apply-delay",
                "2",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["backend"] == "imx500"
    assert report["status_counts"] == {"OK": 4}
    by_id = {row["prompt_id"]: row for row in report["per_instance"]}
    assert by_id[7]["iou_crop"] == pytest.approx(1.0) and by_id[7]["iou_full"] == pytest.approx(1.0)
    assert by_id[9]["iou_crop"] == pytest.approx(0.5) and by_id[9]["iou_full"] == pytest.approx(0.5)


def test_mirrored_model_scores_differently(tmp_path):
    """The same bag with a right-half model: A's left half now scores 0 (orientation is checked)."""
    from picosam3_ros.evaluation.bag_eval import main

    right = np.where(np.arange(SIZE)[None, :] >= SIZE // 2, 4.0, -4.0) * np.ones((SIZE, 1))
    model = write_model(tmp_path / "right", pattern=right)
    bag = tmp_path / "bag"
    write_known_bag(bag, "mcap")
    out = tmp_path / "r.json"
    assert (
        main(
            [
                *known_topics(str(bag)),
                "--model",
                str(model),
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    by_id = {row["prompt_id"]: row for row in json.loads(out.read_text())["per_instance"]}
    assert by_id[7]["iou_crop"] == pytest.approx(0.0)
    assert by_id[9]["iou_crop"] == pytest.approx(0.5)


def test_image_content_reaches_the_model(tmp_path):
    """A model that segments red pixels finds a red square (the frame really flows through)."""
    from picosam3_ros.evaluation.bag_eval import main

    model = write_model(tmp_path / "red", pattern=np.zeros((SIZE, SIZE)), red_gain=40.0)
    bag = tmp_path / "bag"
    image = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    image[40:100, 50:130, 0] = 255
    gt = (image[:, :, 0] > 0).astype(np.uint8)
    with BagWriter(bag, "mcap") as writer:
        writer.add_topic("/p", ROI_TYPE)
        writer.add_topic("/bgr", IMAGE_TYPE)
        writer.add_topic("/gt", IMAGE_TYPE)
        writer.write("/p", T0 - 1, make_roi((50, 40, 80, 60)))
        writer.write("/bgr", T0, make_image(image[:, :, ::-1], "bgr8", T0))  # bgr8 is converted
        writer.write("/gt", T0, make_image(gt, "mono8", T0))
    out = tmp_path / "r.json"
    assert (
        main(
            [
                str(bag),
                "--image-topic",
                "/bgr",
                "--prompt-topic",
                "/p",
                "--gt-topic",
                "/gt",
                "--model",
                str(model),
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["instances"] == 1
    assert report["miou_full"] > 0.95
    assert report["miou_crop"] > 0.95


# ------------------------------------------------------------------ bad input: one line, no traceback


def assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [
        line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("bag_eval: frame")
    ]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bag_eval: error:")
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def known_bag(tmp_path_factory) -> Path:
    bag = tmp_path_factory.mktemp("bags") / "known"
    write_known_bag(bag, "mcap")
    return bag


def test_missing_bag(tmp_path, left_half_model):
    proc = run_cli(
        str(tmp_path / "nope"),
        "--image-topic",
        "/image",
        "--prompt-topic",
        "/prompts",
        "--model",
        str(left_half_model),
        "--json",
        str(tmp_path / "o.json"),
        check_rc=None,
    )
    assert_clean_error(proc, "no bag at")


@pytest.mark.parametrize(
    "args, needles",
    [
        (
            ["--image-topic", "/camera", "--prompt-topic", "/prompts"],
            ["image topic '/camera'", "/gt (sensor_msgs"],
        ),
        (["--image-topic", "/image", "--prompt-topic", "/nothing"], ["prompt topic '/nothing'"]),
        (["--image-topic", "/image", "--prompt-topic", "/prompts", "--gt-topic", "/gone"], ["ground-truth"]),
        (
            ["--image-topic", "/prompts", "--prompt-topic", "/prompts"],
            ["has type picosam3_msgs/msg/RoiPromptArray"],
        ),
        (["--image-topic", "/image", "--prompt-topic", "/image"], ["prompt topic '/image' has type"]),
    ],
)
def test_unknown_or_wrongly_typed_topics(tmp_path, known_bag, left_half_model, args, needles):
    proc = run_cli(
        str(known_bag),
        *args,
        "--model",
        str(left_half_model),
        "--json",
        str(tmp_path / "o.json"),
        check_rc=None,
    )
    assert_clean_error(proc, *needles)


def test_missing_model(tmp_path, known_bag):
    proc = run_cli(
        str(known_bag),
        "--image-topic",
        "/image",
        "--prompt-topic",
        "/prompts",
        "--model",
        str(tmp_path / "no_model"),
        "--json",
        str(tmp_path / "o.json"),
        check_rc=None,
    )
    assert_clean_error(proc, "cannot load the model")


def test_unsupported_encodings(tmp_path, left_half_model):
    bag = tmp_path / "enc"
    with BagWriter(bag, "mcap") as writer:
        writer.add_topic("/p", ROI_TYPE)
        writer.add_topic("/depth", IMAGE_TYPE)
        writer.add_topic("/rgb", IMAGE_TYPE)
        writer.add_topic("/gt_rgb", IMAGE_TYPE)
        writer.write("/p", T0 - 1, make_roi((10, 10, 20, 20)))
        # 32FC1 (a depth image): an encoding the node does not read either.
        depth = make_image(np.zeros((FRAME_H, FRAME_W * 4), np.uint8), "32FC1", T0)
        depth.width = FRAME_W
        writer.write("/depth", T0, depth)
        writer.write("/rgb", T0, make_image(np.zeros((FRAME_H, FRAME_W, 3), np.uint8), "rgb8", T0))
        writer.write("/gt_rgb", T0, make_image(np.zeros((FRAME_H, FRAME_W, 3), np.uint8), "rgb8", T0))
    proc = run_cli(
        str(bag),
        "--image-topic",
        "/depth",
        "--prompt-topic",
        "/p",
        "--model",
        str(left_half_model),
        "--json",
        str(tmp_path / "o.json"),
        check_rc=None,
    )
    assert_clean_error(proc, "unsupported encoding '32FC1'")
    proc = run_cli(
        str(bag),
        "--image-topic",
        "/rgb",
        "--prompt-topic",
        "/p",
        "--gt-topic",
        "/gt_rgb",
        "--model",
        str(left_half_model),
        "--json",
        str(tmp_path / "o.json"),
        check_rc=None,
    )
    assert_clean_error(proc, "must be mono8")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag(tmp_path, left_half_model, storage):
    bag = tmp_path / "bag"
    write_known_bag(bag, storage)
    (data_file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    size = data_file.stat().st_size
    with open(data_file, "r+b") as handle:
        handle.truncate(size // 2)
    proc = run_cli(
        *known_topics(str(bag)),
        "--model",
        str(left_half_model),
        "--json",
        str(tmp_path / "o.json"),
        check_rc=None,
    )
    assert_clean_error(proc)
    assert "truncated" in proc.stderr or "damaged" in proc.stderr or "cannot open" in proc.stderr


def test_cli_success_prints_summary(tmp_path, known_bag, left_half_model):
    proc = run_cli(
        *known_topics(str(known_bag)),
        "--model",
        str(left_half_model / "model.onnx"),
        "--json",
        str(tmp_path / "o.json"),
        "--quiet",
    )
    assert "mIoU crop 75.00%" in proc.stdout
    assert json.loads((tmp_path / "o.json").read_text())["instances"] == 2


def test_box_clip_papers_protocol_and_box_baseline(tmp_path, known_bag, left_half_model):
    """--box-margin 0 clips the left-half masks to the prompt boxes (hand-computed IoUs); the
    box baseline is scored on the same frame pixels; --protocols papers runs the cut rule too."""
    from picosam3_ros.evaluation.bag_eval import main

    out = tmp_path / "clip.json"
    args = [*known_topics(known_bag), "--model", str(left_half_model), "--json", str(out), "--quiet"]
    assert main([*args, "--box-margin", "0", "--protocols", "project,papers"]) == 0
    report = json.loads(out.read_text())
    assert report["postprocess"] == {"threshold": 0.5, "box_margin": 0.0, "grow_threshold": None}
    by_id = {row["prompt_id"]: row for row in report["per_instance"]}
    # A: crop (35..95, 25..85), left half x 35..65, clipped to the box (40..90, 30..80): 25x50
    # inside the GT (the crop's left half, 30x60).
    assert by_id[7]["iou_full"] == pytest.approx(1250 / 1800)
    # B: 20x40 of its 48x48 crop; the box itself: 40x40 of the same crop.
    assert by_id[9]["iou_full"] == pytest.approx(800 / 2304)
    assert by_id[9]["box_iou_full"] == pytest.approx(1600 / 2304)
    assert by_id[7]["box_iou_full"] == pytest.approx(1250 / (2500 + 1800 - 1250))
    assert report["miou_full_box_baseline"] == pytest.approx((1600 / 2304 + 1250 / 3050) / 2)
    # Boxes well inside the frame: the papers' cut rule crops the same square.
    assert report["papers"]["miou_full"] == pytest.approx(report["miou_full"])
    # Without the clip the raw left half scores the known 0.75 again.
    assert main([*args, "--no-box-clip"]) == 0
    unclipped = json.loads(out.read_text())
    assert unclipped["miou_full"] == pytest.approx(0.75) and unclipped["papers"] is None


def test_box_jitter_is_seeded(tmp_path, known_bag, left_half_model):
    from picosam3_ros.evaluation.bag_eval import main

    reports = []
    for seed in (0, 0, 1):
        out = tmp_path / f"jitter{len(reports)}.json"
        args = [*known_topics(known_bag), "--model", str(left_half_model), "--json", str(out), "--quiet"]
        assert main([*args, "--box-jitter", "0.2", "--seed", str(seed)]) == 0
        reports.append(json.loads(out.read_text()))
    assert "N(0, 0.2)" in reports[0]["boxes"]
    assert reports[0]["per_instance"] == reports[1]["per_instance"]
    assert reports[0]["per_instance"] != reports[2]["per_instance"]
    assert reports[0]["miou_full"] != pytest.approx(0.75)  # the crops moved with the boxes


def test_recorded_mode_scores_a_nodes_segmentations(tmp_path):
    """A SegmentationArray recorded from a node is scored against ground truth without a model."""
    from picosam3_ros.evaluation.bag_eval import main
    from picosam3_ros.evaluation.bag_io import SEGMENTATION_ARRAY_TYPE, msg_class

    rect = crop_rect_for_box(BOX_A, (FRAME_W, FRAME_H))
    crop_mask = np.zeros((rect.height, rect.width), np.uint8)
    crop_mask[:, : rect.width // 2] = 255
    Segmentation = msg_class("picosam3_msgs/msg/Segmentation")
    SegmentationArray = msg_class(SEGMENTATION_ARRAY_TYPE)
    bag = tmp_path / "rec"
    with BagWriter(bag, "sqlite3") as writer:
        writer.add_topic("/prompts", PROMPT_ARRAY_TYPE)
        writer.add_topic("/image_raw", IMAGE_TYPE)
        writer.add_topic("/gt", IMAGE_TYPE)
        writer.add_topic("/segmentations", SEGMENTATION_ARRAY_TYPE)
        writer.write("/prompts", T0 - 1, make_prompt_array([(3, BOX_A), (4, BOX_B)], T0))
        for i in range(2):
            stamp = T0 + i * PERIOD
            writer.write(
                "/image_raw", stamp, make_image(np.zeros((FRAME_H, FRAME_W, 3), np.uint8), "rgb8", stamp)
            )
            gt = np.zeros((FRAME_H, FRAME_W), np.uint8)
            gt[left_half_of_crop(BOX_A)] = 1
            gt[whole_crop(BOX_B)] = 2
            writer.write("/gt", stamp, make_image(gt, "mono8", stamp))
            image = make_image(np.zeros((0, 0), np.uint8), "mono8", stamp)
            served = Segmentation(
                header=image.header,
                prompt_id=3,
                crop=make_roi(rect.as_xywh()),
                box=make_roi(BOX_A),
                mask=make_image(crop_mask, "mono8", stamp),
                score=0.9,
                status=0,
                backend="imx500",
                latency_ms=5.0 + i,
            )
            waiting = Segmentation(
                header=image.header,
                prompt_id=4,
                crop=make_roi((0, 0, 0, 0)),
                box=make_roi(BOX_B),
                mask=image,
                score=0.0,
                status=4,
                backend="imx500",
                latency_ms=5.0,
            )
            writer.write(
                "/segmentations",
                stamp + 5_000_000,
                SegmentationArray(header=image.header, segmentations=[served, waiting]),
            )
    out = tmp_path / "r.json"
    assert (
        main(
            [
                str(bag),
                "--image-topic",
                "/image_raw",
                "--prompt-topic",
                "/prompts",
                "--gt-topic",
                "/gt",
                "--segmentations-topic",
                "/segmentations",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["mode"] == "recorded"
    assert report["instances"] == 2
    assert report["miou_full"] == pytest.approx(1.0)
    assert report["miou_crop"] == pytest.approx(1.0)
    assert report["status_counts"] == {"NOT_SERVED": 2, "OK": 2}
    assert report["latency_ms"]["p50"] == pytest.approx(5.5)


def test_bag_reader_round_trip_types(tmp_path, known_bag):
    with BagReader(known_bag) as reader:
        assert reader.topics()["/prompts"] == PROMPT_ARRAY_TYPE
        arrays = [m.msg for m in reader.messages(["/prompts"])]
    assert [p.id for p in arrays[0].prompts] == [7, 9]
    assert arrays[1].prompts == []


def test_jitter_sweep_and_crowding_in_the_report(tmp_path, known_bag, left_half_model):
    """--jitter-sweep runs the bag at box noise 0, 5, 10 and 20%: the 0 row is the plain run, the
    noisy rows move the crops; each instance counts the other prompts inside its crop."""
    from picosam3_ros.evaluation.bag_eval import main

    out, md = tmp_path / "sweep.json", tmp_path / "sweep.md"
    args = [*known_topics(known_bag), "--model", str(left_half_model), "--json", str(out), "--quiet"]
    assert main([*args, "--jitter-sweep", "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    rows = report["jitter_sweep"]
    assert [row["box_jitter"] for row in rows] == [0.0, 0.05, 0.1, 0.2]
    assert rows[0]["miou_full"] == report["miou_full"] == pytest.approx(0.75)
    assert rows[3]["miou_full"] != pytest.approx(0.75)
    assert [row["instances"] for row in rows] == [report["instances"]] * 4
    assert sum(report["instances_by_crowding"].values()) == report["instances"]
    text = md.read_text()
    assert "## Box noise sweep" in text and "| 0.2 |" in text and "## By other prompted objects" in text
