"""Distributed training throughput: the trainer's own samples/s with 1 and N processes
(``torchrun``: gloo on CPU, NCCL on CUDA) and data-loader workers, plus what one loader
worker and the bare model step deliver.

    python bench/bench_train_distributed.py                   # here: 1 and 2 CPU processes, 1 thread each
    python bench/bench_train_distributed.py --device cuda --procs 1 --batch 512 --workers 0,4,8 --tile 500

Each row of the table is one real ``picosam3_train train`` run (``max_steps`` steps, no
evaluation) on the same crop store; samples/s is that run's summary (all processes together,
after its first step, i.e. without start-up: CUDA kernels, loader workers). Scaling
efficiency = rate(N processes) / (N x rate(1 process)) at the same workers. ``--tile N``
trains on the tiny test fixture repeated N times (fresh annotation ids), for machines
without ../shared/data: throughput does not depend on which pictures the crops show.
Prints markdown; numbers depend on what else the machine runs (see the load column).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without install
FIXTURE = REPO / "test" / "fixtures" / "train"


def tiled_fixture(work: Path, tile: int) -> str:
    """The fixture's annotations repeated ``tile`` times; returns an absolute dataset spec."""
    data = json.loads((FIXTURE / "instances_fixture_train.json").read_text())
    anns = data["annotations"]
    data["annotations"] = [{**a, "id": k * 10_000_000 + int(a["id"])} for k in range(tile) for a in anns]
    path = work / f"instances_fixture_x{tile}.json"
    path.write_text(json.dumps(data))
    return f"{path}:{FIXTURE / 'images'}"


def run_training(spec: str, work: Path, procs: int, threads: int, workers: int, batch: int, steps: int,
                 device: str) -> dict:
    out = work / f"run_p{procs}_w{workers}_b{batch}"
    sets = {"train_datasets": spec, "val_dataset": "", "eval_every": 0, "cache_dir": work / "cache",
            "out_dir": out, "batch_size": batch, "max_steps": steps, "warmup_steps": 1, "threads": threads,
            "loader_workers": workers, "device": device, "log_every": 10}
    args = [f"--set={key}={value}" for key, value in sets.items()]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"]
    command = (launcher if procs > 1 else [sys.executable]) + ["-m", "picosam3_train.cli", "train", *args]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return json.loads((out / "summary.json").read_text())


def loader_worker_rate(spec: str, work: Path, samples: int = 512) -> float:
    """Augmented training samples/s that one process (one loader worker) makes from the store."""
    from picosam3_train.config import TrainConfig
    from picosam3_train.data import collate
    from picosam3_train.sampling import KeyedSamples
    from picosam3_train.train import build_train_dataset

    config = TrainConfig(train_datasets=[spec], cache_dir=str(work / "cache"))
    keyed = KeyedSamples(build_train_dataset(config, quiet=True), seed=0, per_sample_seed=True)
    start = time.perf_counter()
    for first in range(0, samples, 32):
        collate([keyed[((first + i) % len(keyed), 0, 0.08, 0.15)] for i in range(32)])
    return samples / (time.perf_counter() - start)


def model_step_rate(device: str, batch: int, threads: int, steps: int = 20) -> float:
    """Samples/s of the bare training step (forward, loss, backward, AdamW) on a synthetic batch."""
    import torch

    from picosam3_train.loss import distillation_loss
    from picosam3_train.model import build_model

    torch.set_num_threads(threads)
    dev = torch.device(device)
    model = build_model("picosam3").to(dev).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, 96, 96, device=dev).contiguous(memory_format=torch.channels_last)
    gt = (torch.rand(batch, 1, 96, 96, device=dev) > 0.5).float()
    for i in range(steps + 3):
        if i == 3:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(x)
        loss = distillation_loss(logits.float(), gt).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="coco/annotations/instances_train2017.json:coco/train2017",
                        help="annotations.json:image_dir (relative to ../shared/data)")
    parser.add_argument("--tile", type=int, default=0, help="use the test fixture repeated N times instead")
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    parser.add_argument("--workers", default="0", help="comma list of data-loader workers per process")
    parser.add_argument("--batch", type=int, default=32, help="effective batch (all processes)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default="/tmp/picosam3_bench_distributed")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    spec = tiled_fixture(work, args.tile) if args.tile else args.dataset

    import torch

    cuda = args.device.startswith("cuda")
    card = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {card}; torch {torch.__version__}; dataset {Path(spec.split(':')[0]).name}\n")
    print("| processes | threads/process | workers/process | batch | steps | load | samples/s "
          "| samples/s per process | scaling efficiency |")
    print("|---|---|---|---|---|---|---|---|---|")
    single: dict[int, float] = {}
    for workers in (int(w) for w in args.workers.split(",")):
        for procs in (int(p) for p in args.procs.split(",")):
            load = os.getloadavg()[0]
            summary = run_training(spec, work, procs, args.threads, workers, args.batch, args.steps,
                                   args.device)
            rate = summary.get("samples_per_s_after_first_step", summary["samples_per_s"])
            if procs == 1:
                single[workers] = rate
            efficiency = f"{rate / (procs * single[workers]):.2f}" if workers in single else ""
            print(f"| {procs} | {args.threads} | {workers} | {args.batch} | {summary['steps']} | {load:.1f} "
                  f"| {rate:.1f} | {rate / procs:.1f} | {efficiency} |", flush=True)
    print(f"\none loader worker (augmented crops from the store, 1 process): "
          f"{loader_worker_rate(spec, work):.0f} samples/s")
    print(f"bare training step, synthetic batch of {args.batch} on {args.device}: "
          f"{model_step_rate(args.device, args.batch, args.threads):.0f} samples/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
