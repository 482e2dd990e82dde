"""CPU backend: ONNX Runtime on batches of 96x96 crops (fp32 or INT8 model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from picosam3_ros.core.backend_api import (
    BackendConfig,
    BackendError,
    CropSegmenter,
    ModelLoadError,
    ModelMismatchError,
)
from picosam3_ros.core.model_card import DEFAULT_MODELS_DIR, ModelCard, ModelCardError, load_model_card
from picosam3_ros.core.onnx_session import cpu_session

TRAIN_HINT = (
    "train and export a model first (`picosam3_train` writes picosam3_ros/models/model_card.json), "
    "or point the `model` parameter at a directory holding model_card.json"
)


def load_card(model_dir: Path | str | None) -> ModelCard:
    """Load the model card or raise ModelLoadError with what to do."""
    directory = Path(model_dir) if model_dir else DEFAULT_MODELS_DIR
    try:
        return load_model_card(directory)
    except ModelCardError as exc:
        raise ModelLoadError(f"{exc}; {TRAIN_HINT}") from exc


def resolve_onnx_path(card: ModelCard, precision: str, explicit: str = "") -> Path:
    """The ONNX file to run: the explicit one, else the card's file for ``precision``."""
    if explicit:
        path = Path(explicit)
    else:
        try:
            path = card.path(precision)
        except ModelCardError as exc:
            raise ModelLoadError(f"{exc}; set onnx_precision to one the card lists") from exc
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist; {TRAIN_HINT}")
    return path


class OnnxBackend(CropSegmenter):
    """All prompts of a frame in one ``InferenceSession.run`` call."""

    name = "onnx"

    def __init__(self, config: BackendConfig):
        self.card = load_card(config.model_dir)
        self.model_path = resolve_onnx_path(self.card, config.onnx_precision, config.onnx_model)
        try:
            self.session = cpu_session(self.model_path, config.threads)
        except Exception as exc:  # ORT raises its own exception types for corrupt files
            raise ModelLoadError(
                f"cannot load ONNX model {self.model_path}: {str(exc).splitlines()[0]}; "
                f"re-export it or {TRAIN_HINT}"
            ) from exc
        inputs = self.session.get_inputs()
        try:
            self.card.check_graph(self.model_path, inputs, self.session.get_outputs())
        except ModelCardError as exc:
            raise ModelMismatchError(f"{exc}; fix the card or re-package the model") from exc
        inputs = {i.name: i for i in inputs}
        batch_dim = inputs[self.card.input.name].shape[0]
        # A model exported with a fixed batch of 1 is run once per crop.
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) else None

    @property
    def input_size(self) -> int:
        return self.card.input.size

    def infer(self, crops_rgb: np.ndarray) -> np.ndarray:
        size = self.input_size
        if crops_rgb.shape[0] == 0:
            return np.zeros((0, size, size), np.float32)
        try:
            x = self.card.input.preprocess(crops_rgb)
            if self._fixed_batch is None or self._fixed_batch == x.shape[0]:
                batches = [x]
            else:
                batches = [x[i : i + 1] for i in range(x.shape[0])]
            outs = [self.session.run([self.card.output_name], {self.card.input.name: b})[0] for b in batches]
            logits = np.concatenate(outs, axis=0).astype(np.float32, copy=False)
        except Exception as exc:
            raise BackendError(f"ONNX Runtime failed: {exc}") from exc
        return logits.reshape(crops_rgb.shape[0], logits.shape[-2], logits.shape[-1])
