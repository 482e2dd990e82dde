"""The calibration split: COCO train images held out of training, for choosing thresholds.

Post-processing thresholds, box margins and checkpoints are chosen on data the project
does not report on. The dev split (val2017 dev) is reported once; the calibration split
is a fixed, seeded set of whole images (never single instances: the instances of one
image share its pixels) carved out of ``instances_train2017.json``. Its image ids are
committed in ``configs/calibration_split.json`` so every run holds out the same images.

* ``calibration`` as a dataset spec (``picosam3_train evaluate --dataset calibration``,
  ``package --calibrate-on calibration``) reads only those images;
* training on the file the split was carved from leaves them out (``fit_annotation_file``).

The filtered annotation files are written once into the cache directory, named by the
content they hold, so the trainer's and the evaluator's caches key on them as on any file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

SPLIT_FILE = Path(__file__).resolve().parent / "configs" / "calibration_split.json"
CALIBRATION_SPEC = "calibration"


def load_split(path: Path = SPLIT_FILE) -> dict:
    """{"source": annotation file (relative to the data root), "images": image dir, "image_ids": [...]}."""
    return json.loads(Path(path).read_text())


def choose_calibration_images(annotation_file: str | Path, count: int = 64, seed: int = 0) -> list[int]:
    """``count`` image ids with at least one annotation, drawn with a seeded permutation."""
    data = json.loads(Path(annotation_file).read_text())
    annotated = sorted({int(a["image_id"]) for a in data["annotations"] if not a.get("iscrowd", 0)})
    order = np.random.default_rng(seed).permutation(len(annotated))
    return sorted(annotated[i] for i in order[:count])


def _filtered(annotation_file: Path, image_ids: set[int], keep: bool, cache_dir: Path, tag: str) -> Path:
    """A copy of ``annotation_file`` with only (keep) or without (not keep) ``image_ids``."""
    raw = annotation_file.read_bytes()
    digest = hashlib.sha1(raw + json.dumps(sorted(image_ids)).encode() + tag.encode()).hexdigest()[:12]
    out = cache_dir / "splits" / f"{annotation_file.stem}_{tag}_{digest}.json"
    if out.is_file():
        return out
    data = json.loads(raw)
    inside = [img for img in data["images"] if (int(img["id"]) in image_ids) == keep]
    ids = {int(img["id"]) for img in inside}
    data["images"] = inside
    data["annotations"] = [a for a in data["annotations"] if int(a["image_id"]) in ids]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(out)
    return out


def is_split_source(annotation_file: str | Path, split: dict | None = None) -> bool:
    split = split or load_split()
    return Path(annotation_file).name == Path(split["source"]).name


def fit_annotation_file(annotation_file: str | Path, cache_dir: str | Path) -> Path:
    """The annotation file to train on: without the calibration images when it is the file
    they were carved from, else unchanged."""
    annotation_file = Path(annotation_file)
    split = load_split()
    if not is_split_source(annotation_file, split):
        return annotation_file
    return _filtered(annotation_file, set(split["image_ids"]), False, Path(cache_dir), "fit")


def calibration_dataset(data_root: str | Path, cache_dir: str | Path) -> tuple[Path, Path]:
    """(annotation file, image dir) of the calibration split."""
    split = load_split()
    root = Path(data_root)
    source = (root / split["source"]).resolve()
    if not source.is_file():
        raise FileNotFoundError(f"the calibration split's source {source} is missing")
    return (_filtered(source, set(split["image_ids"]), True, Path(cache_dir), "calibration"),
            (root / split["images"]).resolve())
