"""Carry decoded training crops to a machine without the dataset (a lent GPU box).

    python tools/gpu_train/pack_stores.py pack OUT_DIR --datasets SPEC [SPEC ...]
    python tools/gpu_train/pack_stores.py unpack OUT_DIR STORES_DIR

``pack`` builds the same ``InstanceStore`` caches training builds (``picosam3_train.data``;
specs as in the training config, relative to ../shared/data) and writes each as one
``.npz``: the crops JPEG-encoded (quality 85; the raw stores are ~10x larger), masks
PNG-encoded, the small arrays as they are. ``unpack`` restores store directories that a
training config names directly (``train_datasets: [DIR, ...]``). Evaluation reads the images
themselves (``picosam3_train evaluate``), so it runs where the data is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from picosam3_train.config import TrainConfig  # noqa: E402
from picosam3_train.data import InstanceStore  # noqa: E402

SMALL_ARRAYS = ("boxes", "image_sizes", "context", "ann_ids", "areas")


def _encode_all(arrays: np.ndarray, ext: str, params: list[int]) -> tuple[np.ndarray, np.ndarray]:
    chunks = []
    for array in arrays:
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(array), params)
        if not ok:
            raise RuntimeError(f"cannot encode a crop as {ext}")
        chunks.append(buf.ravel())
    offsets = np.cumsum([0] + [len(c) for c in chunks]).astype(np.int64)
    return np.concatenate(chunks), offsets


def _decode_all(blob: np.ndarray, offsets: np.ndarray, flags: int) -> np.ndarray:
    return np.stack([cv2.imdecode(blob[offsets[i]:offsets[i + 1]], flags) for i in range(len(offsets) - 1)])


def pack(store: InstanceStore, kind: str, out: Path) -> None:
    images_bgr = np.asarray(store.images)[..., ::-1]
    jpeg, jpeg_offsets = _encode_all(images_bgr, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 85])
    png, png_offsets = _encode_all(np.asarray(store.masks), ".png", [])
    np.savez(out, jpeg=jpeg, jpeg_offsets=jpeg_offsets, png=png, png_offsets=png_offsets,
             meta=np.frombuffer(json.dumps({"name": store.name, "kind": kind,
                                            "stats": store.stats.__dict__}).encode(), np.uint8),
             **{k: np.asarray(getattr(store, k)) for k in SMALL_ARRAYS})
    print(f"{out.name}: {len(store)} instances, {out.stat().st_size / 2**20:.1f} MiB")


def unpack(packed: Path, stores_dir: Path) -> Path:
    data = np.load(packed)
    meta = json.loads(bytes(data["meta"]).decode())
    directory = stores_dir / packed.stem
    directory.mkdir(parents=True, exist_ok=True)
    images = _decode_all(data["jpeg"], data["jpeg_offsets"], cv2.IMREAD_COLOR)[..., ::-1]
    np.save(directory / "images.npy", np.ascontiguousarray(images))
    np.save(directory / "masks.npy", _decode_all(data["png"], data["png_offsets"], cv2.IMREAD_UNCHANGED))
    for key in SMALL_ARRAYS:
        np.save(directory / f"{key}.npy", data[key])
    (directory / "source.json").write_text(json.dumps({"name": meta["name"], "kind": meta["kind"]}))
    (directory / "stats.json").write_text(json.dumps(meta["stats"]))
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--datasets", nargs="+", required=True, help="training specs (context crops)")
    p.add_argument("--context-size", type=int, default=TrainConfig.context_size)
    u = sub.add_parser("unpack")
    u.add_argument("packed_dir", type=Path)
    u.add_argument("stores_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        config = TrainConfig()
        args.out_dir.mkdir(parents=True, exist_ok=True)
        jobs = [(spec, "context") for spec in args.datasets]
        for spec, kind in jobs:
            ann, images = config.resolve_dataset(spec)
            store = InstanceStore.build(ann, images, config.resolved_cache_dir(), kind, args.context_size)
            pack(store, kind, args.out_dir / f"{ann.stem}_{kind}.npz")
    else:
        for packed in sorted(args.packed_dir.glob("*.npz")):
            print(unpack(packed, args.stores_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
