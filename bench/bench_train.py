"""Training throughput: samples/s of one optimisation step (forward, loss, backward, AdamW),
per model, batch size, memory format and thread count, on synthetic 96x96 batches, plus the
cost of making a batch from the real data cache (augmented crops).

    python bench/bench_train.py                       # the default table
    python bench/bench_train.py --models picosam3 --batches 32 --threads 2 --steps 5

Prints a markdown table. Numbers depend on what else the machine is doing: run it on a
quiet machine, and read the `load` column (1-minute load average at the start of each row).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install
from picosam3_ros.core.crop import MODEL_INPUT_SIZE
from picosam3_train.loss import distillation_loss
from picosam3_train.model import build_model, count_macs, count_parameters


def bench_step(model_name: str, width_mult: float, batch: int, channels_last: bool, threads: int,
               steps: int, warmup: int = 2) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(model_name, width_mult=width_mult).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    size = MODEL_INPUT_SIZE
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    gt = (torch.rand(batch, 1, size, size) > 0.5).float()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = distillation_loss(model(x), gt).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    times.sort()
    return batch / times[len(times) // 2]  # median step


def bench_data(batch: int, batches: int) -> float | None:
    """Augmented samples/s from the real data cache (None when ../shared/data is absent)."""
    from picosam3_train.config import TrainConfig
    from picosam3_train.data import collate
    from picosam3_train.train import build_train_dataset

    config = TrainConfig()
    try:
        dataset = build_train_dataset(config, quiet=True)
    except FileNotFoundError:
        return None
    start = time.perf_counter()
    for b in range(batches):
        collate([dataset[(b * batch + i) % len(dataset)] for i in range(batch)])
    return batch * batches / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="picosam3,picosam2,picosam3x2",
                        help="comma list; a 'x2' suffix means width_mult=2 (the CNN teacher)")
    parser.add_argument("--batches", default="16,32")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--formats", default="channels_last,contiguous")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-data", action="store_true", help="skip the data-pipeline row")
    args = parser.parse_args(argv)

    print("| model | params | MMACs@96 | batch | format | threads | load | train samples/s |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.models.split(","):
        name, width = (spec[:-2], 2.0) if spec.endswith("x2") else (spec, 1.0)
        probe = build_model(name, width_mult=width)
        params, macs = count_parameters(probe), count_macs(probe)
        for batch in (int(b) for b in args.batches.split(",")):
            for fmt in args.formats.split(","):
                for threads in (int(t) for t in args.threads.split(",")):
                    load = os.getloadavg()[0]
                    rate = bench_step(name, width, batch, fmt == "channels_last", threads, args.steps)
                    print(f"| {spec} | {params / 1e6:.3f} M | {macs / 1e6:.0f} | {batch} | {fmt} | {threads} "
                          f"| {load:.1f} | {rate:.1f} |", flush=True)
    if not args.no_data:
        rate = bench_data(32, 20)
        if rate is not None:
            print(f"\ndata pipeline (cached context crops -> augmented 96x96 batch): {rate:.0f} samples/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
