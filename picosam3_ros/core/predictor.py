"""The model's one public face outside ROS: boxes in, full-frame masks out (``picosam3_ros.Predictor``).

    from picosam3_ros import Predictor
    predictor = Predictor()                        # the packaged model, its card's post-processing
    masks = predictor.predict(image_rgb, [(x, y, w, h)])
    masks[0].mask                                  # bool (H, W), the whole frame
    masks[0].score, masks[0].crop                  # mean object probability, the 96x96 crop's rect

It is the node's CPU path (``pipeline.segment_frame``: the crop rule, one batched network call,
the one post-processing step) with the backend and the post-processing held together, so that
the node's frame server, bag evaluation and ``picosam3_train evaluate`` all make masks with the
same call (:meth:`Predictor.segment`, per-prompt results as the node publishes them).

ROS-free, in ``core``: it builds a backend by name from the registry
(:mod:`picosam3_ros.core.backend_registry`, filled by ``picosam3_ros.backends``, which the package
imports first), or takes a built :class:`CropSegmenter` (the trainer's torch model).
``picosam3_ros.Predictor`` is this class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from picosam3_ros.core.backend_api import BackendConfig, BackendError, CropSegmenter
from picosam3_ros.core.backend_registry import backend_spec, create_backend
from picosam3_ros.core.crop import CropRect
from picosam3_ros.core.model_card import postprocess_in_use
from picosam3_ros.core.pipeline import Prompt, PromptResult, Status, segment_frame
from picosam3_ros.core.postprocess import Postprocess


@dataclass
class Mask:
    """One box's result on one image.

    mask: bool (H, W) over the whole image (all False unless ``ok``).
    score: mean object probability inside the mask (0 without one).
    crop: the region the network saw, in image pixels (None for an invalid box).
    box: the box the mask was made for (x, y, w, h).
    status: ``Status.OK`` or why there is no mask (INVALID_ROI, BACKEND_ERROR), with ``detail``.
    logits: the network's (96, 96) output (None unless ``ok``).
    """

    mask: np.ndarray
    score: float
    crop: CropRect | None
    box: tuple[float, float, float, float]
    status: Status
    detail: str = ""
    logits: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.status == Status.OK


def full_frame_mask(result: PromptResult, frame_size: tuple[int, int]) -> np.ndarray:
    """A result's crop-local mask pasted into an all-background frame: bool (height, width)."""
    width, height = frame_size
    frame = np.zeros((height, width), bool)
    if result.status == Status.OK and result.crop is not None and result.crop_mask is not None:
        rect = result.crop
        frame[rect.y : rect.y_end, rect.x : rect.x_end] = result.crop_mask > 0
    return frame


class Predictor:
    """A crop-segmenting backend and the post-processing it is read with.

    model_dir: directory with ``model_card.json`` (None: the packaged model).
    backend: a registered crop-segmenter name ("onnx"), or a built
        :class:`~picosam3_ros.core.backend_api.CropSegmenter` (a torch model in training, a test's).
    precision: "fp32" or "int8", the card's file the CPU backend runs.
    postprocess: threshold and box margin (None: the model card's, else the plain network output).
    onnx_model: an explicit ONNX file over the card's; threads: ONNX Runtime threads (0 = default).
    border: the crop rule's border handling ("cut" only for the papers' protocol).
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        backend: str | CropSegmenter = "onnx",
        precision: str = "fp32",
        postprocess: Postprocess | None = None,
        *,
        onnx_model: str = "",
        threads: int = 0,
        border: str = "shrink",
    ):
        if isinstance(backend, CropSegmenter):
            self.segmenter = backend
        else:
            if backend_spec(backend).runs_network:
                raise BackendError(
                    f"backend '{backend}' runs the network on its own camera frames, not on given "
                    "images; replay images through it with bag_eval --backend " + backend
                )
            config = BackendConfig(
                model_dir=Path(model_dir) if model_dir else None,
                onnx_model=onnx_model,
                onnx_precision=precision,
                threads=threads,
            )
            self.segmenter = create_backend(backend, config)
        if postprocess is None:  # a bare ONNX file brings no card
            postprocess = postprocess_in_use(model_dir, card=not onnx_model or model_dir is not None)
        self.postprocess = postprocess
        self.border = border

    @property
    def name(self) -> str:
        return self.segmenter.name

    @property
    def model_path(self) -> str:
        return str(getattr(self.segmenter, "model_path", ""))

    def segment(
        self, image_rgb: np.ndarray, prompts: Sequence[Prompt], arrival_ns: int | None = None
    ) -> list[PromptResult]:
        """Per-prompt results (crop-local masks) in prompt order, as the node publishes them."""
        return segment_frame(self.segmenter, image_rgb, prompts, self.postprocess, arrival_ns, self.border)

    def predict(self, image_rgb: np.ndarray, boxes: Sequence[Sequence[float]]) -> list[Mask]:
        """uint8 (H, W, 3) RGB image and boxes (x, y, w, h) in its pixels -> one :class:`Mask` per box."""
        image_rgb = np.asarray(image_rgb)
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {image_rgb.dtype} {image_rgb.shape}")
        prompts = [Prompt(index, tuple(float(v) for v in box)) for index, box in enumerate(boxes)]
        size = (image_rgb.shape[1], image_rgb.shape[0])
        return [
            Mask(full_frame_mask(r, size), r.score, r.crop, prompt.box_xywh, Status(r.status), r.detail,
                 r.logits96)
            for prompt, r in zip(prompts, self.segment(image_rgb, prompts))
        ]

    def close(self) -> None:
        self.segmenter.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
