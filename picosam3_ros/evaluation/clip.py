"""The demo clip: a few dozen real, annotated images shipped in ``picosam3_ros/demo/demo_clip`` (ROS-free).

The clip is a small COCO-format dataset (``annotations.json`` + JPEGs, all
640x480) with its attribution in ``ATTRIBUTION.md``. The demo plays it through
the emulated IMX500, each image held for several frames; the prompt publisher
(standing in for a detector) and the demo's scorer recognise which clip image a
received frame shows by comparing small grey thumbnails, and scale the clip's
boxes and masks to the stream size (the emulated ISP stretches without keeping
aspect, so each axis scales on its own).

``python -m picosam3_ros.evaluation.clip build ANNOTATIONS IMAGE_DIR OUT_DIR`` rebuilds the
clip from COCO val2017 (how the committed one was made; needs pycocotools).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from picosam3_ros.core.coco_dataset import CocoDataset, Instance

DEFAULT_CLIP_DIR = Path(__file__).resolve().parents[1] / "demo" / "demo_clip"
ANNOTATIONS_NAME = "annotations.json"
CLIP_SIZE = (640, 480)
THUMB_SIZE = (32, 24)


@dataclass
class ClipImage:
    index: int
    image_id: int
    file_name: str
    image_rgb: np.ndarray  # CLIP_SIZE
    instances: list[Instance]  # largest first (the ground-truth encoding order)
    thumbnail: np.ndarray

    def prompts(self, frame_size: tuple[int, int]) -> list[tuple[int, tuple[int, int, int, int]]]:
        """(annotation id, box) in pixels of a frame of ``frame_size`` (width, height)."""
        sx = frame_size[0] / self.image_rgb.shape[1]
        sy = frame_size[1] / self.image_rgb.shape[0]
        out = []
        for inst in self.instances:
            x, y, w, h = inst.box
            x0, y0 = int(round(x * sx)), int(round(y * sy))
            x1, y1 = int(round((x + w) * sx)), int(round((y + h) * sy))
            out.append((inst.annotation_id, (x0, y0, max(1, x1 - x0), max(1, y1 - y0))))
        return out

    def ground_truth(self, frame_size: tuple[int, int]) -> np.ndarray:
        """mono8 label image at ``frame_size``: k = the k-th prompt (1-based), later ones win."""
        gt = np.zeros(self.image_rgb.shape[:2], np.uint8)
        for k, inst in enumerate(self.instances, start=1):
            gt[inst.mask] = k
        if (gt.shape[1], gt.shape[0]) != tuple(frame_size):
            gt = cv2.resize(gt, tuple(frame_size), interpolation=cv2.INTER_NEAREST)
        return gt


def thumbnail(image_rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


class Clip:
    """The clip's images and instances, and recognition of a frame that shows one of them."""

    def __init__(self, directory: Path | str = DEFAULT_CLIP_DIR, max_images: int | None = None):
        self.directory = Path(directory)
        dataset = CocoDataset(self.directory / ANNOTATIONS_NAME, self.directory)
        self.images: list[ClipImage] = []
        for frame in dataset.frames(max_images):
            self.images.append(
                ClipImage(
                    len(self.images),
                    frame.image_id,
                    frame.file_name,
                    frame.image_rgb,
                    frame.instances,
                    thumbnail(frame.image_rgb),
                )
            )
        if not self.images:
            raise ValueError(f"the clip in {self.directory} has no annotated images")
        self._thumbs = np.stack([img.thumbnail for img in self.images])

    def __len__(self) -> int:
        return len(self.images)

    def match(self, frame_rgb: np.ndarray) -> tuple[int, float]:
        """(index of the clip image the frame shows, mean absolute grey difference of the thumbnails)."""
        diff = np.abs(self._thumbs - thumbnail(frame_rgb)[None]).mean(axis=(1, 2))
        index = int(np.argmin(diff))
        return index, float(diff[index])


# --------------------------------------------------------------------------- building the clip


def _crop_to_aspect(width: int, height: int, aspect: float) -> tuple[int, int, int, int]:
    """Centred (x, y, w, h) of the largest rectangle of ``aspect`` (w/h) inside the image."""
    if width / height > aspect:
        w = int(round(height * aspect))
        return ((width - w) // 2, 0, w, height)
    h = int(round(width / aspect))
    return (0, (height - h) // 2, width, h)


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
    from pycocotools import mask as mask_utils

    dataset = CocoDataset(annotation_file, image_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, annotations, used_categories, rows = [], [], set(), []
    aspect = CLIP_SIZE[0] / CLIP_SIZE[1]
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
        x, y, w, h = _crop_to_aspect(width, height, aspect)
        image = cv2.resize(frame.image_rgb[y : y + h, x : x + w], CLIP_SIZE, interpolation=cv2.INTER_AREA)
        kept = []
        for inst in frame.instances:
            mask = cv2.resize(
                inst.mask[y : y + h, x : x + w].astype(np.uint8), CLIP_SIZE, interpolation=cv2.INTER_NEAREST
            )
            if mask.sum() < min_area:
                continue
            ys, xs = np.nonzero(mask)
            rle = mask_utils.encode(np.asfortranarray(mask))
            kept.append(
                {
                    "id": inst.annotation_id,
                    "image_id": frame.image_id,
                    "category_id": inst.category_id,
                    "bbox": [
                        int(xs.min()),
                        int(ys.min()),
                        int(xs.max() - xs.min() + 1),
                        int(ys.max() - ys.min() + 1),
                    ],
                    "area": int(mask.sum()),
                    "iscrowd": 0,
                    "segmentation": {
                        "size": [CLIP_SIZE[1], CLIP_SIZE[0]],
                        "counts": rle["counts"].decode("ascii"),
                    },
                }
            )
            if len(kept) >= max_instances:
                break
        if not kept:
            continue
        name = f"{len(images):02d}_{frame.file_name}"
        cv2.imwrite(
            str(out_dir / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        images.append(
            {
                key: info[key]
                for key in ("id", "license", "coco_url", "flickr_url", "date_captured")
                if key in info
            }
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
        "Rebuild: `python -m picosam3_ros.evaluation.clip build instances_val2017.json val2017/ "
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
    (out_dir / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n")
    return len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m picosam3_ros.evaluation.clip")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="rebuild the demo clip from COCO")
    build.add_argument("annotations", type=Path)
    build.add_argument("image_dir", type=Path)
    build.add_argument("out_dir", type=Path)
    build.add_argument("--max-images", type=int, default=30)
    args = parser.parse_args(argv)
    count = build_clip(args.annotations, args.image_dir, args.out_dir, args.max_images)
    print(f"wrote {count} images to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
