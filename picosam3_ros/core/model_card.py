"""The model card: the contract between a trained model and the runtimes.

``model_card.json`` sits beside the model files. Its ``input`` block defines the
preprocessing every runtime applies to a 96x96 RGB crop:
``x = (pixel * scale - mean) / std``, NCHW float32. Its ``output`` block names
the logit map (> 0 = object). Its optional ``postprocess`` block recommends the
object threshold and box margin for this model (``picosam3_ros.core.postprocess``);
the node uses it unless its parameters say otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from picosam3_ros.core.postprocess import RAW_POSTPROCESS, Postprocess, postprocess_from_card

DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
MODEL_CARD_NAME = "model_card.json"


class ModelCardError(ValueError):
    """The model card is missing, unreadable or incomplete."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    size: int
    layout: str  # "NCHW"
    color: str  # "RGB"
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def preprocess(self, crops_rgb: np.ndarray) -> np.ndarray:
        """uint8 (N, size, size, 3) RGB crops -> float32 (N, 3, size, size) network input."""
        if crops_rgb.ndim != 4 or crops_rgb.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"expected (N, {self.size}, {self.size}, 3) crops, got {crops_rgb.shape}")
        x = crops_rgb.astype(np.float32) * np.float32(self.scale)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@dataclass(frozen=True)
class ModelCard:
    directory: Path
    files: dict[str, str]  # role ("fp32", "int8", "imx500", ...) -> file name in `directory`
    input: InputSpec
    output_name: str
    raw: dict
    postprocess: Postprocess = Postprocess()

    def path(self, role: str) -> Path:
        if role not in self.files:
            listed = ", ".join(sorted(self.files))
            raise ModelCardError(f"model card in {self.directory} lists no '{role}' file (has: {listed})")
        return self.directory / self.files[role]


def load_model_card(directory: Path | str = DEFAULT_MODELS_DIR) -> ModelCard:
    """Read ``model_card.json`` from ``directory`` (or from the card file itself)."""
    path = Path(directory)
    card_path = path if path.suffix == ".json" else path / MODEL_CARD_NAME
    try:
        raw = json.loads(card_path.read_text())
    except FileNotFoundError as exc:
        raise ModelCardError(f"no model card at {card_path}") from exc
    except json.JSONDecodeError as exc:
        raise ModelCardError(f"model card {card_path} is not valid JSON: {exc}") from exc
    try:
        spec = raw["input"]
        input_spec = InputSpec(
            name=str(spec["name"]),
            size=int(spec["size"]),
            layout=str(spec["layout"]),
            color=str(spec["color"]),
            scale=float(spec["scale"]),
            mean=tuple(float(v) for v in spec["mean"]),
            std=tuple(float(v) for v in spec["std"]),
        )
        files = {str(k): str(v) for k, v in raw["files"].items()}
        output_name = str(raw["output"]["name"])
        postprocess = postprocess_from_card(raw.get("postprocess"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelCardError(f"model card {card_path} is incomplete: {exc!r}") from exc
    if input_spec.layout != "NCHW" or input_spec.color != "RGB":
        raise ModelCardError(f"model card {card_path}: only NCHW RGB input is supported")
    return ModelCard(card_path.parent, files, input_spec, output_name, raw, postprocess)


def postprocess_in_use(
    directory: Path | str | None = DEFAULT_MODELS_DIR,
    threshold: float | None = None,
    box_margin: float | None = None,
) -> Postprocess:
    """The threshold and box margin a runtime uses: the given overrides (None = not set) over
    the card's ``postprocess`` block; without a readable card, over the plain network output."""
    try:
        recommended = load_model_card(directory or DEFAULT_MODELS_DIR).postprocess
    except ModelCardError:
        recommended = RAW_POSTPROCESS
    return recommended.with_overrides(threshold, box_margin)
