"""The one seed helper: Python, NumPy and torch (CPU and CUDA) in one call."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int, deterministic: bool = False, rank: int = 0) -> None:
    """Seed every RNG the pipeline uses. ``deterministic`` also asks torch for
    deterministic kernels (slower; CPU training here is deterministic anyway).
    ``rank``: the process's rank in distributed training; each rank gets its own
    streams (seed + rank), rank 0 those of a single process."""
    import torch

    seed = seed + rank
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
