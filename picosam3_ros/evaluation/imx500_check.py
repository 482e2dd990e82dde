"""imx500_check: measure on the camera what the sensor node assumes, and write its parameters.

    imx500_check [--camera picamera2|emulator] [--emulator-roi-delay N]
                 [--emulator-output-transposed true|false] [--json OUT] [--yaml OUT]

Point the AI Camera at a still, textured scene (a desk, a shelf) and run it. It uses the
same picamera2 calls as the node (``Picamera2``, ``IMX500``; ``--camera emulator`` swaps in
the project's emulated camera, configured with the delay and layout to recover):

1. On one captured frame it picks two square crops whose CPU-model masks differ from each
   other and from their own transpose (the card's INT8 ONNX on the CPU path's crops).
2. It writes the two crops' sensor ROIs in turn (``set_inference_roi_abs``), holding each
   for ``--hold`` frames, and matches every output map against the CPU model's map of each
   crop, as delivered and transposed.
3. ROI apply delay, in the node's units (``roi_apply_delay_frames``: frame k used the last
   ROI written before ``SensorTimestamp(k) - delay * FrameDuration``): for each switch, the
   first frame j whose output shows the new crop gives ``floor((t_j - t_write) / T)``; the
   most common value over the switches is reported. A network slower than the frame (its
   result arrives a frame later) shows up here as one more frame, as the node needs it.
4. Layout: the output maps match the CPU maps transposed (``imx500_output_transpose: true``)
   or as they are (false).
5. KPI (``get_kpi_info``: DNN and DSP ms), the achieved frame rate (sensor timestamps) and
   the fraction of frames that carried an output tensor.

It prints a table and writes the node parameters as YAML for ``config_file``.
Exit codes: 0 measured, 1 could not measure (the table says why), 2 bad setup.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from picosam3_ros.backends import BackendConfig, BackendError, create_backend
from picosam3_ros.backends.imx500_backend import resolve_network_file
from picosam3_ros.backends.picamera import import_picamera2
from picosam3_ros.core.crop import CropRect, crop_and_resize
from picosam3_ros.core.sensor_geometry import SensorGeometry, roi_as_latched

NODE = "/**/picosam3_sensor"
DEMO_SCENE = Path(__file__).resolve().parents[1] / "demo" / "demo_clip" / "00_000000000785.jpg"
# An output matches a candidate when its error is below this fraction of the next best one's.
CLEAR_MATCH = 0.6


@dataclass
class CheckResult:
    roi_apply_delay_frames: int | None = None
    output_transpose: bool | None = None
    dnn_ms: float | None = None
    dsp_ms: float | None = None
    frame_rate: float | None = None
    output_fraction: float | None = None
    frames: int = 0
    switches: int = 0
    delays_seen: dict = field(default_factory=dict)
    layout_votes: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.roi_apply_delay_frames is not None and self.output_transpose is not None


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imx500_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--camera", choices=("picamera2", "emulator"), default="picamera2")
    parser.add_argument("--model", type=Path, default=None, help="model card directory (default: packaged)")
    parser.add_argument("--network-file", default="", help="the .rpk (default: network.rpk beside the card)")
    parser.add_argument("--frame-rate", type=float, default=30.0)
    parser.add_argument("--stream-size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--switches", type=int, default=6, help="ROI switches to time (default 6)")
    parser.add_argument("--hold", type=int, default=8, help="frames each ROI is held (> the delay + 2)")
    parser.add_argument("--emulator-roi-delay", type=int, default=-1,
                        help="emulator: ROI apply delay to emulate (-1: by frame rate)")
    parser.add_argument("--emulator-output-transposed", type=_bool, default=True,
                        help="emulator: output maps width-fastest (true) or height-fastest (false)")
    parser.add_argument("--emulator-scene", type=Path, default=DEMO_SCENE, help="emulator: the still scene")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements as JSON")
    parser.add_argument("--yaml", type=Path, default=Path("imx500_params.yaml"),
                        help="node parameters for config_file (default imx500_params.yaml)")
    return parser


def _candidates(size: tuple[int, int]) -> list[CropRect]:
    """Square crops on a 3x3 grid, about a third of the frame's height."""
    width, height = size
    side = max(32, height // 3)
    xs = np.linspace(0, width - side, 3).astype(int)
    ys = np.linspace(0, height - side, 3).astype(int)
    return [CropRect(int(x), int(y), side, side) for y in ys for x in xs]


def pick_crops(frame_rgb: np.ndarray, cpu) -> tuple[list[CropRect], list[np.ndarray]]:
    """Two crops whose CPU maps differ from each other and from their transposes."""
    size = (frame_rgb.shape[1], frame_rgb.shape[0])
    rects = _candidates(size)
    maps = list(cpu.infer(np.stack([crop_and_resize(frame_rgb, r) for r in rects])))

    def apart(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).mean())

    best, pair = -1.0, (0, 1)
    for i in range(len(rects)):
        for j in range(i + 1, len(rects)):
            a, b = maps[i], maps[j]
            score = min(apart(a, a.T), apart(b, b.T), apart(a, b), apart(a, b.T))
            if score > best:
                best, pair = score, (i, j)
    return [rects[pair[0]], rects[pair[1]]], [maps[pair[0]], maps[pair[1]]]


def classify(output: np.ndarray, refs: list[np.ndarray]) -> tuple[int, bool] | None:
    """(which crop, transposed) the output map shows, or None when no candidate is clearly best."""
    errors = sorted(
        (float(np.abs(output - (ref.T if transposed else ref)).mean()), index, transposed)
        for index, ref in enumerate(refs)
        for transposed in (False, True)
    )
    (best, index, transposed), (second, _, _) = errors[0], errors[1]
    if best >= CLEAR_MATCH * second:
        return None
    return index, transposed


def measure(args: argparse.Namespace) -> CheckResult:
    config = BackendConfig(
        model_dir=args.model, network_file=args.network_file, camera=args.camera,
        stream_size=tuple(args.stream_size), frame_rate=args.frame_rate, onnx_precision="int8",
    )
    emulator_settings = None
    if args.camera == "emulator":
        scene = cv2.cvtColor(cv2.imread(str(args.emulator_scene)), cv2.COLOR_BGR2RGB)
        scene = cv2.resize(scene, tuple(args.stream_size), interpolation=cv2.INTER_AREA)
        emulator_settings = {"source": [scene], "mode": "realtime", "fps": args.frame_rate,
                             "roi_delay_frames": args.emulator_roi_delay,
                             "output_transposed": args.emulator_output_transposed}
    network = resolve_network_file(config)
    cpu = create_backend("onnx", config)
    Picamera2, IMX500 = import_picamera2(args.camera, emulator_settings)
    imx500 = IMX500(str(network))
    picam2 = Picamera2(imx500.camera_num)
    picam2.configure(picam2.create_preview_configuration(
        main={"size": tuple(args.stream_size), "format": "RGB888"},
        controls={"FrameRate": float(args.frame_rate)}, buffer_count=12,
    ))
    result = CheckResult()
    picam2.start()
    try:
        return _run(args, picam2, imx500, cpu, result)
    finally:
        picam2.stop()
        picam2.close()


def _run(args, picam2, imx500, cpu, result: CheckResult) -> CheckResult:
    request = picam2.capture_request()
    try:
        metadata = request.get_metadata()
        frame = cv2.cvtColor(request.make_array("main")[..., :3], cv2.COLOR_BGR2RGB)
    finally:
        request.release()
    size = (frame.shape[1], frame.shape[0])
    geometry = SensorGeometry(size, tuple(int(v) for v in metadata["ScalerCrop"]))
    rects, refs = pick_crops(frame, cpu)
    rois = [roi_as_latched(geometry.stream_rect_to_sensor(r)) for r in rects]
    records = []  # (timestamp ns, frame duration ns, classification or None, has output)
    writes = []  # (monotonic ns of the write, crop index, index into records at the write)
    kpis = []
    for switch in range(args.switches + 1):
        target = switch % 2
        writes.append((time.monotonic_ns(), target, len(records)))
        imx500.set_inference_roi_abs(rois[target])
        for _ in range(args.hold):
            metadata = picam2.capture_metadata()
            stamp = int(metadata["SensorTimestamp"])
            duration = int(metadata.get("FrameDuration", round(1e6 / args.frame_rate))) * 1000
            outputs = imx500.get_outputs(metadata)
            label = None
            if outputs:
                label = classify(np.squeeze(np.asarray(outputs[0], np.float32)), refs)
                kpi = imx500.get_kpi_info(metadata)
                if kpi is not None:
                    kpis.append(kpi)
            records.append((stamp, duration, label, bool(outputs)))
    _summarise(result, records, writes, kpis)
    return result


def _summarise(result: CheckResult, records, writes, kpis) -> None:
    result.frames = len(records)
    stamps = [r[0] for r in records]
    if len(stamps) > 1 and stamps[-1] > stamps[0]:
        result.frame_rate = round((len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9), 2)
    result.output_fraction = round(sum(r[3] for r in records) / max(1, len(records)), 3)
    if kpis:
        result.dnn_ms = round(float(np.mean([k[0] for k in kpis])), 3)
        result.dsp_ms = round(float(np.mean([k[1] for k in kpis])), 3)
    votes = Counter(r[2][1] for r in records if r[2] is not None)
    result.layout_votes = {str(k).lower(): v for k, v in votes.items()}
    if votes:
        layout, count = votes.most_common(1)[0]
        if count >= 0.9 * sum(votes.values()):
            result.output_transpose = bool(layout)
        else:
            result.problems.append(f"output layout unclear: {dict(votes)} (is the scene still?)")
    else:
        result.problems.append("no output matched the CPU model's map of either crop")
    delays = []
    for write_ns, target, start in writes[1:]:  # the first write only starts the sequence
        for stamp, duration, label, _ in records[start:]:
            if label is not None and label[0] == target:
                delays.append(int((stamp - write_ns) // duration))
                break
    result.switches = len(delays)
    result.delays_seen = {str(k): v for k, v in sorted(Counter(delays).items())}
    if delays:
        delay, count = Counter(delays).most_common(1)[0]
        result.roi_apply_delay_frames = max(0, delay)
        if count < len(delays):
            result.problems.append(f"ROI delay varied between switches: {result.delays_seen}")
    else:
        result.problems.append("no ROI switch was seen in the outputs (hold more frames: --hold)")


def node_yaml(result: CheckResult, frame_rate: float) -> str:
    lines = [
        "# Written by imx500_check: what it measured on this camera (load with config_file:=...).",
        f"{NODE}:",
        "  ros__parameters:",
        "    backend: imx500",
        "    camera: picamera2",
        f"    frame_rate: {float(frame_rate)}",
    ]
    if result.roi_apply_delay_frames is not None:
        lines.append(f"    roi_apply_delay_frames: {result.roi_apply_delay_frames}")
    if result.output_transpose is not None:
        lines.append(f"    imx500_output_transpose: {str(result.output_transpose).lower()}")
    return "\n".join(lines) + "\n"


def table(result: CheckResult) -> str:
    def show(value, unit=""):
        return "not measured" if value is None else f"{value}{unit}"

    rows = [
        ("roi_apply_delay_frames", show(result.roi_apply_delay_frames), f"per switch: {result.delays_seen}"),
        ("imx500_output_transpose", show(result.output_transpose), f"votes: {result.layout_votes}"),
        ("DNN runtime", show(result.dnn_ms, " ms"), "get_kpi_info"),
        ("DSP runtime", show(result.dsp_ms, " ms"), "get_kpi_info"),
        ("frame rate", show(result.frame_rate, " fps"), "from SensorTimestamp"),
        ("frames with an output", show(result.output_fraction), f"of {result.frames} frames"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{name:<{width}}  {value:<14}  {note}" for name, value, note in rows]
    lines += [f"problem: {p}" for p in result.problems]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    if args.hold < 3 or args.switches < 1:
        print("imx500_check: --hold must be >= 3 and --switches >= 1", file=sys.stderr)
        return 2
    try:
        result = measure(args)
    except (BackendError, RuntimeError, OSError) as exc:
        print(f"imx500_check: cannot start: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    payload = asdict(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    args.yaml.parent.mkdir(parents=True, exist_ok=True)
    args.yaml.write_text(node_yaml(result, args.frame_rate))
    print(f"node parameters -> {args.yaml}" + (f", measurements -> {args.json}" if args.json else ""))
    return 0 if result.complete else 1


if __name__ == "__main__":
    sys.exit(main())
