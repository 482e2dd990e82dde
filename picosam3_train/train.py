"""``picosam3_train train``: train PicoSAM3 (or PicoSAM2, or the wide CNN teacher).

    picosam3_train train --config picosam3_train/configs/picosam3.yaml --set epochs=20 --set out_dir=runs/x
    picosam3_train train --resume runs/x/last.pt          # continue where it stopped

Writes to ``out_dir``: ``last.pt``/``best.pt`` (+ ``.yaml`` configs), ``metrics.jsonl`` (one line
per logging interval and per evaluation) and prints a tqdm bar with loss and samples/s.
The best checkpoint is chosen by crop-space mIoU on the dev split, evaluated every
``eval_every`` epochs (evaluation only: that split is never trained on).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from picosam3_ros.core.postprocess import RAW_POSTPROCESS, Postprocess
from picosam3_train.checkpoint import load_checkpoint, save_checkpoint
from picosam3_train.config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PIXEL_SCALE,
    TrainConfig,
    load_config,
    save_config,
)
from picosam3_train.data import CropDataset, InstanceStore, load_teacher_caches
from picosam3_train.distributed import Distributed, init_distributed, shutdown_distributed
from picosam3_train.loss import distillation_loss
from picosam3_train.model import build_model, describe
from picosam3_train.predictors import TorchPredictor, default_input_spec
from picosam3_train.sampling import BatchPlan, Jitter, KeyedSamples, run_loader
from picosam3_train.scoring import evaluate_frames, summarize
from picosam3_train.seed import seed_everything
from picosam3_train.splits import CALIBRATION_SPEC, fit_annotation_file

BOX_CLIP_LOGIT = -12.0  # sigmoid = 6e-6: certain background, still a finite loss


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device=cuda requested but CUDA is not available")
    return torch.device(name)


def build_train_dataset(config: TrainConfig, quiet: bool = False) -> CropDataset:
    stores, files = [], []
    for spec in config.train_datasets:
        store = InstanceStore.open_prebuilt(spec)
        if store is None:
            if spec == CALIBRATION_SPEC:  # refused before anything is read
                raise ValueError(f"refusing to train on {spec}: it is for evaluation only")
            ann, images = config.resolve_dataset(spec)
            if "val2017" in ann.name:
                raise ValueError(f"refusing to train on {spec}: it is for evaluation only")
            if config.hold_out_calibration:
                ann = fit_annotation_file(ann, config.resolved_cache_dir())
            store = InstanceStore.build(ann, images, config.resolved_cache_dir(), "context",
                                        config.context_size, config.max_train_instances, quiet=quiet)
        elif "val2017" in store.name:
            raise ValueError(f"refusing to train on {store.name}: the val split is for evaluation only")
        stores.append(store)
        files.append(Path(store.name))
    teachers = load_teacher_caches(config.teacher_caches, files) if config.teacher_caches else {}
    if config.teacher_caches and not quiet:
        print(f"teacher caches cover: {sorted(teachers)}")
    return CropDataset(stores, IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALE, augment=config.augment,
                       hflip_prob=config.hflip_prob, box_jitter=config.box_jitter,
                       scale_jitter=config.scale_jitter, color_jitter=config.color_jitter,
                       teachers=teachers, seed=config.seed, box_margin=config.box_margin,
                       box_jitter_max=config.box_jitter_max, lag_prob=config.lag_prob, box_lag=config.box_lag,
                       crowd_oversample=config.crowd_oversample)


@dataclass(frozen=True)
class EvalSplit:
    """The dev split the periodic evaluation reads (the evaluator decodes it each time)."""

    annotations: Path
    images: Path
    limit: int = 0
    postprocess: Postprocess = RAW_POSTPROCESS


def dev_split(config: TrainConfig) -> EvalSplit | None:
    """The evaluation split of ``config`` (None without one)."""
    if not config.val_dataset:
        return None
    ann, images = config.resolve_dataset(config.val_dataset)
    # Models trained box-aware are chosen on what the node outputs: the clip at the same margin.
    post = Postprocess(0.5, config.box_margin) if config.box_margin >= 0 else RAW_POSTPROCESS
    return EvalSplit(ann, images, config.eval_max_instances, post)


def evaluate_on_dev(model: torch.nn.Module, split: EvalSplit, device: torch.device,
                    channels_last: bool = True) -> dict:
    """The periodic evaluation: the one evaluator (``picosam3_train.scoring.evaluate_frames``,
    the node's pipeline on every image, GT boxes, the node's crop rule) on the plain network
    output (logits > 0), clipped to the box when the model was trained box-aware.
    ``miou`` (crop space) chooses the best checkpoint."""
    predictor = TorchPredictor(model, default_input_spec(), device, channels_last)
    evaluation = evaluate_frames({"model": predictor}, split.annotations, split.images,
                                 {"raw": split.postprocess}, protocols=("project",), limit=split.limit,
                                 keep_examples=False)
    scores = evaluation.scores["model"][("project", "gt", "raw")]
    summary = summarize(scores.crop_ious, scores.full_ious, evaluation.size_classes())
    result = {"miou": summary["crop_miou"], "full_miou": summary["full_miou"], "instances": summary["count"],
              "mean_fraction_above_iou_50_95": summary["crop_mean_frac_iou_50_95"]}
    for bucket, block in summary["by_size"].items():
        result[f"miou_{bucket}"] = block["crop_miou"] if block["count"] else float("nan")
        result[f"full_miou_{bucket}"] = block["full_miou"] if block["count"] else float("nan")
    return result



def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for param in model.parameters():
        (decay if param.dim() > 1 else no_decay).append(param)  # no decay on BN and biases
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


def lr_factor(progress: float, step: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from 1 to 0.02 over ``progress`` in [0, 1]."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, max(0.0, progress))
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))


def train(config: TrainConfig, resume: str | Path | None = None, quiet: bool = False) -> dict:
    """Run training; returns a summary dict (best/last mIoU, steps, samples/s, paths).

    Under ``torchrun`` with several processes this is one rank of a DistributedDataParallel
    job (``picosam3_train.distributed``): the ranks split each effective batch
    (``picosam3_train.sampling``), gradients are averaged, and rank 0 alone evaluates, logs,
    shows the progress bar and writes checkpoints (of the plain model, so they load in one
    process)."""
    ctx, dist_device = init_distributed(config.device)
    try:
        device = dist_device or select_device(config.device)
        return _train(config, ctx, device, resume, quiet or not ctx.is_main)
    finally:
        shutdown_distributed(ctx)


class RunClock:
    """The run's time and progress: steps against the step budget, seconds against the time budget.

    Under DDP every rank must stop (and decay the learning rate) at the same step, so with a
    time budget the ranks agree on rank 0's clock at every :meth:`tick`.
    """

    def __init__(self, ctx: Distributed, total_steps: int, warmup: int, budget_s: float,
                 elapsed_before: float = 0.0):
        self.ctx, self.total_steps, self.warmup, self.budget_s = ctx, total_steps, warmup, budget_s
        self.elapsed_before = elapsed_before  # seconds of the run before a resume
        self.start = time.perf_counter()
        self.steady_start: float | None = None  # after the first step: start-up is over
        self._agreed = 0.0

    def tick(self) -> None:
        if self.ctx.enabled and self.budget_s > 0:
            self._agreed = self.ctx.agree(time.perf_counter() - self.start)

    def elapsed(self) -> float:
        """Seconds of this process's run (the agreed ones under DDP)."""
        return self._agreed if self.ctx.enabled else time.perf_counter() - self.start

    def total_elapsed(self) -> float:
        """Seconds of the whole run, resumes included (for checkpoints and records)."""
        return self.elapsed_before + time.perf_counter() - self.start

    def progress(self, step: int) -> float:
        done = (step - self.warmup) / max(1, self.total_steps - self.warmup)
        if self.budget_s > 0:
            done = max(done, (self.elapsed_before + self.elapsed()) / self.budget_s)
        return done

    def finished(self, step: int) -> bool:
        # a time budget always allows one step, so an overloaded machine still makes progress
        return step >= self.total_steps or (self.budget_s > 0 and step > 0 and self.progress(step) >= 1.0)

    def stepped(self) -> None:
        if self.steady_start is None:
            self.steady_start = time.perf_counter()


class Checkpoints:
    """``last.pt`` / ``best.pt`` in ``out_dir`` and the training state they carry (epoch, step,
    best mIoU, history, optimizer, elapsed time, and the next batch of an unfinished epoch)."""

    def __init__(self, out_dir: Path, model: torch.nn.Module, config: TrainConfig,
                 optimizer: torch.optim.Optimizer, clock: RunClock):
        self.out_dir, self.model, self.config, self.optimizer, self.clock = (
            out_dir, model, config, optimizer, clock)
        self.start_epoch, self.start_batch, self.step = 0, 0, 0
        self.best_miou, self.history = -1.0, []

    def resume(self, path: str | Path, quiet: bool) -> None:
        resumed, _, extra = load_checkpoint(path)
        self.model.load_state_dict(resumed.state_dict())
        self.optimizer.load_state_dict(extra["optimizer"])
        self.clock.elapsed_before = float(extra.get("elapsed_s", 0.0))
        # A checkpoint from inside an epoch continues that epoch's order at its next batch.
        self.start_batch = int(extra.get("next_batch", 0))
        self.start_epoch = int(extra["epoch"]) + (0 if self.start_batch else 1)
        self.step = int(extra["step"])
        self.best_miou = float(extra.get("best_miou", -1.0))
        self.history = list(extra.get("history", []))
        if not quiet:
            print(f"resumed from {path}: epoch {self.start_epoch}, batch {self.start_batch}, "
                  f"step {self.step}, best mIoU {self.best_miou:.4f}")

    def state(self, epoch: int, metrics: dict, next_batch: int = 0) -> dict:
        state = {"epoch": epoch, "step": self.step, "best_miou": self.best_miou, "history": self.history,
                 "optimizer": self.optimizer.state_dict(), "metrics": metrics,
                 "elapsed_s": self.clock.total_elapsed()}
        return {**state, "next_batch": next_batch} if next_batch else state

    def save_last(self, epoch: int, metrics: dict, next_batch: int = 0) -> None:
        state = self.state(epoch, metrics, next_batch)
        save_checkpoint(self.out_dir / "last.pt", self.model, self.config, state)

    def save_if_best(self, epoch: int, metrics: dict) -> None:
        if metrics and metrics["miou"] > self.best_miou:
            self.best_miou = metrics["miou"]
            save_checkpoint(self.out_dir / "best.pt", self.model, self.config,
                            {**self.state(epoch, metrics), "optimizer": None})


@dataclass
class StepContext:
    """What one optimizer step needs besides the batches."""

    net: torch.nn.Module  # the DDP wrapper, or the model itself
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    ctx: Distributed
    device: torch.device
    grad_accum_steps: int

    @property
    def use_amp(self) -> bool:
        return self.config.amp and self.device.type == "cuda"


def train_step(step: StepContext, loader, lr: float) -> dict[str, float]:
    """One optimizer step over ``grad_accum_steps`` micro-batches; the loss parts of the whole
    effective batch (averaged over the ranks)."""
    config, ctx, device = step.config, step.ctx, step.device
    for group in step.optimizer.param_groups:
        group["lr"] = lr
    step.optimizer.zero_grad(set_to_none=True)
    values: dict[str, float] = {}
    for micro in range(step.grad_accum_steps):
        batch = {k: v.to(device, non_blocking=True) for k, v in next(loader).items()}
        images = batch["image"]
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        # gradients are averaged across ranks once, on the last micro-batch of the step
        last_micro = micro == step.grad_accum_steps - 1
        with contextlib.nullcontext() if last_micro or not ctx.enabled else step.net.no_sync():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=step.use_amp):
                logits = step.net(images).float()
            if config.box_margin >= 0:
                # The loss sees what the node outputs: background outside the (grown) prompt box.
                logits = logits.masked_fill(batch["keep"] < 0.5, BOX_CLIP_LOGIT)
            has_teacher = bool((batch["teacher_score"] > 0).any())
            parts = distillation_loss(
                logits, batch["mask"],
                batch["teacher"] if has_teacher else None, batch["teacher_valid"],
                batch["teacher_score"] if has_teacher else None,
                sharpen=config.teacher_sharpen, teacher_weight_max=config.teacher_weight_max,
                area_weight=config.area_weight, area_min_ratio=config.area_min_ratio)
            (parts.total / step.grad_accum_steps).backward()
        for k, v in parts.as_floats().items():
            values[k] = values.get(k, 0.0) + v / step.grad_accum_steps
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(step.model.parameters(), config.grad_clip)
    step.optimizer.step()
    return ctx.mean(values)


class MetricsLog:
    """``metrics.jsonl`` (rank 0 only; the others write nothing)."""

    def __init__(self, path: Path | None):
        self.file = path.open("a") if path is not None else None

    def __call__(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@dataclass
class LossTrack:
    """The losses seen: first and last (for the summary), running means (for the bar)."""

    first: float | None = None
    last: float | None = None
    samples_seen: int = 0

    def add(self, values: dict[str, float], running: dict[str, float], batch_size: int) -> None:
        self.first = values["total"] if self.first is None else self.first
        self.last = values["total"]
        self.samples_seen += batch_size
        for k, v in values.items():
            running[k] = 0.9 * running.get(k, v) + 0.1 * v


def _setup(config: TrainConfig, ctx: Distributed, device: torch.device, resume, quiet: bool):
    """The dataset, the dev split, the model (initialised or resumed) and its optimizer."""
    # One process per node decodes the datasets into the crop store; the others then read it.
    if ctx.local_rank != 0:
        ctx.barrier()
    dataset = build_train_dataset(config, quiet=quiet)
    dev = dev_split(config) if config.eval_every > 0 and ctx.is_main else None
    if ctx.local_rank == 0:
        ctx.barrier()
    model = build_model(config.model, width_mult=config.width_mult, stem_stride=config.stem_stride)
    if config.init_checkpoint and not resume:
        init_model, _, _ = load_checkpoint(config.init_checkpoint)
        model.load_state_dict(init_model.state_dict())
        if not quiet:
            print(f"initialised from {config.init_checkpoint}")
    if not quiet:
        describe(model)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return dataset, dev, model, make_optimizer(model, config)


class _Run:
    """One training run's state, so that the epoch loop reads as the steps it takes."""

    def __init__(self, config: TrainConfig, ctx: Distributed, device: torch.device, resume, quiet: bool):
        seed_everything(config.seed, rank=ctx.rank)
        torch.set_num_threads(max(1, config.threads))
        self.config, self.ctx, self.device, self.quiet = config, ctx, device, quiet
        self.out_dir = Path(config.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.dataset, self.dev, model, optimizer = _setup(config, ctx, device, resume, quiet)
        self.batch_size = min(config.batch_size, len(self.dataset))
        self.plan = BatchPlan(len(self.dataset), self.batch_size, ctx.world_size, ctx.rank,
                              config.grad_accum_steps, config.seed)
        total_steps = config.max_steps if config.max_steps > 0 else config.epochs * self.plan.steps_per_epoch
        self.epochs = math.ceil(total_steps / self.plan.steps_per_epoch)
        self.clock = RunClock(ctx, total_steps, max(1, min(config.warmup_steps, total_steps // 5)),
                              config.time_budget_min * 60.0)
        self.checkpoints = Checkpoints(self.out_dir, model, config, optimizer, self.clock)
        if resume:
            self.checkpoints.resume(resume, quiet)
        # DDP broadcasts rank 0's weights and averages gradients; `model` stays the plain module.
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None) if ctx.enabled else model
        self.step_context = StepContext(net, model, optimizer, config, ctx, device,
                                        self.plan.grad_accum_steps)
        samples = KeyedSamples(self.dataset, config.seed,
                               per_sample_seed=ctx.enabled or config.loader_workers > 0)
        self.jitter = Jitter(self.dataset.box_jitter, self.dataset.scale_jitter)
        if ctx.is_main:
            save_config(config, self.out_dir / "config.yaml")
        self.log = MetricsLog(self.out_dir / "metrics.jsonl" if ctx.is_main else None)
        self.losses = LossTrack()
        self.in_final_phase = False
        self.step_record: dict | None = None
        self.logged_step = self.checkpoints.step
        # one loader for the whole run: it continues epoch after epoch in the order of BatchPlan
        self.loader = iter(run_loader(samples, self.plan, self.checkpoints.start_epoch,
                                      self.checkpoints.start_batch, self.jitter, config.loader_workers,
                                      pin_memory=device.type == "cuda"))
        model.train()
        self.clock.start = time.perf_counter()  # the run's clock starts with its first step

    @property
    def step(self) -> int:
        return self.checkpoints.step

    def finished(self) -> bool:
        return self.clock.finished(self.step)

    def enter_final_phase(self) -> None:
        config, dataset = self.config, self.dataset
        self.in_final_phase = True
        dataset.box_jitter = self.jitter.box = config.box_jitter * config.final_jitter_mult
        dataset.scale_jitter = self.jitter.scale = config.scale_jitter * config.final_jitter_mult
        self.log({"step": self.step, "final_phase": True, "box_jitter": dataset.box_jitter})
        if not self.quiet:
            print(f"\nstep {self.step}: final phase, box jitter {dataset.box_jitter:.3f}, "
                  f"scale jitter {dataset.scale_jitter:.3f}", flush=True)

    def epoch(self, epoch: int) -> tuple[int, dict[str, float]]:
        """Train one epoch (or what is left of it); returns the batches done and the running losses."""
        config, steps_per_epoch = self.config, self.plan.steps_per_epoch
        self.dataset.reseed(config.seed * 1000 + epoch + 1)
        first_batch, self.checkpoints.start_batch = self.checkpoints.start_batch, 0
        bar = tqdm(range(first_batch, steps_per_epoch),
                   desc=f"epoch {epoch + 1}/{max(self.epochs, epoch + 1)}",
                   disable=self.quiet, mininterval=2.0, dynamic_ncols=True)
        running: dict[str, float] = {}
        epoch_start = time.perf_counter()
        batches_done = first_batch
        for b in bar:
            self.clock.tick()
            if self.finished():
                break
            if not self.in_final_phase and self.clock.progress(self.step) >= config.final_phase_start:
                self.enter_final_phase()
            lr = config.lr * lr_factor(self.clock.progress(self.step), self.step, self.clock.warmup)
            values = train_step(self.step_context, self.loader, lr)
            self.checkpoints.step += 1
            batches_done = b + 1
            self.clock.stepped()
            self.losses.add(values, running, self.batch_size)
            rate = (b + 1 - first_batch) * self.batch_size / max(1e-9, time.perf_counter() - epoch_start)
            bar.set_postfix(loss=f"{running['total']:.3f}", gt=f"{running['ground_truth']:.3f}",
                            t=f"{running['teacher']:.3f}", area=f"{running['area']:.3f}",
                            sps=f"{rate:.1f}", refresh=False)
            self.step_record = {"step": self.step, "epoch": epoch, "lr": lr, "samples_per_s": rate,
                                "loss": values["total"], **{f"loss_{k}": v for k, v in running.items()}}
            if self.step % config.log_every == 0 or self.finished():
                self.log(self.step_record)
                self.logged_step = self.step
            if (config.checkpoint_every > 0 and self.step % config.checkpoint_every == 0
                    and batches_done < steps_per_epoch and not self.finished() and self.ctx.is_main):
                self.checkpoints.save_last(epoch, {}, batches_done)
        bar.close()
        if self.finished() and self.step_record is not None and self.logged_step != self.step:
            # the budget may run out between two checks: always record the last step
            self.log(self.step_record)
            self.logged_step = self.step
        return batches_done, running

    def end_epoch(self, epoch: int, batches_done: int, running: dict[str, float]) -> None:
        """The dev evaluation when due, best.pt when it improved, last.pt always (rank 0)."""
        config = self.config
        metrics = {}
        if self.dev is not None and ((epoch + 1) % config.eval_every == 0 or self.finished()):
            metrics = evaluate_on_dev(self.checkpoints.model, self.dev, self.device, config.channels_last)
            record = {"epoch": epoch, "step": self.step, "eval": metrics,
                      "elapsed_s": self.clock.total_elapsed()}
            self.checkpoints.history.append(record)
            self.log(record)
            if not self.quiet:
                print(f"epoch {epoch + 1}: dev-val crop mIoU {metrics['miou']:.4f} "
                      f"(S {metrics['miou_small']:.3f} M {metrics['miou_medium']:.3f} "
                      f"L {metrics['miou_large']:.3f}), loss {running.get('total', float('nan')):.4f}",
                      flush=True)
        self.checkpoints.save_if_best(epoch, metrics)
        if self.ctx.is_main:  # a run that stops inside an epoch resumes at its next batch
            steps_per_epoch = self.plan.steps_per_epoch
            self.checkpoints.save_last(epoch, metrics, batches_done if batches_done < steps_per_epoch else 0)
        self.ctx.barrier()  # the others wait for rank 0's evaluation and checkpoint

    def summary(self) -> dict:
        clock, losses, ctx, model = self.clock, self.losses, self.ctx, self.checkpoints.model
        elapsed = time.perf_counter() - clock.start
        summary = {"best_miou": self.checkpoints.best_miou, "steps": self.step,
                   "samples_seen": losses.samples_seen,
                   "samples_per_s": losses.samples_seen / max(elapsed, 1e-9), "elapsed_s": elapsed,
                   "first_loss": losses.first, "last_loss": losses.last, "out_dir": str(self.out_dir)}
        if clock.steady_start is not None and losses.samples_seen > self.batch_size:
            summary["samples_per_s_after_first_step"] = (
                (losses.samples_seen - self.batch_size) / max(time.perf_counter() - clock.steady_start, 1e-9))
        if ctx.enabled:
            summary.update(world_size=ctx.world_size,
                           samples_per_s_per_process=summary["samples_per_s"] / ctx.world_size,
                           rank_weight_digests=ctx.gather(weights_digest(model)))
        return summary


def _train(config: TrainConfig, ctx: Distributed, device: torch.device, resume: str | Path | None,
           quiet: bool) -> dict:
    run = _Run(config, ctx, device, resume, quiet)
    for epoch in range(run.checkpoints.start_epoch, run.checkpoints.start_epoch + 1_000_000):
        run.clock.tick()
        if run.finished():  # ends here: steps or time budget spent
            break
        batches_done, running = run.epoch(epoch)
        run.end_epoch(epoch, batches_done, running)
    del run.loader  # stops the loader's workers
    run.log.close()
    summary = run.summary()
    if ctx.is_main:
        (run.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not quiet:
        print(json.dumps(summary, indent=2))
    return summary


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's parameters: ranks in step have the same digest. (Not the
    BatchNorm running statistics: each rank updates them from its own micro-batch, and DDP
    sends rank 0's to all at every forward; rank 0's are the ones saved.)"""
    digest = hashlib.sha256()
    for name, tensor in model.named_parameters():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="picosam3_train train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (keys of picosam3_train.config.TrainConfig)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable); lists comma-separated")
    parser.add_argument("--resume", help="continue from a last.pt checkpoint (its config is used)")
    args = parser.parse_args(argv)
    if args.resume:
        _, config, _ = load_checkpoint(args.resume)
        config = load_config(None, []) if config is None else config
        from picosam3_train.config import config_from_dict

        overrides = dict(item.split("=", 1) for item in args.overrides)
        import yaml

        config = config_from_dict({k: yaml.safe_load(v) for k, v in overrides.items()}, config)
    else:
        config = load_config(args.config, args.overrides)
    train(config, resume=args.resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
