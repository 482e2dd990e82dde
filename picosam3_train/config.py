"""Training configuration: one flat dataclass, read from YAML, overridden with ``--set key=value``,
saved as ``config.yaml`` beside every checkpoint (timm/nanoGPT style)."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"

# Normalisation written into model_card.json; training uses exactly these numbers.
PIXEL_SCALE = 1.0 / 255.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The development split: evaluation only, never training.
DEV_VAL_DATASET = "coco/annotations/instances_val2017_dev.json:coco/val2017"


@dataclass
class TrainConfig:
    # model
    model: str = "picosam3"
    width_mult: float = 1.0
    stem_stride: int = 2  # 2: the network works at 48x48 inside (4x fewer MACs); 1: full resolution
    # data: "annotations.json:image_dir" pairs, relative to data_root unless absolute
    data_root: str = ""  # empty = ../shared/data beside the repository
    train_datasets: list[str] = field(default_factory=lambda: [
        "coco/annotations/instances_train2017.json:coco/train2017",
        "pennfudan/instances_pennfudan.json:pennfudan/images",
    ])
    val_dataset: str = DEV_VAL_DATASET
    teacher_caches: list[str] = field(default_factory=list)  # directories written by cache-teacher
    cache_dir: str = ".cache/picosam3_train"  # decoded context crops (npz), relative to the repo
    context_size: int = 192  # stored context crop side: 2x the padded square, so jitter is a crop
    max_train_instances: int = 0  # 0 = all (tests use a handful)
    # Leave the calibration split's images (picosam3_train/splits.py) out of training: they
    # choose the post-processing and the best checkpoint. val_dataset "calibration" reads them.
    hold_out_calibration: bool = True
    # augmentation
    augment: bool = True
    hflip_prob: float = 0.5
    box_jitter: float = 0.08  # std of each box edge's shift, as a fraction of the box side
    scale_jitter: float = 0.15  # std of log box scale
    color_jitter: float = 0.25  # brightness/contrast/saturation strength
    # From this fraction of the schedule on, box and scale jitter are multiplied by
    # final_jitter_mult (like YOLOX switching strong augmentation off at the end): the model
    # first learns to segment from imperfect boxes, then sharpens on tight, detector-like ones.
    final_phase_start: float = 1.0  # 1.0 = never
    final_jitter_mult: float = 0.25
    # Detector-like boxes (data.CropDataset.jitter_box). > 0: each sample draws its own edge
    # noise level uniformly in [0, box_jitter_max] (tight boxes and very loose ones in one
    # batch, as a detector gives), instead of the fixed ``box_jitter``.
    box_jitter_max: float = 0.0
    # Probability that the whole box is displaced as an object that moved since it was
    # detected (a lagged or followed box): a shift of N(0, box_lag) of the box size per axis.
    lag_prob: float = 0.0
    box_lag: float = 0.15
    # Crops with other objects in them drawn this many times as often (1 = plain sampling).
    crowd_oversample: float = 1.0
    # loss
    teacher_sharpen: float = 5.0  # the published sigmoid(5x) of the teacher term
    teacher_weight_max: float = 0.8  # cap of the per-sample teacher weight
    area_weight: float = 1.0
    area_min_ratio: float = 0.4
    # Box-aware training: logits outside the prompt box grown by this fraction of its size are
    # set to background before the loss, as the node's post-processing does
    # (picosam3_ros.core.postprocess); < 0 = off. Package the model with the same margin.
    box_margin: float = -1.0
    # optimisation
    # A checkpoint whose weights start this run (fine-tuning; a fresh schedule and optimizer,
    # unlike --resume). "" = random initialisation.
    init_checkpoint: str = ""
    epochs: int = 30
    max_steps: int = 0  # 0 = epochs * steps per epoch; > 0 stops early (tests, smoke runs)
    # > 0: a wall-clock budget for shared CPUs. The cosine schedule then runs on
    # max(step progress, time progress) and training stops when the budget is spent, so a
    # run ends on time with a fully decayed learning rate whatever the machine's load.
    # The steps actually taken are recorded; rerun with max_steps=<that> to reproduce.
    time_budget_min: float = 0.0
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 2.0
    # evaluation / checkpoints
    eval_every: int = 1  # epochs; 0 = never
    eval_max_instances: int = 0  # 0 = the whole dev split
    out_dir: str = "runs/picosam3"
    # runtime
    device: str = "auto"  # auto, cpu, cuda
    threads: int = 2
    # > 0: build batches in this many DataLoader worker processes (a GPU needs them; the
    # augmentation is numpy/OpenCV on the CPU). 0 = in the training process, as on a small CPU.
    loader_workers: int = 0
    seed: int = 0
    channels_last: bool = True
    # distributed training and data loading (``torchrun ... picosam3_train train``; see
    # picosam3_train/sampling.py). ``batch_size`` is the EFFECTIVE batch of one optimizer step:
    # all processes and all accumulation steps together; each process computes micro-batches of
    # batch_size / (world_size * grad_accum_steps) samples (it must divide). ``lr`` is the rate
    # for that effective batch, so the same config optimises the same way on 1 CPU or 16 GPUs.
    # Changing batch_size is a new recipe: as a starting point (not tuned here) scale lr by
    # sqrt(new / old batch) for AdamW, with a longer warm-up (docs/distributed_training.md).
    grad_accum_steps: int = 1
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    log_every: int = 20  # steps between metrics.jsonl records
    checkpoint_every: int = 0  # steps between mid-epoch last.pt saves (0 = at the end of epochs only)

    def resolved_data_root(self) -> Path:
        return Path(self.data_root).expanduser() if self.data_root else DEFAULT_DATA_ROOT

    def resolve_dataset(self, spec: str) -> tuple[Path, Path]:
        """The dataset ``spec`` under this config's data root (:func:`resolve_dataset`)."""
        return resolve_dataset(spec, self.resolved_data_root(), self.resolved_cache_dir())

    def resolved_cache_dir(self) -> Path:
        path = Path(self.cache_dir)
        return path if path.is_absolute() else REPO_ROOT / path

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _coerce(name: str, value: Any, current: Any) -> Any:
    if isinstance(current, bool):
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        return bool(value)
    if isinstance(current, int) and not isinstance(current, bool):
        return int(value)
    if isinstance(current, float):
        return float(value)
    if isinstance(current, list):
        if isinstance(value, str):
            return [v for v in value.split(",") if v]
        return list(value)
    return value if value is None else str(value)


def config_from_dict(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    config = dataclasses.replace(base) if base is not None else TrainConfig()
    known = {f.name for f in fields(TrainConfig)}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown config key {key!r}; known: {sorted(known)}")
        setattr(config, key, _coerce(key, value, getattr(config, key)))
    return config


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """YAML file (optional) then ``key=value`` overrides (values parsed as YAML scalars/lists)."""
    config = TrainConfig()
    if path:
        values = yaml.safe_load(Path(path).read_text()) or {}
        config = config_from_dict(values, config)
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must be key=value")
        key, raw = item.split("=", 1)
        config = config_from_dict({key.strip(): yaml.safe_load(raw)}, config)
    return config


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def resolve_dataset(spec: str, data_root: Path | str | None = None,
                    cache_dir: Path | str | None = None) -> tuple[Path, Path]:
    """The one dataset resolver (training, evaluation, calibration, teacher caches, packaging):
    'annotations.json:image_dir' (each relative to the working directory when it exists there, else
    to ``data_root``, default ../shared/data) -> absolute paths. A bare annotation file of the shared
    layout finds its image folder by itself; the spec ``calibration`` is the calibration split
    (picosam3_train/splits.py), filtered into ``cache_dir``."""
    root = Path(data_root).expanduser() if data_root else DEFAULT_DATA_ROOT
    from picosam3_train.splits import CALIBRATION_SPEC, calibration_dataset

    if spec == CALIBRATION_SPEC:
        return calibration_dataset(root, cache_dir or REPO_ROOT / ".cache" / "picosam3_train")
    if ":" in spec:
        ann_text, images_text = spec.rsplit(":", 1)
    else:
        ann_text, images_text = spec, ""

    def locate(text: str) -> Path:
        path = Path(text).expanduser()
        if path.is_absolute() or path.exists():
            return path.resolve()
        return (root / path).resolve()

    annotations = locate(ann_text)
    if images_text:
        return annotations, locate(images_text)
    stem = annotations.stem.replace("instances_", "").replace("_dev", "")
    for candidate in (annotations.parent.parent / stem, annotations.parent / "images", annotations.parent):
        if candidate.is_dir() and candidate != annotations.parent.parent:
            return annotations, candidate
    raise FileNotFoundError(
        f"cannot find the image folder of {annotations}; pass 'annotations.json:image_dir'"
    )
