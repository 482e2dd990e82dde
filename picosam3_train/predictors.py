"""The predictors ``picosam3_train evaluate`` scores: a torch model, an ONNX file, the GrabCut baseline.

A predictor maps uint8 RGB crops (N, 96, 96, 3) and their :class:`CropBatch` to logits (N, 96, 96);
:class:`PredictorSegmenter` puts one behind the backend interface so that whole images go through
the node's own call (``picosam3_ros.core.predictor.Predictor``). The input normalisation comes from
the model card (``InputSpec``) or the trainer's constants (:func:`default_input_spec`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from picosam3_ros.core.backend_api import CropSegmenter
from picosam3_ros.core.crop import MODEL_INPUT_SIZE
from picosam3_ros.core.model_card import InputSpec
from picosam3_ros.core.onnx_session import cpu_session


@dataclass(frozen=True)
class CropBatch:
    """What a predictor may know besides the crops: the instances (indices in evaluation
    order) and each prompt box as a mask on the crop grid (GrabCut starts from it)."""

    indices: np.ndarray
    box_masks: np.ndarray  # bool (N, S, S)


# uint8 RGB crops (N, S, S, 3) + their CropBatch -> logits (N, S, S) float.
CropPredictor = Callable[[np.ndarray, CropBatch], np.ndarray]


def default_input_spec() -> InputSpec:
    """The training normalisation (scale 1/255, ImageNet mean/std), as in the trainer's config."""
    from picosam3_train.config import IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALE

    return InputSpec(
        "image", MODEL_INPUT_SIZE, "NCHW", "RGB", PIXEL_SCALE, tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)
    )


def input_spec_from_config(config) -> InputSpec:
    """InputSpec from a checkpoint's TrainConfig (falls back to the trainer's constants)."""
    base = default_input_spec()
    return InputSpec(
        "image",
        MODEL_INPUT_SIZE,
        "NCHW",
        "RGB",
        float(getattr(config, "pixel_scale", getattr(config, "scale", base.scale))),
        tuple(float(v) for v in getattr(config, "mean", base.mean)),
        tuple(float(v) for v in getattr(config, "std", base.std)),
    )


def _squeeze_logits(out: np.ndarray) -> np.ndarray:
    out = np.asarray(out, dtype=np.float32)
    return out[:, 0] if out.ndim == 4 else out


class OnnxPredictor:
    """An ONNX model in ONNX Runtime (CPU), fed per ``input_spec``."""

    def __init__(self, path: str | Path, input_spec: InputSpec | None = None, threads: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX model at {self.path}")
        self.session = cpu_session(self.path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.input_spec = input_spec or default_input_spec()

    def __call__(self, crops: np.ndarray, batch: CropBatch | None = None) -> np.ndarray:
        x = self.input_spec.preprocess(crops)
        return _squeeze_logits(self.session.run(None, {self.input_name: x})[0])


class TorchPredictor:
    """A torch module (eval mode, no grad) fed per ``input_spec``, on ``device``."""

    def __init__(self, model, input_spec: InputSpec | None = None, device=None, channels_last: bool = False):
        self.model = model
        self.input_spec = input_spec or default_input_spec()
        self.device = device
        self.channels_last = channels_last

    def __call__(self, crops: np.ndarray, batch: CropBatch | None = None) -> np.ndarray:
        import torch

        x = torch.from_numpy(self.input_spec.preprocess(crops))
        if self.device is not None:
            x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                return _squeeze_logits(self.model(x).float().cpu().numpy())
        finally:
            self.model.train(was_training)


def grabcut_logits(crop_rgb: np.ndarray, box_in_crop: np.ndarray, iterations: int = 3) -> np.ndarray:
    """GrabCut on the 96x96 crop, initialised with the box rectangle; +1 = (probable) foreground.
    Falls back to the box itself when GrabCut cannot run (box covering the whole crop) or
    returns an empty mask."""
    size = crop_rgb.shape[0]
    ys, xs = np.nonzero(box_in_crop)
    if len(xs) == 0:
        return np.full((size, size), -1.0, np.float32)
    x0, y0 = max(int(xs.min()), 1), max(int(ys.min()), 1)
    x1, y1 = min(int(xs.max()) + 1, size - 1), min(int(ys.max()) + 1, size - 1)
    fallback = np.where(box_in_crop, 1.0, -1.0).astype(np.float32)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return fallback
    mask = np.zeros((size, size), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(
            cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR),
            mask,
            (x0, y0, x1 - x0, y1 - y0),
            bgd,
            fgd,
            iterations,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error:
        return fallback
    foreground = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    if not foreground.any():
        # On 96x96 crops the background strip outside the box is thin, and GrabCut often
        # converges to "all background" (about half of the COCO instances); an empty mask
        # is no segmentation at all, so the baseline falls back to the box there.
        return fallback
    return np.where(foreground, 1.0, -1.0).astype(np.float32)


def grabcut_predictor(iterations: int = 3) -> CropPredictor:
    """Baseline: cv2.grabCut initialised with the box, ``iterations`` rounds, on the crop."""

    def predict(crops: np.ndarray, batch: CropBatch) -> np.ndarray:
        return np.stack([grabcut_logits(crop, box, iterations) for crop, box in zip(crops, batch.box_masks)])

    return predict


class PredictorSegmenter(CropSegmenter):
    """A crop predictor behind the backend interface, so that images go through the node's own
    call (``picosam3_ros.core.predictor.Predictor``: the crop rule, one batch, the post-processing).
    ``batch`` is set before each image; ``last_crops`` keeps what the network saw (the figures)."""

    name = "evaluate"

    def __init__(self, predictor: CropPredictor):
        self.predictor = predictor
        self.batch: CropBatch | None = None
        self.last_crops: np.ndarray | None = None

    @property
    def input_size(self) -> int:
        return MODEL_INPUT_SIZE

    def infer(self, crops_rgb: np.ndarray) -> np.ndarray:
        self.last_crops = crops_rgb
        logits = np.asarray(self.predictor(crops_rgb, self.batch), np.float32)
        if logits.shape != crops_rgb.shape[:3]:
            raise ValueError(f"expected logits of shape {crops_rgb.shape[:3]}, got {logits.shape}")
        return logits
