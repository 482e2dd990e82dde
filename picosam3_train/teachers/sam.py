"""SAM-family teachers (SAM, SAM2, SAM3) from a local weights folder; nothing is downloaded.

* ``TransformersSamTeacher``: Hugging Face transformers' SamModel/SamProcessor,
  Sam2Model/Sam2Processor, or Sam3TrackerModel/Sam3TrackerProcessor (SAM3's
  box-promptable "SAM 1 task" head) loaded with ``from_pretrained(local_path)``.
  transformers' SAM2/SAM3 image processors import torchvision; where it is absent
  (this CPU-only machine) the teacher does the same preprocessing itself (square
  resize to the model's input size, rescale, mean/std from the saved
  ``preprocessor_config.json``) and records that in its provenance.
* ``Sam3PackageTeacher``: Meta's ``sam3`` package (``build_sam3_image_model`` with
  instance interactivity, ``predict_inst`` with a box).

All run on the padded square crop at their own resolution, take the highest-scoring
of the multimask outputs, and return sigmoid(logits) resampled into the standard
96x96 crop frame, with the predicted IoU as the score.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from picosam3_train.teachers.base import Teacher, TeacherOutput, run_on_context, sigmoid

FAMILIES = {
    "sam": ("SamModel", "SamProcessor"),
    "sam2": ("Sam2Model", "Sam2Processor"),
    "sam3": ("Sam3TrackerModel", "Sam3TrackerProcessor"),
}


def _require_transformers():
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - transformers is in requirements/train.txt
        raise ImportError(
            "the SAM/SAM2/SAM3 teachers need transformers: pip install -r requirements/train.txt"
        ) from exc
    return transformers


class TransformersSamTeacher(Teacher):
    def __init__(self, path: str | Path, family: str = "sam", device: str = "cpu"):
        if family not in FAMILIES:
            raise ValueError(f"unknown SAM family {family!r}; choose from {sorted(FAMILIES)}")
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(
                f"no transformers model at {self.path} (config.json missing); "
                "weights must be a local folder saved with save_pretrained"
            )
        transformers = _require_transformers()
        model_name, processor_name = FAMILIES[family]
        if not hasattr(transformers, model_name):
            raise ImportError(
                f"transformers {transformers.__version__} has no {model_name}; "
                "pip install -r requirements/train.txt"
            )
        import torch

        self.torch = torch
        self.family = family
        self.name = f"{family}:{self.path.name}"
        self.device = device
        self.model = getattr(transformers, model_name).from_pretrained(str(self.path)).to(device).eval()
        self.processor = None
        self.processor_error = ""
        try:
            self.processor = getattr(transformers, processor_name).from_pretrained(str(self.path))
        except (ImportError, ValueError) as exc:  # SAM2/SAM3 image processors need torchvision
            if "torchvision" not in str(exc).lower():
                raise
            self.processor_error = "transformers' image processor needs torchvision, which is not installed"
            self._manual = self._manual_preprocessing_config()
        self.transformers_version = transformers.__version__

    # -- preprocessing without the transformers processor (no torchvision) -------------------
    def _manual_preprocessing_config(self) -> dict:
        config = {}
        path = self.path / "preprocessor_config.json"
        if path.is_file():
            config = json.loads(path.read_text())
        size = config.get("size") or {}
        side = size.get("height") or size.get("longest_edge") or self._model_image_size()
        return {
            "size": int(side),
            "scale": float(config.get("rescale_factor", 1 / 255)),
            "mean": np.asarray(config.get("image_mean", [0.485, 0.456, 0.406]), np.float32),
            "std": np.asarray(config.get("image_std", [0.229, 0.224, 0.225]), np.float32),
        }

    def _model_image_size(self) -> int:
        vision = getattr(self.model.config, "vision_config", None)
        for cfg in (getattr(vision, "backbone_config", None), vision):
            size = getattr(cfg, "image_size", None)
            if size:
                return int(size[0] if isinstance(size, (list, tuple)) else size)
        return 1024

    def _segment_manual(
        self, patch: np.ndarray, box: tuple[float, float, float, float]
    ) -> tuple[np.ndarray, float]:
        cfg = self._manual
        side = cfg["size"]
        resized = cv2.resize(patch, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        pixels = (resized * cfg["scale"] - cfg["mean"]) / cfg["std"]
        sx, sy = side / patch.shape[1], side / patch.shape[0]
        boxes = [[[box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]]]
        torch = self.torch
        inputs = {
            "pixel_values": torch.from_numpy(pixels.transpose(2, 0, 1)[None].copy()).to(self.device),
            "input_boxes": torch.tensor(boxes, dtype=torch.float32, device=self.device),
        }
        with torch.inference_mode():
            out = self.model(**inputs, multimask_output=True)
        low_res = out.pred_masks[0, 0].float().cpu().numpy()  # (K, h, w) logits over the square input
        k = int(out.iou_scores[0, 0].float().argmax())
        logits = cv2.resize(low_res[k], (patch.shape[1], patch.shape[0]), interpolation=cv2.INTER_LINEAR)
        return sigmoid(logits), float(out.iou_scores[0, 0, k])

    # -- the transformers processor path ---------------------------------------------------
    def _segment_processor(
        self, patch: np.ndarray, box: tuple[float, float, float, float]
    ) -> tuple[np.ndarray, float]:
        torch = self.torch
        inputs = self.processor(images=patch, input_boxes=[[list(box)]], return_tensors="pt").to(self.device)
        forward = {k: v for k, v in inputs.items() if k in ("pixel_values", "input_boxes")}
        with torch.inference_mode():
            out = self.model(**forward, multimask_output=True)
        extra = [inputs["reshaped_input_sizes"]] if "reshaped_input_sizes" in inputs else []
        masks = self.processor.post_process_masks(
            out.pred_masks.cpu(), inputs["original_sizes"].cpu(), *[e.cpu() for e in extra], binarize=False
        )
        k = int(out.iou_scores[0, 0].float().argmax())
        logits = masks[0][0, k].float().numpy()  # (H, W) logits at the patch's resolution
        return sigmoid(logits), float(out.iou_scores[0, 0, k])

    def predict(self, image_rgb: np.ndarray, box_xywh: Sequence[float]) -> TeacherOutput:
        segment = self._segment_processor if self.processor is not None else self._segment_manual
        return run_on_context(image_rgb, box_xywh, segment)

    def provenance(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "api": "transformers",
            "transformers": self.transformers_version,
            "weights": str(self.path.resolve()),
            "model_class": type(self.model).__name__,
            "preprocessing": "transformers processor"
            if self.processor is not None
            else f"built-in square resize ({self.processor_error})",
            "mask_choice": "highest predicted IoU of 3 multimask outputs",
            "score": "predicted IoU",
        }


class Sam3PackageTeacher(Teacher):
    """SAM3 through Meta's ``sam3`` package (box prompt, SAM 1 task)."""

    def __init__(self, checkpoint: str | Path, bpe_path: str | Path | None = None, device: str = "cpu"):
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise FileNotFoundError(f"no SAM3 checkpoint at {self.checkpoint}")
        try:
            from sam3 import build_sam3_image_model
            from sam3.model.sam3_image_processor import Sam3Processor
        except ImportError as exc:
            raise ImportError(
                "the sam3 package is not installed (pip install sam3, or use a transformers "
                "SAM3 folder with --teacher sam3)"
            ) from exc
        kwargs = {
            "checkpoint_path": str(self.checkpoint),
            "enable_inst_interactivity": True,
            "device": device,
        }
        if bpe_path:
            kwargs["bpe_path"] = str(bpe_path)
        self.model = build_sam3_image_model(**kwargs)
        self.processor = Sam3Processor(self.model)
        self.name = f"sam3-package:{self.checkpoint.name}"

    def _segment(self, patch: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, float]:
        from PIL import Image

        state = self.processor.set_image(Image.fromarray(patch))
        masks, scores, low_res_logits = self.model.predict_inst(
            state,
            point_coords=None,
            point_labels=None,
            box=np.asarray(box, np.float32),
            multimask_output=True,
        )
        k = int(np.argmax(np.asarray(scores)))
        logits = np.asarray(low_res_logits)[k].astype(np.float32)
        logits = cv2.resize(logits, (patch.shape[1], patch.shape[0]), interpolation=cv2.INTER_LINEAR)
        return sigmoid(logits), float(np.asarray(scores)[k])

    def predict(self, image_rgb: np.ndarray, box_xywh: Sequence[float]) -> TeacherOutput:
        return run_on_context(image_rgb, box_xywh, self._segment)

    def provenance(self) -> dict:
        return {
            "name": self.name,
            "api": "sam3 package",
            "weights": str(self.checkpoint.resolve()),
            "mask_choice": "highest score of 3 multimask outputs",
            "score": "predicted IoU",
        }
