"""Checkpoints that rebuild their model.

A checkpoint is one ``.pt`` file holding the model's state dict, the model name
and builder kwargs, the full training config (as a dict) and an ``extra`` dict
(epoch, step, metrics, optimizer/scheduler state for resume). The config is also
written as ``<stem>.yaml`` beside it so a person can read it without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from picosam3_train.config import TrainConfig, config_from_dict, save_config
from picosam3_train.model import build_model

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, model: nn.Module, config: TrainConfig,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (.pt) and ``path.with_suffix('.yaml')`` atomically (tmp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format_version": FORMAT_VERSION,
        "model_name": getattr(model, "variant", config.model),
        "model_kwargs": {"width_mult": float(getattr(model, "width_mult", config.width_mult)),
                         "stem_stride": int(getattr(model, "stem_stride", 2))},
        "model_state": state,
        "config": config.to_dict(),
        "extra": dict(extra or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    save_config(config, path.with_suffix(".yaml"))
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    ) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """Rebuild the model from the checkpoint's own name/kwargs and load its weights.

    Returns (model in eval mode, TrainConfig, extra dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(payload, dict) or "model_state" not in payload:
        raise ValueError(f"{path} is not a picosam3_train checkpoint")
    model = build_model(payload["model_name"], **payload.get("model_kwargs", {}))
    model.load_state_dict(payload["model_state"])
    model.eval()
    config = config_from_dict(payload.get("config", {}))
    return model, config, payload.get("extra", {})
