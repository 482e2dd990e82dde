"""The model card: the contract between a trained model and the runtimes (written and read here).

``model_card.json`` sits beside the model files. Its ``input`` block defines the
preprocessing every runtime applies to a 96x96 RGB crop:
``x = (pixel * scale - mean) / std``, NCHW float32. Its ``output`` block names
the logit map (> 0 = object). Its optional ``postprocess`` block recommends the
object threshold and box margin for this model (``picosam3_ros.core.postprocess``);
the node uses it unless its parameters say otherwise.

``write_model_card`` (used by ``picosam3_train package``) and ``load_model_card``
(every runtime) apply the same checks, and ``check_graph`` holds a card against the
ONNX graph it names: a card with ``input.size: 64`` for a 96x96 network, a 2-value
``mean`` or a zero ``std`` once started fine and then failed every frame (or gave an
empty mask for every prompt) without a word. Every problem is one line naming the
card, the field and what was expected.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from picosam3_ros.core.postprocess import RAW_POSTPROCESS, Postprocess, postprocess_from_card

DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
MODEL_CARD_NAME = "model_card.json"
FORMULA = "x = (pixel * scale - mean) / std"


class ModelCardError(ValueError):
    """The model card is missing, unreadable, incomplete, or contradicts its model."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    size: int
    layout: str  # "NCHW"
    color: str  # "RGB"
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def problem(self) -> str | None:
        """What makes this preprocessing unusable, or None."""
        if not self.name:
            return "input.name is empty"
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 1 <= self.size <= 4096:
            return f"input.size must be a positive integer, got {self.size!r}"
        if self.layout != "NCHW" or self.color != "RGB":
            return f"only NCHW RGB input is supported, got {self.layout} {self.color}"
        if not (math.isfinite(self.scale) and self.scale > 0):
            return f"input.scale must be a finite number > 0, got {self.scale!r}"
        for key, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                return f"input.{key} must be 3 finite numbers (R, G, B), got {list(values)!r}"
        if min(self.std) <= 0:
            return f"input.std must be > 0 for each channel, got {list(self.std)!r}"
        return None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "size": self.size,
            "layout": self.layout,
            "color": self.color,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "formula": FORMULA,
        }

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


    def check_graph(self, model_file: str | Path, inputs: Sequence[Any], outputs: Sequence[Any]) -> None:
        """Hold the card against an ONNX graph's inputs and outputs; raise ModelCardError on a mismatch.

        inputs / outputs: objects with ``name``, ``shape`` (ints, or names / None for
        dynamic axes) and ``type`` (``"tensor(float)"``), e.g. ONNX Runtime's
        ``session.get_inputs()``. A dynamic axis matches anything.
        """
        where = f"model card {self.directory / MODEL_CARD_NAME} does not match {Path(model_file).name}"
        spec = self.input
        by_name = {i.name: i for i in inputs}
        if spec.name not in by_name:
            raise ModelCardError(f"{where}: no input '{spec.name}' (inputs: {sorted(by_name)})")
        graph_in = by_name[spec.name]
        if getattr(graph_in, "type", "tensor(float)") != "tensor(float)":
            raise ModelCardError(f"{where}: input '{spec.name}' is {graph_in.type}, the card feeds float32")
        if not _shape_matches(graph_in.shape, [None, 3, spec.size, spec.size]):
            raise ModelCardError(
                f"{where}: input '{spec.name}' is {_shape_text(graph_in.shape)} in the graph, "
                f"the card says [N, 3, {spec.size}, {spec.size}] (input.size {spec.size})"
            )
        out_by_name = {o.name: o for o in outputs}
        if self.output_name not in out_by_name:
            raise ModelCardError(f"{where}: no output '{self.output_name}' (outputs: {sorted(out_by_name)})")
        shape = out_by_name[self.output_name].shape
        side = spec.size
        if not (_shape_matches(shape, [None, 1, side, side]) or _shape_matches(shape, [None, side, side])):
            raise ModelCardError(
                f"{where}: output '{self.output_name}' is {_shape_text(shape)} in the graph, "
                f"expected one {spec.size}x{spec.size} logit map per crop ([N, 1, {spec.size}, {spec.size}])"
            )


def _shape_matches(shape: Sequence[Any] | None, expected: Sequence[int | None]) -> bool:
    if shape is None:
        return True  # no shape information in the graph: nothing to contradict
    if len(shape) != len(expected):
        return False
    return all(want is None or not isinstance(dim, int) or dim == want for dim, want in zip(shape, expected))


def _shape_text(shape: Sequence[Any] | None) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else "N" for d in shape or []) + "]"


def _input_spec(raw: dict, card_path: Path) -> InputSpec:
    spec = raw["input"]
    for key in ("mean", "std"):
        if not isinstance(spec[key], list):
            raise ModelCardError(f"model card {card_path}: input.{key} must be a list of 3 numbers")
    size = spec["size"]
    if isinstance(size, float) and size.is_integer():
        size = int(size)
    return InputSpec(
        name=str(spec["name"]),
        size=size,  # checked (with the rest) by InputSpec.problem
        layout=str(spec["layout"]),
        color=str(spec["color"]),
        scale=float(spec["scale"]),
        mean=tuple(float(v) for v in spec["mean"]),
        std=tuple(float(v) for v in spec["std"]),
    )


def load_model_card(directory: Path | str = DEFAULT_MODELS_DIR) -> ModelCard:
    """Read and check ``model_card.json`` from ``directory`` (or the card file itself)."""
    path = Path(directory)
    card_path = path if path.suffix == ".json" else path / MODEL_CARD_NAME
    try:
        raw = json.loads(card_path.read_text())
    except FileNotFoundError as exc:
        raise ModelCardError(f"no model card at {card_path}") from exc
    except json.JSONDecodeError as exc:
        raise ModelCardError(f"model card {card_path} is not valid JSON: {exc}") from exc
    try:
        input_spec = _input_spec(raw, card_path)
        files = {str(k): str(v) for k, v in raw["files"].items()}
        output_name = str(raw["output"]["name"])
        postprocess = postprocess_from_card(raw.get("postprocess"))
    except ModelCardError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelCardError(f"model card {card_path} is incomplete: {exc!r}") from exc
    problem = input_spec.problem()
    if problem is not None:
        raise ModelCardError(f"model card {card_path}: {problem}")
    return ModelCard(card_path.parent, files, input_spec, output_name, raw, postprocess)


def postprocess_in_use(
    directory: Path | str | None = DEFAULT_MODELS_DIR,
    threshold: float | None = None,
    box_margin: float | None = None,
    box_clip: bool = True,
    card: bool = True,
) -> Postprocess:
    """The threshold and box margin a runtime uses: the given overrides (None = not set) over
    the card's ``postprocess`` block; without a readable card (or with ``card=False``: a bare
    ONNX file or checkpoint), over the plain network output. ``box_clip=False`` drops the clip."""
    recommended = RAW_POSTPROCESS
    if card:
        try:
            recommended = load_model_card(directory or DEFAULT_MODELS_DIR).postprocess
        except ModelCardError:
            pass
    chosen = recommended.with_overrides(threshold, box_margin)
    return chosen if box_clip else Postprocess(chosen.threshold, None)


def write_model_card(
    directory: Path | str,
    files: dict[str, str],
    input_spec: InputSpec,
    output_name: str = "logits",
    **about: Any,
) -> ModelCard:
    """Write ``model_card.json`` into ``directory`` and read it back (the runtimes' own check).

    files: role ("fp32", "int8", "imx500", "rpk") -> file name in ``directory``.
    about: the descriptive sections (``crop``, ``model``, ``training_data``, ``metrics``,
    ``reproduce``, ...), stored as given; they must be JSON-serialisable.
    """
    problem = input_spec.problem()
    if problem is not None:
        raise ModelCardError(f"refusing to write a model card: {problem}")
    size = input_spec.size
    card = {
        "name": about.pop("name", "picosam3"),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "files": dict(files),
        "input": input_spec.as_dict(),
        "output": {"name": output_name, "shape": [None, 1, size, size], "meaning": "logits, > 0 = object"},
        **about,
    }
    card_path = Path(directory) / MODEL_CARD_NAME
    card_path.parent.mkdir(parents=True, exist_ok=True)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return load_model_card(card_path)
