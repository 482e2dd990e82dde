"""The teacher cache: soft masks computed once, read by training (which never runs a teacher).

A cache is a directory:

* ``soft_masks.npy``: uint8 [N, 96, 96], round(probability * 255), in the standard crop
  frame of ``crop_rect_for_box(annotation bbox)``;
* ``ann_ids.npy``: int64 [N], the annotation ids (the key);
* ``scores.npy``: float32 [N], the teacher's confidence 0..1;
* ``meta.json``: teacher name and provenance (weights digest, crop rule version), the
  dataset (annotation file and image folder), counts of skipped instances, date and the
  command. It is written last: a directory without it is unfinished.

Instances are the usable ones of the one COCO reader (``picosam3_ros.core.coco_dataset``),
in its order (image id, then annotation id).

Sharded caches, for many GPUs or a job array: shard ``i`` of ``n`` takes a contiguous,
balanced run of images (``CocoDataset.shard_images``) and writes an ordinary cache directory
``OUT/shards/shard-<i>-of-<n>``; ``OUT/manifest.json`` then makes the shards one cache, rows
in shard order, which is exactly the order of a single-process cache. Each shard writes its
rows as it goes and commits them with a ``progress.json``, so a killed shard, run again,
continues after its last commit. The last shard to finish writes the manifest after checking
that every shard used the same teacher, weights (SHA-256), crop rule, dataset and split
(``--merge`` does it by hand).

CLI::

    picosam3_train cache-teacher --teacher KIND --weights PATH --dataset ann.json[:images] --out DIR
    torchrun --nproc-per-node 8 -m picosam3_train.cli cache-teacher ... --device cuda --out DIR
    picosam3_train cache-teacher ... --shard 3/16 --out DIR     # one task of a job array
    picosam3_train cache-teacher --merge DIR
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from picosam3_ros.core.coco_dataset import CocoDataset, SkipCounts
from picosam3_ros.core.crop import CROP_RULE_VERSION, MODEL_INPUT_SIZE
from picosam3_train.npy_append import NpyAppender
from picosam3_train.teachers.base import Teacher

CACHE_FILES = ("soft_masks.npy", "ann_ids.npy", "scores.npy", "meta.json")
MANIFEST = "manifest.json"
PROGRESS = "progress.json"
# Provenance that must agree between the shards of one cache (the weights path may differ per node).
SAME_WORK_KEYS = ("teacher", "provenance", "weights_sha256", "crop_rule_version", "dataset_name",
                  "annotations_sha256", "limit")


class ShardedRows:
    """The rows of several arrays (memory-mapped shards) read as one array."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.dtype = parts[0].dtype
        self.shape = (int(self.offsets[-1]),) + tuple(parts[0].shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, row: int) -> np.ndarray:
        row = int(row)
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} of {len(self)}")
        k = int(np.searchsorted(self.offsets, row, side="right") - 1)
        return self.parts[k][row - int(self.offsets[k])]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = np.concatenate([np.asarray(p) for p in self.parts])
        return whole if dtype is None else whole.astype(dtype)


@dataclass
class TeacherCache:
    soft_masks: np.ndarray | ShardedRows  # uint8 [N, 96, 96]
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
    """A cache directory, or a sharded cache (its ``manifest.json``) as one cache."""
    directory = Path(directory)
    if (directory / MANIFEST).is_file():
        manifest = json.loads((directory / MANIFEST).read_text())
        shards = [load_cache(directory / name, mmap) for name in manifest["shards"]]
        return TeacherCache(
            ShardedRows([s.soft_masks for s in shards]),
            np.concatenate([s.ann_ids for s in shards]),
            np.concatenate([s.scores for s in shards]),
            manifest,
        )
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


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def shard_directory(out_dir: Path, shard: int, num_shards: int) -> Path:
    return out_dir / "shards" / f"shard-{shard:05d}-of-{num_shards:05d}"


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def _cache_work(name: str, provenance: dict, annotation_file: Path, limit: int,
                shard: tuple[int, int]) -> dict:
    """What a cache is of (teacher, weights, crop rule, dataset, limit, shard), as it reads back
    from JSON: a finished or unfinished cache of the same work is reused."""
    work = {
        "teacher": name,
        "provenance": {k: v for k, v in provenance.items() if k != "weights"},
        "weights_sha256": file_digest(provenance["weights"]) if provenance.get("weights") else None,
        "crop_rule_version": CROP_RULE_VERSION,
        "dataset_name": annotation_file.name,
        "annotations_sha256": file_digest(annotation_file),
        "limit": limit,
        "shard": list(shard),
    }
    return json.loads(json.dumps(work))


def _progress_or_restart(directory: Path, work: dict) -> dict | None:
    """The saved progress of ``work`` in ``directory``; None (and an empty directory) to start again."""
    state = json.loads((directory / PROGRESS).read_text()) if (directory / PROGRESS).is_file() else None
    if state is not None and state.get("work") != work:
        print(f"{directory} holds unfinished work of another teacher or dataset: starting again",
              file=sys.stderr)
        state = None
    if state is None:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    return state


def build_cache(
    teacher: Teacher,
    annotation_file: str | Path,
    image_dir: str | Path,
    out_dir: str | Path,
    limit: int = 0,
    progress: bool = False,
    command: str = "",
    shard: tuple[int, int] = (0, 1),
    commit_every: int = 64,
) -> TeacherCache:
    """Run ``teacher`` once over every usable instance (of shard ``shard = (i, n)``) and write the cache.

    With one shard ``out_dir`` is the cache; with several, this writes shard ``i`` and, if it
    finishes last, the manifest. Returns the cache written (the shard's). A finished cache of
    the same work is reused; an unfinished one is continued after its last commit (made every
    ``commit_every`` soft masks, at the end of an image)."""
    annotation_file, image_dir, out_dir = Path(annotation_file), Path(image_dir), Path(out_dir)
    index, num_shards = shard
    if num_shards > 1 and limit:
        raise ValueError("--limit applies to a whole dataset; it cannot be combined with shards")
    dataset = CocoDataset(annotation_file, image_dir)
    image_ids = dataset.shard_images(index, num_shards)
    provenance = teacher.provenance()
    work = _cache_work(teacher.name, provenance, annotation_file, limit, shard)
    directory = out_dir if num_shards == 1 else shard_directory(out_dir, index, num_shards)
    if (directory / "meta.json").is_file():
        done = json.loads((directory / "meta.json").read_text())
        if _same_work(done) == _same_work(work) and done.get("shard") == work["shard"]:
            if num_shards > 1:
                _merge_when_complete(out_dir)
            return load_cache(directory)
    state = _progress_or_restart(directory, work)
    rows = None if state is None else int(state["rows"])
    size = (MODEL_INPUT_SIZE, MODEL_INPUT_SIZE)
    masks = NpyAppender(directory / "soft_masks.npy", size, np.uint8, rows)
    ids = NpyAppender(directory / "ann_ids.npy", (), np.int64, rows)
    scores = NpyAppender(directory / "scores.npy", (), np.float32, rows)
    images_done = 0 if state is None else int(state["images_done"])
    skipped = SkipCounts(**state["skipped"]) if state else SkipCounts()
    teacher_errors = int(state.get("teacher_error", 0)) if state else 0
    seconds = float(state.get("seconds", 0.0)) if state else 0.0
    resumed_at = masks.rows

    def commit() -> None:  # the appenders' rows, then the progress that names them
        for appender in (masks, ids, scores):
            appender.commit()
        _write_json(directory / PROGRESS, {"work": work, "rows": masks.rows, "images_done": images_done,
                                           "skipped": skipped.as_dict(), "teacher_error": teacher_errors,
                                           "seconds": seconds + time.perf_counter() - start})

    iterator = image_ids[images_done:]
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=f"{teacher.name} on {annotation_file.name}", unit="img",
                        initial=images_done, total=len(image_ids))
    start = time.perf_counter()
    last_commit = masks.rows
    for image_id in iterator:
        if limit and masks.rows >= limit:
            break
        for rgb, instance in dataset.instances(limit - masks.rows if limit else 0, skipped, [image_id]):
            try:
                out = teacher.predict(rgb, instance.bbox)
            except (RuntimeError, ValueError) as exc:
                teacher_errors += 1
                print(f"teacher failed on annotation {instance.annotation_id}: {exc}", file=sys.stderr)
                continue
            masks.append(np.round(np.clip(out.probability, 0, 1) * 255).astype(np.uint8)[None])
            ids.append(np.array([instance.annotation_id], np.int64))
            scores.append(np.array([out.score], np.float32))
        images_done += 1
        if masks.rows - last_commit >= commit_every:
            commit()
            last_commit = masks.rows
    seconds += time.perf_counter() - start
    count = masks.rows
    for appender in (masks, ids, scores):
        appender.close()
    meta = {
        "format": "picosam3 teacher cache v1",
        **work,
        "provenance": provenance,
        "dataset": str(annotation_file.resolve()),
        "images": str(image_dir.resolve()),
        "crop_frame": "standard crop: picosam3_ros.core.crop.crop_rect_for_box(bbox) + crop_and_resize",
        "encoding": "soft_masks uint8 = round(probability * 255)",
        "count": count,
        "skipped": {**skipped.as_dict(), "teacher_error": teacher_errors},
        "resumed_at": resumed_at,
        "seconds": round(seconds, 2),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    _write_json(directory / "meta.json", meta)
    (directory / PROGRESS).unlink(missing_ok=True)
    if num_shards > 1:
        _merge_when_complete(out_dir)
    return load_cache(directory)


def write_cache(out_dir: str | Path, masks: list[np.ndarray], ids: list[int], scores: list[float],
                meta: dict) -> TeacherCache:
    """Write a cache directory from soft masks in memory (tools that compute them elsewhere),
    via a temporary sibling and a rename: never half-written."""
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


def _merge_when_complete(out_dir: Path) -> None:
    """After a shard: the last one to finish writes the manifest (the shard itself is done
    either way, so a refused merge is reported, not raised)."""
    try:
        merge_shards(out_dir, require_all=False)
    except ValueError as exc:
        print(f"cache-teacher: shards of {out_dir} not merged: {exc}", file=sys.stderr)


def _same_work(meta: dict) -> dict:
    work = {k: meta.get(k) for k in SAME_WORK_KEYS}
    work["provenance"] = {k: v for k, v in (work["provenance"] or {}).items() if k != "weights"}
    return work


def merge_shards(out_dir: str | Path, require_all: bool = True) -> dict | None:
    """Write ``out_dir/manifest.json`` once every shard is finished and all did the same work.

    Returns the manifest, or None when shards are missing and ``require_all`` is False."""
    out_dir = Path(out_dir)
    found = sorted((out_dir / "shards").glob("shard-*-of-*"))
    totals = {int(p.name.rsplit("-", 1)[1]) for p in found}
    if len(totals) != 1:
        raise ValueError(f"{out_dir}/shards mixes splits into {sorted(totals) or 'nothing'} shards")
    num_shards = totals.pop()
    directories = [shard_directory(out_dir, i, num_shards) for i in range(num_shards)]
    unfinished = [d.name for d in directories if not (d / "meta.json").is_file()]
    if unfinished:
        if require_all:
            raise FileNotFoundError(f"unfinished shards in {out_dir}: {unfinished}")
        return None
    metas = [json.loads((d / "meta.json").read_text()) for d in directories]
    reference = _same_work(metas[0])
    for directory, meta in zip(directories, metas):
        if _same_work(meta) != reference:
            differing = sorted(k for k in reference if _same_work(meta)[k] != reference[k])
            raise ValueError(f"{directory.name} differs from shard 0 in {differing}: not merged")
    seen: set[int] = set()
    for directory in directories:
        ids = np.load(directory / "ann_ids.npy")
        if seen.intersection(ids.tolist()):
            raise ValueError(f"{directory.name} repeats annotations of an earlier shard: not merged")
        seen.update(ids.tolist())
    skipped: dict[str, int] = {}
    for meta in metas:
        for key, value in meta["skipped"].items():
            skipped[key] = skipped.get(key, 0) + value
    manifest = {
        "format": "picosam3 teacher cache manifest v1",
        **reference,
        "provenance": metas[0]["provenance"],
        "dataset": metas[0]["dataset"],
        "images": metas[0]["images"],
        "shards": [str(d.relative_to(out_dir)) for d in directories],
        "counts": [m["count"] for m in metas],
        "count": sum(m["count"] for m in metas),
        "skipped": skipped,
        "seconds": round(sum(m["seconds"] for m in metas), 2),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    _write_json(out_dir / MANIFEST, manifest)
    return manifest


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' -> (i, n); without it, torchrun's RANK/WORLD_SIZE, else (0, 1)."""
    if text is None:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    try:
        index, total = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must be i/n, got {text!r}") from None
    if not 0 <= index < total:
        raise argparse.ArgumentTypeError(f"--shard {text}: i must be in 0..n-1")
    return index, total


def main(argv: list[str] | None = None) -> int:
    from picosam3_train.config import resolve_dataset
    from picosam3_train.teachers import TEACHER_KINDS, build_teacher

    parser = argparse.ArgumentParser(
        prog="picosam3_train cache-teacher", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--merge", metavar="DIR", help="only check and merge the shards of DIR")
    parser.add_argument("--teacher", choices=TEACHER_KINDS)
    parser.add_argument("--weights", help="local weights: a transformers folder, a .pt/.onnx file")
    parser.add_argument("--dataset", help="annotations.json[:image_dir] (relative to ../shared/data)")
    parser.add_argument("--out", help="cache directory to write")
    parser.add_argument("--limit", type=int, default=0, help="first N instances only (0 = all)")
    parser.add_argument("--shard", help="i/n: write shard i of n (default: torchrun's RANK/WORLD_SIZE)")
    parser.add_argument("--commit-every", type=int, default=64, help="soft masks between commits")
    parser.add_argument("--device", default="cpu", help="cpu, cuda (under torchrun: cuda:LOCAL_RANK)")
    parser.add_argument("--input-size", type=int, default=None, help="onnx/checkpoint teachers: input side")
    parser.add_argument("--bpe-path", default=None, help="sam3-package: the BPE vocabulary file")
    args = parser.parse_args(argv)
    if args.merge:
        manifest = merge_shards(args.merge)
        print(f"merged {len(manifest['shards'])} shards into {args.merge}: {manifest['count']} soft masks")
        return 0
    missing = [f"--{k}" for k in ("teacher", "weights", "dataset", "out") if getattr(args, k) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    shard = parse_shard(args.shard)
    device = args.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    teacher = build_teacher(
        args.teacher, args.weights, device=device, input_size=args.input_size, bpe_path=args.bpe_path
    )
    annotations, images = resolve_dataset(args.dataset)
    command = "picosam3_train cache-teacher " + " ".join(argv if argv is not None else sys.argv[1:])
    cache = build_cache(
        teacher, annotations, images, args.out, args.limit, progress=sys.stderr.isatty(), command=command,
        shard=shard, commit_every=args.commit_every,
    )
    where = args.out if shard[1] == 1 else f"shard {shard[0]}/{shard[1]} of {args.out}"
    print(
        f"wrote {where}: {len(cache)} soft masks from {teacher.name}; skipped {cache.meta['skipped']}; "
        f"mean score {float(cache.scores.mean()) if len(cache) else float('nan'):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
