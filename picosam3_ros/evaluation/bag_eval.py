"""bag_eval: evaluate promptable segmentation on a rosbag2 recording.

Run the node's pipeline on a bag (CPU ONNX or the emulated IMX500):

    bag_eval BAG --image-topic /image --prompt-topic /prompts --gt-topic /ground_truth \
        [--model DIR|model_card.json|FILE.onnx] [--backend NAME] --json out.json \
        [--markdown out.md] [--figures DIR]

with the prompts followed from frame to frame as the node's ``follow`` does (``--follow``), and only
every Nth prompt message of the bag (``--prompt-every N``, a slow detector; 0 = the first box of
each object only):

    bag_eval BAG ... --follow --prompt-every 24 [--backend imx500 --roi-apply-delay 2]

or score what a live node recorded (its ``segmentations`` topic) against ground truth:

    bag_eval BAG --image-topic /image_raw --prompt-topic /prompts --gt-topic /ground_truth \
        --segmentations-topic /segmentations --json out.json

Conventions (prompts apply to the frames after them; mono8 ground truth with
the frame's stamp, value k = k-th prompt) are in picosam3_ros/evaluation/bag_evaluation.py
and the README. Errors print one line and exit 1 (bad usage: 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from picosam3_ros.backends import backend_names, backend_spec
from picosam3_ros.core.postprocess import add_postprocess_arguments
from picosam3_ros.evaluation.bag_io import BagError

JITTER_SWEEP = (0.0, 0.05, 0.1, 0.2)  # the same sweep as picosam3_train evaluate's


def _sweep_row(level: float, evaluation) -> dict:
    summary = evaluation.summary()
    keys = ("miou_full", "miou_crop", "miou_full_box_baseline", "miou_full_by_size", "miou_full_by_crowding")
    return {"box_jitter": level, "instances": summary["instances"], **{k: summary[k] for k in keys}}


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bag_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", type=Path, help="rosbag2 directory (mcap or sqlite3), or a bare .mcap file")
    parser.add_argument(
        "--image-topic", required=True,
        help="frames: sensor_msgs/Image (any encoding the node reads) or CompressedImage (jpeg/png)",
    )
    parser.add_argument(
        "--prompt-topic", required=True, help="sensor_msgs/RegionOfInterest or picosam3_msgs/RoiPromptArray"
    )
    parser.add_argument("--gt-topic", default=None, help="mono8 ground truth with the frames' stamps")
    parser.add_argument(
        "--segmentations-topic",
        default=None,
        help="score a node's recorded picosam3_msgs/SegmentationArray instead of running a model",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model directory or model_card.json (default: the packaged model), or an .onnx file",
    )
    parser.add_argument(
        "--precision", choices=("fp32", "int8"), default="fp32", help="which ONNX of the card"
    )
    parser.add_argument("--backend", choices=backend_names(), default="onnx",
                        help="a registered backend (picosam3_ros/backends/__init__.py); a sensor one runs "
                        "the emulated camera")
    add_postprocess_arguments(parser)
    parser.add_argument(
        "--box-jitter",
        type=float,
        default=0.0,
        help="move each prompt side by N(0, this) of the box size (detector-like boxes)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --box-jitter")
    parser.add_argument(
        "--jitter-sweep", action="store_true",
        help="also run the bag with box noise 0, 0.05, 0.1 and 0.2 and report the sweep (run mode)",
    )
    parser.add_argument(
        "--protocols",
        default="project",
        help="project (the node's crop rule) and/or papers (square cut at the frame border; onnx backend)",
    )
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = default)")
    parser.add_argument(
        "--follow", action="store_true",
        help="follow each prompt's object from frame to frame, as the node's `follow` does; every prompt "
        "in effect is then scored on every frame (no mask = IoU 0). imx500: frames in order, each once, "
        "with the ROI lag (docs/following.md)",
    )
    parser.add_argument(
        "--prompt-every", type=int, default=None, metavar="N",
        help="use only every Nth prompt message (a slow detector); a message with other prompt ids "
        "(a new object) is always used; 0 = only those (each object's first box)",
    )
    parser.add_argument(
        "--roi-apply-delay",
        type=int,
        default=2,
        help="imx500: frames before a new ROI takes effect (emulated sensor)",
    )
    parser.add_argument("--json", type=Path, required=True, help="write the report here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write a markdown summary")
    parser.add_argument("--figures", type=Path, default=None, help="also write PNG figures into this folder")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _model_args(model: Path | None) -> tuple[Path | None, str]:
    """--model -> (model_dir for the card, explicit onnx file)."""
    if model is None:
        return None, ""
    if model.suffix == ".onnx":
        card_dir = model.parent if (model.parent / "model_card.json").is_file() else None
        return card_dir, str(model)
    return model, ""


def follow_report(backend: str, roi_apply_delay: int) -> dict:
    """The report's "follow" block: the settings the followers ran with and how frames were shown."""
    import dataclasses

    from picosam3_ros.core.follow import FollowSettings

    if backend_spec(backend).runs_network:
        shown = ("every bag frame once, in order, at an emulated 30 fps; an ROI takes effect "
                 f"{roi_apply_delay + 1} frames after the frame it was written on")
    else:
        shown = "every bag frame in order (CPU path)"
    return {"settings": dataclasses.asdict(FollowSettings()), "frames": shown}


def run(args: argparse.Namespace) -> dict:
    from picosam3_ros.backends import BackendError
    from picosam3_ros.backends.frame_server import FrameServer
    from picosam3_ros.core.model_card import postprocess_in_use
    from picosam3_ros.core.predictor import Predictor
    from picosam3_ros.evaluation.bag_evaluation import evaluate_bag
    from picosam3_ros.evaluation.report import markdown_summary, write_figures, write_json

    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise BagError(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.box_margin is not None and args.box_margin < 0.0:
        raise BagError(f"--box-margin must be >= 0, got {args.box_margin}")
    protocols = {p.strip() for p in args.protocols.split(",") if p.strip()}
    if not protocols <= {"project", "papers"} or "project" not in protocols:
        raise BagError(f"--protocols must be project or project,papers, got {args.protocols!r}")
    if "papers" in protocols and backend_spec(args.backend).runs_network:
        raise BagError("--protocols papers needs a CPU backend such as onnx "
                       "(the sensor crops with the node's rule)")
    if args.prompt_every is not None and args.prompt_every < 0:
        raise BagError(f"--prompt-every must be >= 0, got {args.prompt_every}")
    if args.segmentations_topic and (args.follow or args.prompt_every is not None):
        raise BagError("--follow and --prompt-every run the pipeline; not with --segmentations-topic")
    if args.follow and "papers" in protocols:
        raise BagError("--follow runs the node's crop rule only (no --protocols papers)")
    segment = papers_segment = post = None
    model_path = ""
    backend_name = "recorded" if args.segmentations_topic else args.backend
    if not args.bag.exists():
        raise BagError(f"no bag at {args.bag}")
    if not args.segmentations_topic:
        model_dir, onnx_file = _model_args(args.model)
        # A bare ONNX file brings no card.
        post = postprocess_in_use(model_dir, args.threshold, args.box_margin, not args.no_box_clip,
                                  card=args.model is None or model_dir is not None)
        try:
            if backend_spec(args.backend).runs_network:
                from picosam3_ros.evaluation.sensor_replay import sensor_segmenter

                segment, model_path = sensor_segmenter(
                    model_dir, onnx_file, post, args.roi_apply_delay, follow=args.follow,
                )
            else:
                predictor = Predictor(model_dir, args.backend, args.precision, post, onnx_model=onnx_file,
                                      threads=args.threads)
                segment, model_path = predictor.segment, predictor.model_path
                if args.follow:
                    segment = FrameServer(predictor.segmenter, None, post, follow=True).segment
                if "papers" in protocols:
                    papers = Predictor(backend=predictor.segmenter, postprocess=post, border="cut")
                    papers_segment = papers.segment
        except BackendError as exc:
            raise BagError(f"cannot load the model: {exc}") from None

    def progress(done: int, total: int) -> None:
        if not args.quiet and (done == total or done % 50 == 0):
            print(
                f"\rbag_eval: frame {done}/{total}",
                end="\n" if done == total else "",
                file=sys.stderr,
                flush=True,
            )

    if args.jitter_sweep and args.segmentations_topic:
        raise BagError("--jitter-sweep runs the pipeline; not with --segmentations-topic")

    def evaluate(box_jitter: float, papers=None):
        return evaluate_bag(
            args.bag,
            args.image_topic,
            args.prompt_topic,
            args.gt_topic,
            segment,
            backend_name,
            args.segmentations_topic,
            progress=progress,
            postprocess=post,
            papers_segment=papers,
            box_jitter=box_jitter,
            seed=args.seed,
            prompt_every=args.prompt_every,
            follow=follow_report(args.backend, args.roi_apply_delay) if args.follow else None,
        )

    evaluation = evaluate(args.box_jitter, papers_segment)
    extra = {"model": model_path}
    if args.jitter_sweep:
        extra["jitter_sweep"] = [
            _sweep_row(level, evaluation if level == args.box_jitter else evaluate(level))
            for level in JITTER_SWEEP
        ]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    summary = write_json(evaluation, args.json, extra)
    figures = write_figures(evaluation, args.figures) if args.figures else []
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        links = [os.path.relpath(f, args.markdown.parent.resolve()) for f in map(os.path.abspath, figures)]
        args.markdown.write_text(markdown_summary(summary, links))
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    try:
        summary = run(args)
    except BagError as exc:
        print(f"bag_eval: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"bag_eval: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bag_eval: interrupted", file=sys.stderr)
        return 130
    lat = summary["latency_ms"]

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"

    print(
        f"bag_eval: {summary['frames']} frames, {summary['prompts']} prompts, "
        f"{summary['instances']} instances; "
        f"mIoU crop {pct(summary['miou_crop'])}, full {pct(summary['miou_full'])} "
        f"(box {pct(summary['miou_full_box_baseline'])}); "
        f"latency p50 {lat['p50']} ms p99 {lat['p99']} ms; throughput {summary['throughput_fps']} fps "
        f"-> {args.json}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
