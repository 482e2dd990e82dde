"""Teacher soft masks for prebuilt InstanceStores (no images needed), with flip test-time augmentation.

    python tools/gpu_train/cache_teacher_on_stores.py TEACHER.pt STORE_DIR [STORE_DIR ...] --out CACHES_DIR

The same cache format as ``picosam3_train cache-teacher`` (``picosam3_train.teachers.cache``):
soft masks in the standard crop frame, keyed by annotation id, one cache directory per store,
matched to the training set by its annotation file name. The standard crop is the un-augmented
training sample (``CropDataset(augment=False)``), so the teacher sees exactly what the student
is scored on. Score: certainty mean |2p - 1| of the flip-averaged probability.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from picosam3_train.checkpoint import load_checkpoint  # noqa: E402
from picosam3_train.config import IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALE  # noqa: E402
from picosam3_train.data import CropDataset, InstanceStore  # noqa: E402
from picosam3_train.teachers.base import certainty  # noqa: E402
from picosam3_train.teachers.cache import write_cache  # noqa: E402


@torch.no_grad()
def cache_store(model: torch.nn.Module, store: InstanceStore, out_dir: Path, device: torch.device,
                teacher_path: str, batch: int = 256) -> int:
    dataset = CropDataset([store], IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALE, augment=False)
    masks, ids, scores = [], [], []
    for start in range(0, len(dataset), batch):
        rows = range(start, min(start + batch, len(dataset)))
        x = torch.from_numpy(np.stack([dataset[i]["image"] for i in rows])).to(device)
        prob = (torch.sigmoid(model(x)) + torch.sigmoid(model(x.flip(-1))).flip(-1)) / 2
        for row, p in zip(rows, prob[:, 0].float().cpu().numpy()):
            masks.append(np.round(np.clip(p, 0, 1) * 255).astype(np.uint8))
            ids.append(int(store.ann_ids[row]))
            scores.append(certainty(p))
    meta = {
        "format": "picosam3 teacher cache v1",
        "teacher": "picosam_checkpoint+hflip_tta",
        "provenance": {"checkpoint": teacher_path},
        "dataset": store.name,
        "crop_frame": "standard crop: picosam3_ros.core.crop.crop_rect_for_box(bbox), 96x96",
        "encoding": "soft_masks uint8 = round(probability * 255)",
        "count": len(ids),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }
    write_cache(out_dir, masks, ids, scores, meta)
    return len(ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher")
    parser.add_argument("stores", nargs="+")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, _, _ = load_checkpoint(args.teacher)
    model.to(device).eval()
    for directory in args.stores:
        store = InstanceStore.open_prebuilt(directory)
        if store is None:
            raise SystemExit(f"{directory} is not an InstanceStore directory")
        n = cache_store(model, store, args.out / Path(directory).name, device, args.teacher)
        print(f"{store.name}: {n} soft masks -> {args.out / Path(directory).name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
