"""Following on DAVIS 2016 at full rate: what the node gives for boxes that are sparse and late.

    python bench/bench_follow.py [--model DIR] [--data ../shared/data/davis2016] [--cache DIR]
                                 [--rows NAME,...] [--json out.json]

Builds (once, under --cache) the bag `coco_to_bag --rate 24 --encoding jpeg` writes from
`instances_davis2016_full.json` (20 sequences, 1,376 consecutive frames, the original JPEGs, the
frame's ground-truth box on every frame with one prompt id per sequence) and a bag of two
objects on one sensor (sequence k beside sequence k + 10, 854 px each, one frame of 1708x480),
then runs each row through `bag_eval`'s own code (`evaluate_bag`, the node's frame server):

| row | boxes | path |
|---|---|---|
| gt | the ground-truth box on every frame | CPU |
| every5 / every10 / every24 | a box every Nth frame, held (`--prompt-every N`) | CPU |
| held | the first frame's box only, held (`--prompt-every 0`) | CPU |
| naive / naive_lag3 | first box, then the tight box of the last mask (lag3: the mask 3 frames back) | CPU |
| follow | first box, `--follow` | CPU |
| follow_imx500_d2 / _d3 | first box, `--follow`, emulated IMX500, ROI apply delay 2 / 3 | sensor |
| every24_follow | a box every 24th frame, `--follow` | CPU |
| two_held / two_follow | two objects side by side, first boxes | CPU |
| two_follow_imx500 | the same, followed | sensor (one ROI per frame, multiplexed) |

Full-frame mIoU over every frame (a frame where a prompt has no mask counts 0), for all 20
sequences and for the two halves: `tune` (the sequences at even positions in alphabetical
order: the follower's settings were chosen on these) and `report` (odd positions, never used to
choose anything). The sequences are in the default model's training data (every 5th frame):
read the gap to the `gt` row, not the level. Per-prompt latency: the pipeline's time per frame
(CPU: crops, flow, network, second pass; sensor path: the host side of a frame, program the next
ROI + serve, the emulated on-sensor network excluded) divided by the prompts on the frame, p50 / p99.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from picosam3_ros.core.pipeline import Prompt, PromptResult, Status  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "davis2016"
TOPICS = ("/image", "/prompts", "/ground_truth")
ROWS = ["gt", "every5", "every10", "every24", "held", "naive", "naive_lag3", "follow",
        "follow_imx500_d2", "follow_imx500_d3", "every24_follow", "two_held", "two_follow",
        "two_follow_imx500"]
PAIR_OFFSET = 10  # sequence k beside sequence k + 10 (alphabetical): both in the same half


def sequences(json_path: Path) -> list[tuple[str, int]]:
    """(sequence, frames) in bag order (alphabetical, as coco_to_bag writes a video set)."""
    images = json.loads(json_path.read_text())["images"]
    counts: dict[str, int] = {}
    for image in images:
        counts[image["davis_sequence"]] = counts.get(image["davis_sequence"], 0) + 1
    return sorted(counts.items())


def build_single_bag(data: Path, bag: Path) -> None:
    from picosam3_ros.evaluation import coco_to_bag

    code = coco_to_bag.main([str(data / "instances_davis2016_full.json"), str(data / "images"), str(bag),
                             "--rate", "24", "--encoding", "jpeg"])
    if code != 0:
        raise SystemExit(f"coco_to_bag failed ({code})")


def build_pair_bag(data: Path, bag: Path) -> list[tuple[str, str, int]]:
    """Two sequences side by side per frame; returns (left, right, frames) per pair."""
    from picosam3_ros.core.coco_dataset import CocoDataset
    from picosam3_ros.evaluation.bag_io import (
        COMPRESSED_IMAGE_TYPE,
        IMAGE_TYPE,
        PROMPT_ARRAY_TYPE,
        BagWriter,
        make_compressed_image,
        make_image,
        make_prompt_array,
    )
    from picosam3_ros.evaluation.coco_to_bag import START_TIME_NS

    dataset = CocoDataset(data / "instances_davis2016_full.json", data / "images")
    by_sequence: dict[str, list] = {}
    for frame in dataset.frames():
        by_sequence.setdefault(frame.sequence, []).append(frame)
    names = sorted(by_sequence)
    pairs = []
    period = round(1e9 / 24)
    index = 0
    with BagWriter(bag) as writer:
        writer.add_topic(TOPICS[1], PROMPT_ARRAY_TYPE)
        writer.add_topic(TOPICS[0], COMPRESSED_IMAGE_TYPE)
        writer.add_topic(TOPICS[2], IMAGE_TYPE)
        for k in range(len(names) - PAIR_OFFSET):
            left, right = by_sequence[names[k]], by_sequence[names[k + PAIR_OFFSET]]
            count = min(len(left), len(right))
            pairs.append((names[k], names[k + PAIR_OFFSET], count))
            for a, b in zip(left[:count], right[:count]):
                stamp = START_TIME_NS + index * period
                width = a.image_rgb.shape[1]
                bx, by, bw, bh = b.instances[0].box
                prompts = [(2 * k + 1, a.instances[0].box), (2 * k + 2, (bx + width, by, bw, bh))]
                writer.write(TOPICS[1], stamp - period // 4, make_prompt_array(prompts, stamp - period // 4))
                writer.write(TOPICS[0], stamp, make_compressed_image(np.hstack([a.image_rgb, b.image_rgb]),
                                                                     "jpeg", stamp))
                gt = np.hstack([a.instances[0].mask, b.instances[0].mask]).astype(np.uint8)
                gt[:, width:] *= 2
                writer.write(TOPICS[2], stamp, make_image(gt, "mono8", stamp))
                index += 1
    return pairs


class NaiveFollowing:
    """The naive follower of the issue: each frame's box is the tight box of an earlier mask."""

    def __init__(self, segment, lag: int = 0):
        self.segment = segment
        self.lag = lag
        self.history: dict[int, list[tuple[float, ...]]] = {}
        self.given: dict[int, tuple[float, ...]] = {}

    def __call__(self, frame_rgb: np.ndarray, prompts: list[Prompt]) -> list[PromptResult]:
        boxes = []
        for prompt in prompts:
            box = tuple(prompt.box_xywh)
            if self.given.get(prompt.prompt_id) != box:  # a new box: start from it
                self.given[prompt.prompt_id] = box
                self.history[prompt.prompt_id] = [box]
            past = self.history[prompt.prompt_id]
            boxes.append(past[max(0, len(past) - 1 - self.lag)])
        results = self.segment(frame_rgb, [Prompt(p.prompt_id, b) for p, b in zip(prompts, boxes)])
        for prompt, result in zip(prompts, results):
            past = self.history[prompt.prompt_id]
            tight = None
            if result.status == Status.OK and (result.crop_mask > 0).any():
                rows, cols = np.nonzero(result.crop_mask)
                tight = (result.crop.x + cols.min(), result.crop.y + rows.min(),
                         cols.max() - cols.min() + 1.0, rows.max() - rows.min() + 1.0)
            past.append(tight or past[-1])
        return results


def run_row(name: str, single: Path, pairs_bag: Path, model: Path | None) -> dict:
    from picosam3_ros.backends.frame_server import FrameServer
    from picosam3_ros.core.model_card import postprocess_in_use
    from picosam3_ros.core.predictor import Predictor
    from picosam3_ros.evaluation.bag_evaluation import evaluate_bag
    from picosam3_ros.evaluation.sensor_replay import FollowReplay

    post = postprocess_in_use(model)
    bag = pairs_bag if name.startswith("two_") else single
    every = {"gt": None, "every5": 5, "every10": 10, "every24": 24, "every24_follow": 24}.get(name, 0)
    follow = "follow" in name
    replay = None
    if "imx500" in name:
        delay = 3 if name.endswith("_d3") else 2
        replay = FollowReplay(model, "", post, delay, 30.0)
        segment = replay.segment
    else:
        predictor = Predictor(model, postprocess=post)
        segment = predictor.segment
        if follow:
            segment = FrameServer(predictor.segmenter, None, post, follow=True).segment
        if name.startswith("naive"):
            segment = NaiveFollowing(segment, lag=2 if name.endswith("lag3") else 0)
    started = time.perf_counter()
    evaluation = evaluate_bag(bag, *TOPICS, segment=segment, backend_name="imx500" if replay else "onnx",
                              postprocess=post, prompt_every=every, follow={} if follow else None,
                              max_overlays=0)
    elapsed = time.perf_counter() - started
    per_frame_ms = replay.host_ms if replay is not None else evaluation.frame_latency_ms
    if replay is not None:
        replay.close()
    prompts = 2 if name.startswith("two_") else 1
    per_prompt = np.asarray(per_frame_ms, np.float64) / prompts
    return {
        "name": name,
        "instances": [(s.frame_index, s.prompt_id, s.iou_full) for s in evaluation.instances],
        "statuses": evaluation.status_counts,
        "latency_p50_ms": float(np.percentile(per_prompt, 50)),
        "latency_p99_ms": float(np.percentile(per_prompt, 99)),
        "seconds": elapsed,
    }


def split_means(
    row: dict, frame_sequences: list[str], tune: set[str], pair_of: dict[int, str] | None
) -> dict:
    """mIoU over all instances and over the tune / report halves (by the instance's sequence)."""
    parts: dict[str, list[float]] = {"all": [], "tune": [], "report": []}
    for frame, prompt_id, iou in row["instances"]:
        sequence = frame_sequences[frame] if pair_of is None else pair_of[prompt_id]
        parts["all"].append(iou)
        parts["tune" if sequence in tune else "report"].append(iou)
    return {k: float(np.mean(v)) if v else float("nan") for k, v in parts.items()}


DESCRIPTIONS = {
    "gt": "the ground-truth box on every frame (the ceiling of box prompting)",
    "every5": "a box every 5th frame, held (a ~5 Hz detector)",
    "every10": "a box every 10th frame, held (a 2.4 Hz detector)",
    "every24": "a box every 24th frame, held (a 1 Hz detector)",
    "held": "the first frame's box only, held (an operator's drag without following)",
    "naive": "first box, then the tight box of the previous mask (naive following)",
    "naive_lag3": "the same, box from the mask 3 frames back (the sensor's ROI lag)",
    "follow": "first box, follow (CPU path)",
    "follow_imx500_d2": "first box, follow, emulated IMX500, ROI apply delay 2",
    "follow_imx500_d3": "first box, follow, emulated IMX500, ROI apply delay 3",
    "every24_follow": "a box every 24th frame + follow (CPU path)",
    "two_held": "two objects side by side, first boxes held (CPU path)",
    "two_follow": "two objects side by side, first boxes, follow (CPU path)",
    "two_follow_imx500": "two objects on one emulated IMX500 (delay 2, one ROI a frame), first boxes, follow",
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: packaged)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="DAVIS 2016 folder of ../shared/data")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "bench_follow", help="bags' folder")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to run")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    json_path = args.data / "instances_davis2016_full.json"
    if not json_path.is_file():
        print(f"bench_follow: no {json_path} (DAVIS 2016 at full rate, ../shared/data)", file=sys.stderr)
        return 1
    args.cache.mkdir(parents=True, exist_ok=True)
    single, pairs_bag = args.cache / "davis_full", args.cache / "davis_pairs"
    if not single.exists():
        print(f"building {single} ...", file=sys.stderr, flush=True)
        build_single_bag(args.data, single)
    pairs_file = args.cache / "davis_pairs.json"
    if not pairs_bag.exists():
        print(f"building {pairs_bag} ...", file=sys.stderr, flush=True)
        pairs_file.write_text(json.dumps(build_pair_bag(args.data, pairs_bag)))
    pairs = json.loads(pairs_file.read_text())
    names = sequences(json_path)
    frame_sequences = [name for name, count in names for _ in range(count)]
    tune = {name for k, (name, _) in enumerate(names) if k % 2 == 0}
    pair_of = {}
    for k, (left, right, _) in enumerate(pairs):
        pair_of[2 * k + 1], pair_of[2 * k + 2] = left, right

    results = []
    for name in rows:
        print(f"row {name} ...", file=sys.stderr, flush=True)
        row = run_row(name, single, pairs_bag, args.model)
        row.update(split_means(row, frame_sequences, tune, pair_of if name.startswith("two_") else None))
        results.append(row)
    model = str(args.model) if args.model else "packaged (picosam3_ros/models)"
    print(f"\nbench_follow: DAVIS 2016 full rate, model {model}; full-frame mIoU over every frame "
          f"(tune = the half the follower was tuned on, report = the other half)\n")
    print("| what the node is given | all 20 | report half | tune half | per-prompt ms p50 / p99 |")
    print("|---|---|---|---|---|")
    for row in results:
        print(f"| {DESCRIPTIONS[row['name']]} | {row['all']:.3f} | {row['report']:.3f} | {row['tune']:.3f} "
              f"| {row['latency_p50_ms']:.1f} / {row['latency_p99_ms']:.1f} |")
    if args.json:
        for row in results:
            row.pop("instances")
        args.json.write_text(json.dumps({"model": model, "rows": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
