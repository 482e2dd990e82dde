"""demo: the main job on a machine with no camera (``make demo``).

Runs the real sensor node (``camera:=emulator backend:=imx500``) on the demo
clip committed in ``picosam3_ros/demo/demo_clip`` (real COCO images, each held for
several frames so the ROI apply delay and the one-ROI-per-frame serving play
out), with ``prompt_publisher`` standing in for a detector. This process
watches ``image_raw`` and ``segmentations`` like any client, scores every
served mask against the clip's ground truth (the same scoring as
``bag_eval``'s recorded mode), prints frames, fps, latency and mIoU, and writes
under ``--output-dir`` (default ``demo_output/``):

* ``overlay.mp4`` (or ``overlay_frames/`` PNGs when no mp4 encoder exists):
  every received frame with the latest mask of each prompt tinted, boxes, and
  the ground-truth outlines in white;
* ``overlays.png``: one tile per clip image;
* ``report.json`` / ``report.md`` / ``iou_histogram.png`` / ``latency.png``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from picosam3_ros.core.clip import DEFAULT_CLIP_DIR, Clip
from picosam3_ros.core.model_card import DEFAULT_MODELS_DIR, ModelCardError, load_model_card
from picosam3_ros.core.pipeline import Status, compose_frame_mask
from picosam3_ros.core.process_group import start_group, stop_group
from picosam3_ros.demo.viewer import DemoError, DemoViewer
from picosam3_ros.evaluation.bag_evaluation import Evaluation, results_from_segmentations
from picosam3_ros.evaluation.bag_io import BagPrompt
from picosam3_ros.evaluation.report import (
    draw_overlay,
    image_grid,
    markdown_summary,
    write_figures,
    write_json,
    write_png,
)
from picosam3_ros.nodes.fastdds_profile import with_large_images_profile

NAMESPACE = "/picosam3_demo"
# image_raw is best effort: on Fast DDS, frames above its default 512 KiB shared-memory segment
# are mostly lost between processes; the demo's processes load config/fastdds_large_images.xml
# (README "Large images over DDS"), so it streams the node's default 640x480.
DEFAULT_STREAM_SIZE = (640, 480)
LEAD_IN_SECONDS = 4.0  # the first image is held longer while the processes discover each other


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, default=None, help="model directory (default: the packaged model)"
    )
    parser.add_argument(
        "--clip", type=Path, default=DEFAULT_CLIP_DIR, help="clip folder (COCO JSON + images)"
    )
    parser.add_argument("--max-images", type=int, default=None, help="only the first N clip images")
    parser.add_argument("--hold-frames", type=int, default=10, help="frames each clip image is shown")
    parser.add_argument("--fps", type=float, default=10.0, help="emulated sensor frame rate")
    parser.add_argument(
        "--stream-size",
        type=int,
        nargs=2,
        default=DEFAULT_STREAM_SIZE,
        metavar=("W", "H"),
        help="image_raw size (the emulated ISP scales the clip to it)",
    )
    parser.add_argument("--roi-delay", type=int, default=2, help="frames before a new ROI takes effect")
    parser.add_argument("--output-dir", type=Path, default=Path("demo_output"))
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    parser.add_argument(
        "--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: the environment's)"
    )
    parser.add_argument(
        "--teleop",
        type=int,
        nargs="?",
        const=8088,
        default=None,
        metavar="PORT",
        help="also serve the operator web page on http://127.0.0.1:PORT/ (default port 8088); "
        "boxes drawn there replace the stand-in detector's until it publishes the next image's",
    )
    return parser


def prepare_frames(clip: Clip, folder: Path, hold: int, lead_in: int) -> list[int]:
    """A folder the emulator plays in name order: each clip image ``hold`` times (the first longer).

    Returns the clip image index of every frame file, in play order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    shown = []
    for image in clip.images:
        source = (clip.directory / image.file_name).resolve()
        repeats = hold + (lead_in if image.index == 0 else 0)
        for _ in range(repeats):
            target = folder / f"{len(shown):06d}{source.suffix}"
            try:
                target.symlink_to(source)
            except OSError:  # no symlinks (some filesystems): copy
                target.write_bytes(source.read_bytes())
            shown.append(image.index)
    return shown


class FrameLog:
    """Which source frame the emulated camera exposed at a given stamp (its ground-truth log).

    The node stamps frames with SensorTimestamp (monotonic clock) + (ROS time - monotonic)
    measured at its start; both clocks are system-wide, so this process can undo the
    offset to within microseconds, far below the frame period.
    """

    def __init__(self, path: Path, frame_period_ns: int):
        self.path = path
        self.period = frame_period_ns
        self.offset = time.time_ns() - time.monotonic_ns()
        self.timestamps: list[int] = []
        self.sequences: list[int] = []
        self._read_bytes = 0

    def _refresh(self) -> None:
        import json

        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._read_bytes)
                data = handle.read()
        except OSError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self._read_bytes += len(complete)
        for line in complete.splitlines():
            entry = json.loads(line)
            self.timestamps.append(int(entry["sensor_timestamp_ns"]))
            self.sequences.append(int(entry["sequence"]))

    def sequence(self, stamp_ns: int) -> int | None:
        import bisect

        target = stamp_ns - self.offset
        if not self.timestamps or target > self.timestamps[-1]:
            self._refresh()
        i = bisect.bisect_left(self.timestamps, target)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(self.timestamps) and abs(self.timestamps[j] - target) < self.period // 3:
                best = self.sequences[j]
        return best


def node_cmd(module: str, params: dict[str, object]) -> list[str]:
    cmd = [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())", "--ros-args"]
    cmd += ["-r", f"__ns:={NAMESPACE}"]
    for name, value in params.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        cmd += ["-p", f"{name}:={value}"]
    return cmd


def start(cmd: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    return start_group(cmd, env, log_path)


def stop(proc: subprocess.Popen) -> None:
    """SIGINT the child's process group, then SIGKILL if it lingers."""
    stop_group(proc)


class DemoScorer:
    """Scores received frames + segmentations against the clip and renders the overlays (ROS-free)."""

    def __init__(self, clip: Clip, video_path: Path | None, fps: float):
        self.clip = clip
        self.evaluation = Evaluation(
            "recorded",
            "imx500 (emulated)",
            "live demo",
            {
                "image": "image_raw",
                "prompt": "prompt_publisher (clip boxes)",
                "ground_truth": "demo clip",
                "segmentations": "segmentations",
            },
        )
        self.video_path = video_path
        self.fps = fps
        self.writer = None
        self.frame_paths: list[Path] = []
        self.latest: dict[int, object] = {}  # prompt id -> last OK result (drawn until the image changes)
        self.shown: int | None = None
        self.tiles: dict[int, np.ndarray] = {}
        self.tile_masks: dict[int, int] = {}
        self.images_seen: set[int] = set()
        self.frames = 0

    def add(
        self, frame_rgb: np.ndarray, stamp: int, time_ns: int, segmentation_array, index: int | None = None
    ):
        """Score and draw one frame's results; ``index``: the clip image shown (None = recognise)."""
        height, width = frame_rgb.shape[:2]
        if index is None:
            index, _ = self.clip.match(frame_rgb)
        image = self.clip.images[index]
        self.images_seen.add(index)
        if index != self.shown:
            self.shown, self.latest = index, {}
        prompts = [BagPrompt(pid, box) for pid, box in image.prompts((width, height))]
        gt = image.ground_truth((width, height))
        results = results_from_segmentations(segmentation_array)
        self.evaluation.frame_latency_ms.extend(r.latency_ms for r, _ in results if r.status == Status.OK)
        self.evaluation.add_frame(self.frames, stamp, time_ns, frame_rgb, prompts, results, gt, overlay=False)
        self.frames += 1
        ids = {p.id for p in prompts}
        for result, _ in results:
            if result.status == Status.OK and result.prompt_id in ids:
                self.latest[result.prompt_id] = result
        ordered = [self.latest[p.id] for p in prompts if p.id in self.latest]
        # Colours follow the prompt's position in the set, as on the node's mask topic.
        label = np.zeros((height, width), np.uint8)
        for k, p in enumerate(prompts, start=1):
            if p.id in self.latest:
                piece = compose_frame_mask([self.latest[p.id]], (width, height))
                label[piece > 0] = k
        served = [r.prompt_id for r, _ in results if r.status == Status.OK]
        overlay = draw_overlay(frame_rgb, label, [p.box for p in prompts], gt)
        text = f"frame {self.frames}  clip image {index + 1}/{len(self.clip)}  served {served or '-'}"
        cv2.putText(overlay, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
        if len(ordered) >= self.tile_masks.get(index, -1):  # the tile with the most masks drawn
            self.tiles[index], self.tile_masks[index] = overlay, len(ordered)
        self._write_video(overlay)

    def _write_video(self, overlay_rgb: np.ndarray) -> None:
        if self.video_path is None:
            return
        if self.writer is None and not self.frame_paths:
            height, width = overlay_rgb.shape[:2]
            writer = cv2.VideoWriter(
                str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height)
            )
            if writer.isOpened():
                self.writer = writer
        if self.writer is not None:
            self.writer.write(np.ascontiguousarray(overlay_rgb[:, :, ::-1]))
        else:  # no mp4 encoder: numbered PNGs a person can page through
            folder = self.video_path.with_suffix("").parent / "overlay_frames"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{len(self.frame_paths):05d}.png"
            write_png(path, overlay_rgb)
            self.frame_paths.append(path)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    def grid(self) -> np.ndarray:
        return image_grid([self.tiles[i] for i in sorted(self.tiles)], columns=4, cell_width=320)


def serve_until_interrupted(port: int, children: list[tuple[subprocess.Popen, Path]]) -> None:
    """Keep the nodes (and the operator page) running after the scored pass, until Ctrl-C."""
    print(f"demo: scored pass done; the clip keeps looping on http://127.0.0.1:{port}/ until Ctrl-C")
    try:
        while all(proc.poll() is None for proc, _ in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("demo: stopping")


def resolve_model(model: Path | None) -> Path:
    directory = model or DEFAULT_MODELS_DIR
    try:
        load_model_card(directory)
    except ModelCardError as exc:
        hint = (
            "no packaged model yet: train/package one (see README) or pass --model DIR"
            if model is None
            else "pass --model a directory holding model_card.json"
        )
        raise DemoError(f"{exc}; {hint}") from None
    return directory.resolve()


def run(args: argparse.Namespace) -> dict:
    model = resolve_model(args.model)
    if args.hold_frames < 1 or args.fps <= 0:
        raise DemoError("--hold-frames must be >= 1 and --fps > 0")
    try:
        clip = Clip(args.clip, args.max_images)
    except (OSError, ValueError) as exc:
        raise DemoError(f"cannot load the clip: {exc}") from None
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    lead_in = int(round(LEAD_IN_SECONDS * args.fps))
    frame_images = prepare_frames(clip, out / "frames", args.hold_frames, lead_in)
    frame_log_path = logs / "emulator_frames.jsonl"
    frame_log_path.unlink(missing_ok=True)
    frame_log = FrameLog(frame_log_path, int(round(1e9 / args.fps)))
    env = dict(os.environ, PYTHONUNBUFFERED="1", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    if args.domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(args.domain_id)
    env.pop("ROS_LOCALHOST_ONLY", None)
    env = with_large_images_profile(env)  # the sensor node publishes 0.9 MB image_raw frames
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    print(
        f"demo: {len(clip)} clip images x {args.hold_frames} frames at {args.fps:g} fps through the emulated "
        f"IMX500 (ROI delay {args.roi_delay} frames), model {model}"
    )
    children: list[tuple[subprocess.Popen, Path]] = []
    scorer = DemoScorer(clip, out / "overlay.mp4", args.fps)
    try:
        publisher_log = logs / "prompt_publisher.log"
        children.append(
            (
                start(
                    node_cmd(
                        "picosam3_ros.nodes.prompt_publisher_node",
                        {"clip_dir": str(clip.directory.resolve()), "image_topic": "image_raw"},
                    ),
                    publisher_log,
                    env,
                ),
                publisher_log,
            )
        )
        sensor_log = logs / "sensor_node.log"
        sensor = start(
            node_cmd(
                "picosam3_ros.nodes.sensor_node",
                {
                    "camera": "emulator",
                    "backend": "imx500",
                    "model": str(model),
                    "emulator.source": str((out / "frames").resolve()),
                    # With the operator page up the clip keeps playing after the scored pass.
                    "emulator.loop": args.teleop is not None,
                    "emulator.ground_truth_log": str(frame_log_path.resolve()),
                    "frame_rate": float(args.fps),
                    "stream_width": int(args.stream_size[0]),
                    "stream_height": int(args.stream_size[1]),
                    "roi_apply_delay_frames": args.roi_delay,
                },
            ),
            sensor_log,
            env,
        )
        children.insert(0, (sensor, sensor_log))
        if args.teleop is not None:
            teleop_log = logs / "teleop_ui.log"
            teleop_params = {"image_topic": "image_raw", "port": args.teleop}
            teleop = node_cmd("picosam3_ros.nodes.teleop_ui_node", teleop_params)
            children.append((start(teleop, teleop_log, env), teleop_log))
            print(f"demo: operator page on http://127.0.0.1:{args.teleop}/ (log {teleop_log})")
        viewer = DemoViewer(scorer, args.domain_id, NAMESPACE, frame_images, frame_log)
        counts = viewer.run(args.timeout, children)
        if args.teleop is not None:
            serve_until_interrupted(args.teleop, children)
    finally:
        for proc, _ in children:
            stop(proc)
        scorer.close()
    if not scorer.frames:
        raise DemoError(
            f"no frame got results (image_raw {counts['image_raw']}, segmentations "
            f"{counts['segmentations']}); see {logs}"
        )
    summary = write_json(scorer.evaluation, out / "report.json", {"model": str(model), "demo": counts})
    figures = write_figures(scorer.evaluation, out)
    write_png(out / "overlays.png", scorer.grid())
    figures.append(str(out / "overlays.png"))
    (out / "report.md").write_text(markdown_summary(summary, [Path(f).name for f in figures]))
    summary["demo"] = counts
    summary["video"] = (
        str(out / "overlay.mp4")
        if scorer.writer is not None or not scorer.frame_paths
        else str(out / "overlay_frames")
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    try:
        summary = run(args)
    except DemoError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    counts, lat = summary["demo"], summary["latency_ms"]

    def pct(value) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    print(
        f"demo: {counts['segmentations']} frames segmented by the node at {counts['fps']:.1f} fps "
        f"({counts['wall_s']:.0f} s), {summary['frames_with_prompts']} scored "
        f"({counts['unattributed']} without a frame-log entry); image_raw frames received: "
        f"{counts['image_raw']} (recognition disagreeing with the log: {counts['recognition_disagrees']})"
    )
    print(f"demo: latency (node, frame to mask) p50 {lat['p50']} ms, p99 {lat['p99']} ms")
    print(
        f"demo: {summary['instances']} masks scored: mIoU crop {pct(summary['miou_crop'])}, "
        f"full frame {pct(summary['miou_full'])} (box-as-mask {pct(summary['miou_crop_box_baseline'])}); "
        f"statuses {summary['status_counts']}; {summary['unmatched_results']} results for the previous image"
    )
    print(
        f"demo: overlay video {summary['video']}, image grid {args.output_dir / 'overlays.png'}, "
        f"report {args.output_dir / 'report.md'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
