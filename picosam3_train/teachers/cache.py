"""The teacher cache: soft masks computed once, read by training (which never runs a teacher).

A cache is a directory:

* ``soft_masks.npy``: uint8 [N, 96, 96], round(probability * 255), in the standard crop
  frame of ``crop_rect_for_box(annotation bbox)``;
* ``ann_ids.npy``: int64 [N], the annotation ids (the key);
* ``scores.npy``: float32 [N], the teacher's confidence 0..1;
* ``meta.json``: teacher name and provenance, the dataset (annotation file and image
  folder), counts of skipped instances, date and the command.

CLI: ``picosam3_train cache-teacher --teacher KIND --weights PATH --dataset ann.json[:images] --out DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from picosam3_ros.core.crop import MODEL_INPUT_SIZE, InvalidRoiError, crop_rect_for_box
from picosam3_train.teachers.base import Teacher

CACHE_FILES = ("soft_masks.npy", "ann_ids.npy", "scores.npy", "meta.json")


@dataclass
class TeacherCache:
    soft_masks: np.ndarray  # uint8 [N, 96, 96]
    ann_ids: np.ndarray  # int64 [N]
    scores: np.ndarray  # float32 [N]
    meta: dict

    def __post_init__(self) -> None:
        self._index = {int(a): i for i, a in enumerate(self.ann_ids)}

    def __len__(self) -> int:
        return len(self.ann_ids)

    def __contains__(self, ann_id: int) -> bool:
        return int(ann_id) in self._index

    def probability(self, ann_id: int) -> np.ndarray:
        """Soft mask of an annotation as float32 0..1 (96x96, standard crop frame)."""
        return self.soft_masks[self._index[int(ann_id)]].astype(np.float32) / 255.0

    def score(self, ann_id: int) -> float:
        return float(self.scores[self._index[int(ann_id)]])


def load_cache(directory: str | Path, mmap: bool = True) -> TeacherCache:
    directory = Path(directory)
    missing = [name for name in CACHE_FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"teacher cache {directory} lacks {missing}")
    soft = np.load(directory / "soft_masks.npy", mmap_mode="r" if mmap else None)
    ann_ids = np.load(directory / "ann_ids.npy")
    scores = np.load(directory / "scores.npy")
    if (
        soft.dtype != np.uint8
        or soft.shape[1:] != (MODEL_INPUT_SIZE, MODEL_INPUT_SIZE)
        or len(ann_ids) != len(soft)
        or len(scores) != len(soft)
    ):
        raise ValueError(
            f"teacher cache {directory} is inconsistent: {soft.dtype} {soft.shape}, "
            f"{len(ann_ids)} ids, {len(scores)} scores"
        )
    return TeacherCache(
        soft,
        ann_ids.astype(np.int64),
        scores.astype(np.float32),
        json.loads((directory / "meta.json").read_text()),
    )


def build_cache(
    teacher: Teacher,
    annotation_file: str | Path,
    image_dir: str | Path,
    out_dir: str | Path,
    limit: int = 0,
    progress: bool = False,
    command: str = "",
) -> TeacherCache:
    """Run ``teacher`` once over every usable non-crowd instance and write the cache.

    Written to a temporary sibling directory and renamed, so a cache is never half-written."""
    from pycocotools.coco import COCO

    annotation_file, image_dir, out_dir = Path(annotation_file), Path(image_dir), Path(out_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(annotation_file))
    skipped = {"crowd": 0, "degenerate_box": 0, "missing_image": 0, "teacher_error": 0}
    masks, ids, scores = [], [], []
    image_ids = sorted(coco.getImgIds())
    iterator = image_ids
    if progress:
        from tqdm import tqdm

        iterator = tqdm(image_ids, desc=f"{teacher.name} on {annotation_file.name}", unit="img")
    start = time.perf_counter()
    for image_id in iterator:
        if limit and len(ids) >= limit:
            break
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[image_id])), key=lambda a: a["id"])
        if not anns:
            continue
        bgr = cv2.imread(str(image_dir / coco.imgs[image_id]["file_name"]), cv2.IMREAD_COLOR)
        if bgr is None:
            skipped["missing_image"] += len(anns)
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        for ann in anns:
            if limit and len(ids) >= limit:
                break
            if ann.get("iscrowd", 0):
                skipped["crowd"] += 1
                continue
            box = [float(v) for v in ann["bbox"]]
            if not all(math.isfinite(v) for v in box) or box[2] < 1 or box[3] < 1:
                skipped["degenerate_box"] += 1
                continue
            try:
                crop_rect_for_box(box, (rgb.shape[1], rgb.shape[0]))
            except InvalidRoiError:
                skipped["degenerate_box"] += 1
                continue
            try:
                out = teacher.predict(rgb, box)
            except (RuntimeError, ValueError) as exc:
                skipped["teacher_error"] += 1
                print(f"teacher failed on annotation {ann['id']}: {exc}", file=sys.stderr)
                continue
            masks.append(np.round(np.clip(out.probability, 0, 1) * 255).astype(np.uint8))
            ids.append(int(ann["id"]))
            scores.append(out.score)
    seconds = time.perf_counter() - start
    meta = {
        "format": "picosam3 teacher cache v1",
        "teacher": teacher.name,
        "provenance": teacher.provenance(),
        "dataset": str(annotation_file.resolve()),
        "images": str(image_dir.resolve()),
        "crop_frame": "standard crop: picosam3_ros.core.crop.crop_rect_for_box(bbox) + crop_and_resize, "
        "96x96",
        "encoding": "soft_masks uint8 = round(probability * 255)",
        "count": len(ids),
        "skipped": skipped,
        "seconds": round(seconds, 2),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    return write_cache(out_dir, masks, ids, scores, meta)


def write_cache(out_dir: str | Path, masks: list[np.ndarray], ids: list[int], scores: list[float],
                meta: dict) -> TeacherCache:
    """Write a cache directory (via a temporary sibling and a rename: never half-written)."""
    out_dir = Path(out_dir)
    size = MODEL_INPUT_SIZE
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "soft_masks.npy", np.stack(masks) if len(masks) else np.zeros((0, size, size), np.uint8))
    np.save(tmp / "ann_ids.npy", np.asarray(ids, np.int64))
    np.save(tmp / "scores.npy", np.asarray(scores, np.float32))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return load_cache(out_dir)


def main(argv: list[str] | None = None) -> int:
    from picosam3_train.evaluate import resolve_dataset
    from picosam3_train.teachers import TEACHER_KINDS, build_teacher

    parser = argparse.ArgumentParser(
        prog="picosam3_train cache-teacher", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--teacher", required=True, choices=TEACHER_KINDS)
    parser.add_argument(
        "--weights", required=True, help="local weights: a transformers folder, a .pt/.onnx file"
    )
    parser.add_argument(
        "--dataset", required=True, help="annotations.json[:image_dir] (relative to ../shared/data)"
    )
    parser.add_argument("--out", required=True, help="cache directory to write")
    parser.add_argument("--limit", type=int, default=0, help="first N instances only (0 = all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--input-size", type=int, default=None, help="onnx/checkpoint teachers: input side")
    parser.add_argument("--bpe-path", default=None, help="sam3-package: the BPE vocabulary file")
    args = parser.parse_args(argv)
    teacher = build_teacher(
        args.teacher, args.weights, device=args.device, input_size=args.input_size, bpe_path=args.bpe_path
    )
    annotations, images = resolve_dataset(args.dataset)
    command = "picosam3_train cache-teacher " + " ".join(argv if argv is not None else sys.argv[1:])
    cache = build_cache(
        teacher, annotations, images, args.out, args.limit, progress=sys.stderr.isatty(), command=command
    )
    print(
        f"wrote {args.out}: {len(cache)} soft masks from {teacher.name}; skipped {cache.meta['skipped']}; "
        f"mean score {float(cache.scores.mean()) if len(cache) else float('nan'):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
