"""Rebuild the demo clip (``picosam3_ros/demo/demo_clip``) from COCO val2017 (needs pycocotools).

    python -m picosam3_ros.demo.build_clip instances_val2017.json val2017/ picosam3_ros/demo/demo_clip

How the committed clip was made: CC BY / CC BY-SA images close to 4:3, centre-cropped to 4:3 and
resized to 640x480, with their largest instances re-encoded as RLE, and an ATTRIBUTION.md. The
reader is :mod:`picosam3_ros.core.clip`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from picosam3_ros.core.clip import ANNOTATIONS_NAME, CLIP_SIZE
from picosam3_ros.core.coco_dataset import CocoDataset


def _crop_to_aspect(width: int, height: int, aspect: float) -> tuple[int, int, int, int]:
    """Centred (x, y, w, h) of the largest rectangle of ``aspect`` (w/h) inside the image."""
    if width / height > aspect:
        w = int(round(height * aspect))
        return ((width - w) // 2, 0, w, height)
    h = int(round(width / aspect))
    return (0, (height - h) // 2, width, h)


def _clip_annotations(frame, window: tuple[int, int, int, int], max_instances: int,
                      min_area: int) -> list[dict]:
    """The frame's instances inside ``window``, resized to the clip, as COCO RLE annotations."""
    from pycocotools import mask as mask_utils

    x, y, w, h = window
    kept = []
    for inst in frame.instances:
        mask = cv2.resize(
            inst.mask[y : y + h, x : x + w].astype(np.uint8), CLIP_SIZE, interpolation=cv2.INTER_NEAREST
        )
        if mask.sum() < min_area:
            continue
        ys, xs = np.nonzero(mask)
        rle = mask_utils.encode(np.asfortranarray(mask))
        kept.append({
            "id": inst.annotation_id,
            "image_id": frame.image_id,
            "category_id": inst.category_id,
            "bbox": [int(xs.min()), int(ys.min()),
                     int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
            "area": int(mask.sum()),
            "iscrowd": 0,
            "segmentation": {"size": [CLIP_SIZE[1], CLIP_SIZE[0]], "counts": rle["counts"].decode("ascii")},
        })
        if len(kept) >= max_instances:
            break
    return kept


def _attribution(rows: list, licences: dict) -> str:
    lines = [
        "# Demo clip attribution",
        "",
        'Images from the COCO 2017 validation set (Lin et al., "Microsoft COCO: Common Objects in Context", '
        "ECCV 2014; https://cocodataset.org). Annotations: COCO, CC BY 4.0. Each image keeps the Flickr "
        "licence given in COCO's `license` field; only CC BY 2.0 and CC BY-SA 2.0 images are used. "
        "Changes: centre-cropped to 4:3, resized to 640x480, re-encoded as JPEG (quality 85); masks cropped, "
        "resized and re-encoded as RLE; only the largest instances kept. The author of each photo is the "
        "Flickr user behind its Flickr URL (COCO does not record names).",
        "",
        "Rebuild: `python -m picosam3_ros.demo.build_clip instances_val2017.json val2017/ "
        "picosam3_ros/demo/demo_clip`.",
        "",
        "| file | COCO id | licence | Flickr URL | COCO URL | objects |",
        "|---|---|---|---|---|---|",
    ]
    for name, info, names in rows:
        lic = licences.get(int(info["license"]), {})
        lines.append(
            f"| {name} | {info['id']} | [{lic.get('name', info['license'])}]({lic.get('url', '')}) | "
            f"{info.get('flickr_url', '')} | {info.get('coco_url', '')} | {', '.join(names)} |"
        )
    return "\n".join(lines) + "\n"


def build_clip(
    annotation_file: Path,
    image_dir: Path,
    out_dir: Path,
    max_images: int = 30,
    licenses: tuple[int, ...] = (4, 5),
    max_instances: int = 4,
    min_area: int = 40 * 40,
    quality: int = 85,
) -> int:
    """Write a 640x480 clip of CC BY / CC BY-SA COCO images with their largest instances."""
    dataset = CocoDataset(annotation_file, image_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, annotations, used_categories, rows = [], [], set(), []
    raw = json.loads(Path(annotation_file).read_text())
    categories = {c["id"]: c for c in raw.get("categories", [])}
    for info in dataset.images:
        if len(images) >= max_images:
            break
        if int(info.get("license", 0)) not in licenses or int(info["id"]) not in dataset.annotations_by_image:
            continue
        width, height = int(info["width"]), int(info["height"])
        if not 1.25 <= width / height <= 1.55:
            continue  # landscape images close to 4:3 only, so the crop keeps most of the scene
        frame = dataset.load_frame(info)
        window = _crop_to_aspect(width, height, CLIP_SIZE[0] / CLIP_SIZE[1])
        kept = _clip_annotations(frame, window, max_instances, min_area)
        if not kept:
            continue
        x, y, w, h = window
        image = cv2.resize(frame.image_rgb[y : y + h, x : x + w], CLIP_SIZE, interpolation=cv2.INTER_AREA)
        name = f"{len(images):02d}_{frame.file_name}"
        cv2.imwrite(
            str(out_dir / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        images.append(
            {key: info[key] for key in ("id", "license", "coco_url", "flickr_url", "date_captured")
             if key in info}
            | {"file_name": name, "width": CLIP_SIZE[0], "height": CLIP_SIZE[1]}
        )
        annotations += kept
        used_categories.update(a["category_id"] for a in kept)
        rows.append((name, info, [categories.get(a["category_id"], {}).get("name", "?") for a in kept]))
    licences = {int(lic["id"]): lic for lic in raw.get("licenses", [])}
    clip = {
        "info": {
            "description": "PicoSAM3-ROS demo clip: COCO 2017 val images (CC BY / CC BY-SA), centre-cropped "
            "to 4:3 and resized to 640x480, with their largest instances re-encoded as RLE.",
            "source": "COCO 2017 (Lin et al.), annotations CC BY 4.0",
        },
        "licenses": [licences[i] for i in sorted({img["license"] for img in images}) if i in licences],
        "images": images,
        "annotations": annotations,
        "categories": [categories[c] for c in sorted(used_categories) if c in categories],
    }
    (out_dir / ANNOTATIONS_NAME).write_text(json.dumps(clip, indent=1) + "\n")
    (out_dir / "ATTRIBUTION.md").write_text(_attribution(rows, licences))
    return len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m picosam3_ros.demo.build_clip", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("annotations", type=Path)
    parser.add_argument("image_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--max-images", type=int, default=30)
    args = parser.parse_args(argv)
    count = build_clip(args.annotations, args.image_dir, args.out_dir, args.max_images)
    print(f"wrote {count} images to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
