"""Teachers that see a crop like the student: any ONNX model, or a picosam checkpoint
trained here (e.g. the same family at 2-4x width, or at a higher input resolution).

The crop is the standard one (``crop_rect_for_box``) resized to the teacher's own
input size; its logits are resampled into the 96x96 frame. Score: the mask's
certainty, mean |2p - 1|, as such models predict no IoU of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from picosam3_ros.core.crop import crop_and_resize
from picosam3_ros.core.model_card import InputSpec, ModelCardError, load_model_card
from picosam3_ros.core.onnx_session import cpu_session
from picosam3_train.teachers.base import (
    Teacher,
    TeacherOutput,
    certainty,
    sigmoid,
    standard_rect,
    to_standard_frame,
)


def _with_size(spec: InputSpec, size: int) -> InputSpec:
    return InputSpec(spec.name, size, spec.layout, spec.color, spec.scale, spec.mean, spec.std)


class _CropTeacher(Teacher):
    input_spec: InputSpec

    def _logits(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, image_rgb: np.ndarray, box_xywh: Sequence[float]) -> TeacherOutput:
        rect = standard_rect(image_rgb, box_xywh)
        crop = crop_and_resize(image_rgb, rect, self.input_spec.size)
        logits = np.asarray(self._logits(self.input_spec.preprocess(crop[None])), np.float32)
        logits = logits.reshape(logits.shape[-2:])
        probability = np.clip(to_standard_frame(sigmoid(logits)), 0.0, 1.0)
        return TeacherOutput(probability, certainty(probability))


class OnnxTeacher(_CropTeacher):
    """Any ONNX model with one NCHW image input and one (N, 1, S, S) or (N, S, S) logit output."""

    def __init__(
        self,
        path: str | Path,
        input_size: int | None = None,
        input_spec: InputSpec | None = None,
        threads: int = 0,
    ):

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX teacher at {self.path}")
        self.session = cpu_session(self.path, threads)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        if input_spec is None:
            try:
                input_spec = load_model_card(self.path.parent).input
            except ModelCardError:
                from picosam3_train.predictors import default_input_spec

                input_spec = default_input_spec()
        static = model_input.shape[-1] if isinstance(model_input.shape[-1], int) else None
        self.input_spec = _with_size(input_spec, int(input_size or static or input_spec.size))
        self.name = f"onnx:{self.path.name}"

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def provenance(self) -> dict:
        return {
            "name": self.name,
            "api": "onnxruntime",
            "weights": str(self.path.resolve()),
            "input_size": self.input_spec.size,
            "score": "certainty mean|2p-1|",
        }


class CheckpointTeacher(_CropTeacher):
    """A picosam3_train checkpoint (``load_checkpoint``), e.g. a wider picosam3 trained on GT."""

    def __init__(self, path: str | Path, input_size: int | None = None, device: str = "cpu"):
        import torch

        from picosam3_train.checkpoint import load_checkpoint
        from picosam3_train.predictors import input_spec_from_config

        self.torch = torch
        self.path = Path(path)
        self.model, self.config, self.extra = load_checkpoint(self.path, map_location=device)
        self.device = device
        size = input_size or int(getattr(self.config, "input_size", 0) or 96)
        self.input_spec = _with_size(input_spec_from_config(self.config), size)
        self.name = f"checkpoint:{self.path.name}"

    def _logits(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(x).to(self.device)).float().cpu().numpy()

    def provenance(self) -> dict:
        metrics = {k: v for k, v in self.extra.items() if isinstance(v, (int, float, str))}
        return {
            "name": self.name,
            "api": "picosam3_train checkpoint",
            "weights": str(self.path.resolve()),
            "model": getattr(self.config, "model", None),
            "width_mult": getattr(self.config, "width_mult", None),
            "input_size": self.input_spec.size,
            "checkpoint_extra": metrics,
            "score": "certainty mean|2p-1|",
        }
