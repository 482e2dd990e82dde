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
from picosam3_train.evaluate import TorchPredictor, default_input_spec, evaluate_frames, summarize
from picosam3_train.loss import distillation_loss
from picosam3_train.model import build_model, describe
from picosam3_train.sampling import BatchPlan, Jitter, KeyedSamples, run_loader
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
            ann, images = config.resolve_dataset(spec)
            if "val2017" in ann.name or spec == CALIBRATION_SPEC:
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


def build_eval_crops(config: TrainConfig, quiet: bool = False) -> EvalSplit | None:
    """The evaluation split of ``config`` (None without one)."""
    if not config.val_dataset:
        return None
    ann, images = config.resolve_dataset(config.val_dataset)
    # Models trained box-aware are chosen on what the node outputs: the clip at the same margin.
    post = Postprocess(0.5, config.box_margin) if config.box_margin >= 0 else RAW_POSTPROCESS
    return EvalSplit(ann, images, config.eval_max_instances, post)


def evaluate_crop_space(model: torch.nn.Module, split: EvalSplit, device: torch.device,
                        channels_last: bool = True) -> dict:
    """The periodic evaluation: the one evaluator (``picosam3_train.evaluate.evaluate_frames``,
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


def _train(config: TrainConfig, ctx: Distributed, device: torch.device, resume: str | Path | None,
           quiet: bool) -> dict:
    seed_everything(config.seed, rank=ctx.rank)
    torch.set_num_threads(max(1, config.threads))
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # One process per node decodes the datasets into the crop store; the others then read it.
    if ctx.local_rank != 0:
        ctx.barrier()
    dataset = build_train_dataset(config, quiet=quiet)
    eval_crops = build_eval_crops(config, quiet=quiet) if config.eval_every > 0 and ctx.is_main else None
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
    optimizer = make_optimizer(model, config)

    batch_size = min(config.batch_size, len(dataset))
    plan = BatchPlan(len(dataset), batch_size, ctx.world_size, ctx.rank, config.grad_accum_steps, config.seed)
    steps_per_epoch = plan.steps_per_epoch
    total_steps = config.max_steps if config.max_steps > 0 else config.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    warmup = max(1, min(config.warmup_steps, total_steps // 5))
    budget_s = config.time_budget_min * 60.0

    start_epoch, start_batch, step, best_miou, history, elapsed_before = 0, 0, 0, -1.0, [], 0.0
    if resume:
        resumed, _, extra = load_checkpoint(resume)
        model.load_state_dict(resumed.state_dict())
        optimizer.load_state_dict(extra["optimizer"])
        elapsed_before = float(extra.get("elapsed_s", 0.0))
        # A checkpoint from inside an epoch continues that epoch's order at its next batch.
        start_batch = int(extra.get("next_batch", 0))
        start_epoch, step = int(extra["epoch"]) + (0 if start_batch else 1), int(extra["step"])
        best_miou = float(extra.get("best_miou", -1.0))
        history = list(extra.get("history", []))
        if not quiet:
            print(f"resumed from {resume}: epoch {start_epoch}, batch {start_batch}, step {step}, "
                  f"best mIoU {best_miou:.4f}")
    # DDP broadcasts rank 0's weights and averages gradients; `model` stays the plain module.
    net = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None) if ctx.enabled else model
    use_amp = config.amp and device.type == "cuda"
    samples = KeyedSamples(dataset, config.seed, per_sample_seed=ctx.enabled or config.loader_workers > 0)
    jitter = Jitter(dataset.box_jitter, dataset.scale_jitter)
    if ctx.is_main:
        save_config(config, out_dir / "config.yaml")
    log_file = (out_dir / "metrics.jsonl").open("a") if ctx.is_main else None

    def log(record: dict) -> None:
        if log_file is not None:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()

    model.train()
    run_start = time.perf_counter()
    samples_seen = 0
    first_loss = last_loss = None
    in_final_phase = False
    agreed_elapsed = 0.0
    steady_start: float | None = None

    def tick() -> None:
        # every rank must stop (and decay the rate) at the same step: they use rank 0's clock
        nonlocal agreed_elapsed
        if ctx.enabled and budget_s > 0:
            agreed_elapsed = ctx.agree(time.perf_counter() - run_start)

    def run_elapsed() -> float:
        return agreed_elapsed if ctx.enabled else time.perf_counter() - run_start

    def progress() -> float:
        done = (step - warmup) / max(1, total_steps - warmup)
        if budget_s > 0:
            done = max(done, (elapsed_before + run_elapsed()) / budget_s)
        return done

    def finished() -> bool:
        # a time budget always allows one step, so an overloaded machine still makes progress
        return step >= total_steps or (budget_s > 0 and step > 0 and progress() >= 1.0)

    def training_state(epoch: int, metrics: dict, next_batch: int = 0) -> dict:
        state = {"epoch": epoch, "step": step, "best_miou": best_miou, "history": history,
                 "optimizer": optimizer.state_dict(), "metrics": metrics,
                 "elapsed_s": elapsed_before + time.perf_counter() - run_start}
        return {**state, "next_batch": next_batch} if next_batch else state

    step_record: dict | None = None
    logged_step = step
    # one loader for the whole run: it continues epoch after epoch in the order of BatchPlan
    loader = iter(run_loader(samples, plan, start_epoch, start_batch, jitter, config.loader_workers,
                             pin_memory=device.type == "cuda"))
    for epoch in range(start_epoch, start_epoch + 1_000_000):  # ends on finished()
        tick()
        if finished():
            break
        dataset.reseed(config.seed * 1000 + epoch + 1)
        first_batch, start_batch = start_batch, 0
        bar = tqdm(range(first_batch, steps_per_epoch), desc=f"epoch {epoch + 1}/{max(epochs, epoch + 1)}",
                   disable=quiet, mininterval=2.0, dynamic_ncols=True)
        running: dict[str, float] = {}
        epoch_start = time.perf_counter()
        batches_done = first_batch
        for b in bar:
            tick()
            if finished():
                break
            if not in_final_phase and progress() >= config.final_phase_start:
                in_final_phase = True
                dataset.box_jitter = jitter.box = config.box_jitter * config.final_jitter_mult
                dataset.scale_jitter = jitter.scale = config.scale_jitter * config.final_jitter_mult
                log({"step": step, "final_phase": True, "box_jitter": dataset.box_jitter})
                if not quiet:
                    print(f"\nstep {step}: final phase, box jitter {dataset.box_jitter:.3f}, "
                          f"scale jitter {dataset.scale_jitter:.3f}", flush=True)
            lr = config.lr * lr_factor(progress(), step, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            values: dict[str, float] = {}
            for micro in range(plan.grad_accum_steps):
                batch = {k: v.to(device, non_blocking=True) for k, v in next(loader).items()}
                images = batch["image"]
                if config.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                # gradients are averaged across ranks once, on the last micro-batch of the step
                last_micro = micro == plan.grad_accum_steps - 1
                with contextlib.nullcontext() if last_micro or not ctx.enabled else net.no_sync():
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                        logits = net(images).float()
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
                    (parts.total / plan.grad_accum_steps).backward()
                for k, v in parts.as_floats().items():
                    values[k] = values.get(k, 0.0) + v / plan.grad_accum_steps
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            batches_done = b + 1
            samples_seen += batch_size
            if steady_start is None:  # after the first step: start-up (workers, kernels) is over
                steady_start = time.perf_counter()
            values = ctx.mean(values)  # the loss of the whole effective batch
            first_loss = values["total"] if first_loss is None else first_loss
            last_loss = values["total"]
            for k, v in values.items():
                running[k] = 0.9 * running.get(k, v) + 0.1 * v
            rate = (b + 1 - first_batch) * batch_size / max(1e-9, time.perf_counter() - epoch_start)
            bar.set_postfix(loss=f"{running['total']:.3f}", gt=f"{running['ground_truth']:.3f}",
                            t=f"{running['teacher']:.3f}", area=f"{running['area']:.3f}",
                            sps=f"{rate:.1f}", refresh=False)
            step_record = {"step": step, "epoch": epoch, "lr": lr, "samples_per_s": rate,
                           "loss": values["total"], **{f"loss_{k}": v for k, v in running.items()}}
            if step % config.log_every == 0 or finished():
                log(step_record)
                logged_step = step
            if (config.checkpoint_every > 0 and step % config.checkpoint_every == 0
                    and batches_done < steps_per_epoch and not finished() and ctx.is_main):
                save_checkpoint(out_dir / "last.pt", model, config, training_state(epoch, {}, batches_done))
        bar.close()
        if finished() and step_record is not None and logged_step != step:
            log(step_record)  # the budget may run out between two checks: always record the last step
            logged_step = step

        last_epoch = finished()
        metrics = {}
        if eval_crops is not None and ((epoch + 1) % config.eval_every == 0 or last_epoch):
            metrics = evaluate_crop_space(model, eval_crops, device, config.channels_last)
            record = {"epoch": epoch, "step": step, "eval": metrics,
                      "elapsed_s": elapsed_before + time.perf_counter() - run_start}
            history.append(record)
            log(record)
            if not quiet:
                print(f"epoch {epoch + 1}: dev-val crop mIoU {metrics['miou']:.4f} "
                      f"(S {metrics['miou_small']:.3f} M {metrics['miou_medium']:.3f} "
                      f"L {metrics['miou_large']:.3f}), loss {running.get('total', float('nan')):.4f}",
                      flush=True)
        if metrics and metrics["miou"] > best_miou:
            best_miou = metrics["miou"]
            save_checkpoint(out_dir / "best.pt", model, config,
                            {**training_state(epoch, metrics), "optimizer": None})
        if ctx.is_main:  # a run that stops inside an epoch resumes at its next batch
            next_batch = batches_done if batches_done < steps_per_epoch else 0
            save_checkpoint(out_dir / "last.pt", model, config, training_state(epoch, metrics, next_batch))
        ctx.barrier()  # the others wait for rank 0's evaluation and checkpoint
    del loader  # stops the loader's workers
    if log_file is not None:
        log_file.close()
    elapsed = time.perf_counter() - run_start
    summary = {"best_miou": best_miou, "steps": step, "samples_seen": samples_seen,
               "samples_per_s": samples_seen / max(elapsed, 1e-9), "elapsed_s": elapsed,
               "first_loss": first_loss, "last_loss": last_loss, "out_dir": str(out_dir)}
    if steady_start is not None and samples_seen > batch_size:
        summary["samples_per_s_after_first_step"] = (
            (samples_seen - batch_size) / max(time.perf_counter() - steady_start, 1e-9))
    if ctx.enabled:
        summary.update(world_size=ctx.world_size,
                       samples_per_s_per_process=summary["samples_per_s"] / ctx.world_size,
                       rank_weight_digests=ctx.gather(weights_digest(model)))
    if ctx.is_main:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
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
