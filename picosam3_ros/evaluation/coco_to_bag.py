"""coco_to_bag: turn a COCO/LVIS-format instance dataset into an evaluation rosbag2.

    coco_to_bag DATASET_JSON IMAGE_DIR OUT_BAG [--rate HZ] [--storage mcap|sqlite3] [--max-images N]

Each image with at least one non-crowd instance becomes one frame, ``--rate``
frames per second of bag time:

* ``/prompts`` (``picosam3_msgs/RoiPromptArray``), logged just before its frame:
  one prompt per instance, id = annotation id, box = the COCO box rounded to
  whole pixels. Prompt order is by decreasing mask area.
* ``/image`` (``sensor_msgs/Image`` rgb8, or ``--encoding``: any encoding the node reads,
  or jpeg/png as ``sensor_msgs/CompressedImage``; jpeg keeps a JPEG file's own bytes).

A video set (images carrying ``davis_sequence`` and ``frame``, e.g. DAVIS 2016 at full rate) is
written sequence by sequence in frame order, and a prompt keeps one id through its sequence (the
annotation id of the sequence's first frame; instances are matched by their order in each frame):
a new prompt id at each sequence start, the frame's own box on every frame. ``bag_eval
--prompt-every 0`` then keeps each sequence's first box only, ``--prompt-every 24`` one box a
second at 24 fps (``--rate 24``).
* ``/ground_truth`` (``sensor_msgs/Image`` mono8, the frame's stamp): 0 =
  background, k = the k-th prompt of the array in effect (1-based), later
  prompts winning where instances overlap (the node's ``mask`` encoding).

Evaluate it with ``bag_eval OUT_BAG --image-topic /image --prompt-topic /prompts
--gt-topic /ground_truth --json result.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from picosam3_ros.core.coco_dataset import MAX_INSTANCES_PER_FRAME, CocoDataset, DatasetError, EvalFrame
from picosam3_ros.core.image_conversion import SUPPORTED_ENCODINGS
from picosam3_ros.evaluation.bag_io import (
    COMPRESSED_IMAGE_TYPE,
    IMAGE_TYPE,
    PROMPT_ARRAY_TYPE,
    STORAGE_FORMATS,
    BagError,
    BagWriter,
    make_compressed_from_bytes,
    make_frame,
    make_image,
    make_prompt_array,
)

DEFAULT_IMAGE_TOPIC = "/image"
DEFAULT_PROMPT_TOPIC = "/prompts"
DEFAULT_GT_TOPIC = "/ground_truth"
FRAME_ENCODINGS = (*SUPPORTED_ENCODINGS, "jpeg", "png")
# Bag time of the first frame: a fixed epoch keeps bags byte-for-byte reproducible.
START_TIME_NS = 1_700_000_000 * 1_000_000_000


def write_frames_to_bag(
    frames,
    out_bag: Path | str,
    rate_hz: float = 10.0,
    storage: str = "mcap",
    frame_id: str = "camera",
    image_topic: str = DEFAULT_IMAGE_TOPIC,
    prompt_topic: str = DEFAULT_PROMPT_TOPIC,
    gt_topic: str = DEFAULT_GT_TOPIC,
    encoding: str = "rgb8",
) -> dict:
    """Write ``EvalFrame``s as prompts + image + ground truth; returns counts."""
    if not rate_hz > 0:
        raise BagError(f"--rate must be positive, got {rate_hz}")
    period_ns = int(round(1e9 / rate_hz))
    prompt_lead_ns = max(1, min(1_000_000, period_ns // 4))
    n_frames = n_prompts = 0
    sequence: str | None = None
    sequence_ids: list[int] = []
    with BagWriter(out_bag, storage) as writer:
        writer.add_topic(prompt_topic, PROMPT_ARRAY_TYPE)
        writer.add_topic(image_topic, COMPRESSED_IMAGE_TYPE if encoding in ("jpeg", "png") else IMAGE_TYPE)
        writer.add_topic(gt_topic, IMAGE_TYPE)
        for index, frame in enumerate(frames):
            frame: EvalFrame
            stamp = START_TIME_NS + index * period_ns
            ids = [prompt_id(inst.annotation_id) for inst in frame.instances]
            if frame.sequence is not None:  # a video: one id per object through its sequence
                if frame.sequence != sequence:
                    sequence, sequence_ids = frame.sequence, ids
                ids = [sequence_ids[k] if k < len(sequence_ids) else i for k, i in enumerate(ids)]
            prompts = [(pid, inst.box) for pid, inst in zip(ids, frame.instances)]
            writer.write(
                prompt_topic,
                stamp - prompt_lead_ns,
                make_prompt_array(prompts, stamp - prompt_lead_ns, frame_id),
            )
            writer.write(image_topic, stamp, frame_message(frame, encoding, stamp, frame_id))
            writer.write(gt_topic, stamp, make_image(frame.ground_truth(), "mono8", stamp, frame_id))
            n_frames += 1
            n_prompts += len(prompts)
    return {"frames": n_frames, "prompts": n_prompts}


def frame_message(frame: EvalFrame, encoding: str, stamp: int, frame_id: str):
    """The frame as a message; "jpeg" from a JPEG file keeps the file's bytes (no second encoding)."""
    path = frame.source_path
    if encoding == "jpeg" and path is not None and path.suffix.lower() in (".jpg", ".jpeg"):
        return make_compressed_from_bytes(path.read_bytes(), "jpeg", stamp, frame_id)
    return make_frame(frame.image_rgb, encoding, stamp, frame_id)


def prompt_id(annotation_id: int) -> int:
    """The RoiPrompt id (uint32) for an annotation: its id, or its low 32 bits when it is larger
    (DAVIS 2016 here offsets its ids by 9e9 so they never collide with COCO's)."""
    return int(annotation_id) & 0xFFFFFFFF


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coco_to_bag",
        description="Write a COCO/LVIS-format instance dataset as a rosbag2 for bag_eval "
        "(rgb8 frames, RoiPromptArray box prompts with annotation ids, mono8 ground truth).",
    )
    parser.add_argument("dataset_json", type=Path, help="COCO/LVIS instances JSON")
    parser.add_argument("image_dir", type=Path, help="folder holding the images named in the JSON")
    parser.add_argument("out_bag", type=Path, help="rosbag2 directory to create (must not exist)")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second of bag time (default 10)")
    parser.add_argument("--storage", choices=STORAGE_FORMATS, default="mcap")
    parser.add_argument("--max-images", type=int, default=None, help="only the first N images with instances")
    parser.add_argument(
        "--max-instances",
        type=int,
        default=MAX_INSTANCES_PER_FRAME,
        help="at most this many instances per image, largest first (<= 255)",
    )
    parser.add_argument("--frame-id", default="camera")
    parser.add_argument(
        "--encoding",
        choices=FRAME_ENCODINGS,
        default="rgb8",
        help="frame encoding: an Image encoding the node reads, or jpeg/png (CompressedImage)",
    )
    parser.add_argument("--image-topic", default=DEFAULT_IMAGE_TOPIC)
    parser.add_argument("--prompt-topic", default=DEFAULT_PROMPT_TOPIC)
    parser.add_argument("--gt-topic", default=DEFAULT_GT_TOPIC)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    if not 1 <= args.max_instances <= MAX_INSTANCES_PER_FRAME:
        print(f"coco_to_bag: error: --max-instances must be 1..{MAX_INSTANCES_PER_FRAME}", file=sys.stderr)
        return 2
    if args.max_images is not None and args.max_images < 1:
        print("coco_to_bag: error: --max-images must be at least 1", file=sys.stderr)
        return 2
    try:
        dataset = CocoDataset(args.dataset_json, args.image_dir)
        counts = write_frames_to_bag(
            dataset.frames(args.max_images, args.max_instances),
            args.out_bag,
            args.rate,
            args.storage,
            args.frame_id,
            args.image_topic,
            args.prompt_topic,
            args.gt_topic,
            args.encoding,
        )
    except (BagError, DatasetError) as exc:
        print(f"coco_to_bag: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"coco_to_bag: wrote {counts['frames']} frames, {counts['prompts']} prompts to {args.out_bag} "
        f"({args.storage}, {args.rate:g} Hz)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
