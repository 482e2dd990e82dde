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
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
from picosam3_train.data import CropDataset, InstanceStore, collate, load_teacher_caches
from picosam3_train.evaluate import TorchPredictor, default_input_spec, evaluate_frames, summarize
from picosam3_train.loss import distillation_loss
from picosam3_train.model import build_model, describe
from picosam3_train.seed import seed_everything

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
            if "val2017" in ann.name:
                raise ValueError(f"refusing to train on {ann.name}: the val split is for evaluation only")
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
                       teachers=teachers, seed=config.seed, box_margin=config.box_margin)


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



def _reseed_worker(_worker_id: int) -> None:
    # Each worker holds a copy of the dataset and its generator: give every worker of every
    # epoch its own augmentation stream (torch seeds workers differently per epoch).
    import cv2

    cv2.setNumThreads(1)  # the workers already use every core
    info = torch.utils.data.get_worker_info()
    info.dataset.reseed(torch.initial_seed() % 2**32)


def epoch_batches(dataset: CropDataset, order: np.ndarray, batch_size: int, workers: int):
    """Batches of ``dataset`` in ``order``: in this process, or from ``workers`` DataLoader workers."""
    if workers <= 0:
        return (collate([dataset[int(i)] for i in order[s:s + batch_size]])
                for s in range(0, len(order), batch_size))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=[int(i) for i in order], drop_last=True,
        collate_fn=collate, num_workers=workers, worker_init_fn=_reseed_worker, prefetch_factor=2,
        pin_memory=torch.cuda.is_available())
    return iter(loader)


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
    """Run training; returns a summary dict (best/last mIoU, steps, samples/s, paths)."""
    seed_everything(config.seed)
    torch.set_num_threads(max(1, config.threads))
    device = select_device(config.device)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    dataset = build_train_dataset(config, quiet=quiet)
    eval_crops = build_eval_crops(config, quiet=quiet) if config.eval_every > 0 else None
    model = build_model(config.model, width_mult=config.width_mult, stem_stride=config.stem_stride)
    if config.init_checkpoint and not resume:
        init_model, _, _ = load_checkpoint(config.init_checkpoint)
        model.load_state_dict(init_model.state_dict())
        if not quiet:
            print(f"initialised from {config.init_checkpoint}")
    if not quiet:
        describe(model)
    optimizer = make_optimizer(model, config)

    batch_size = min(config.batch_size, len(dataset))
    steps_per_epoch = max(1, len(dataset) // batch_size)
    total_steps = config.max_steps if config.max_steps > 0 else config.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    warmup = max(1, min(config.warmup_steps, total_steps // 5))
    budget_s = config.time_budget_min * 60.0

    start_epoch, step, best_miou, history, elapsed_before = 0, 0, -1.0, [], 0.0
    if resume:
        payload = torch.load(resume, map_location="cpu", weights_only=False)
        model.load_state_dict(payload["model_state"])
        extra = payload.get("extra", {})
        optimizer.load_state_dict(extra["optimizer"])
        elapsed_before = float(extra.get("elapsed_s", 0.0))
        start_epoch, step = int(extra["epoch"]) + 1, int(extra["step"])
        best_miou = float(extra.get("best_miou", -1.0))
        history = list(extra.get("history", []))
        if not quiet:
            print(f"resumed from {resume}: epoch {start_epoch}, step {step}, best mIoU {best_miou:.4f}")
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    save_config(config, out_dir / "config.yaml")
    log_file = (out_dir / "metrics.jsonl").open("a")

    def log(record: dict) -> None:
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()

    model.train()
    run_start = time.perf_counter()
    samples_seen = 0
    first_loss = last_loss = None
    in_final_phase = False

    def progress() -> float:
        done = (step - warmup) / max(1, total_steps - warmup)
        if budget_s > 0:
            done = max(done, (elapsed_before + time.perf_counter() - run_start) / budget_s)
        return done

    def finished() -> bool:
        # a time budget always allows one step, so an overloaded machine still makes progress
        return step >= total_steps or (budget_s > 0 and step > 0 and progress() >= 1.0)

    step_record: dict | None = None
    logged_step = step
    for epoch in range(start_epoch, start_epoch + 1_000_000):  # ends on finished()
        if finished():
            break
        order = np.random.default_rng(config.seed * 1000 + epoch).permutation(len(dataset))
        dataset.reseed(config.seed * 1000 + epoch + 1)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{max(epochs, epoch + 1)}", disable=quiet,
                   mininterval=2.0, dynamic_ncols=True)
        running: dict[str, float] = {}
        batches = epoch_batches(dataset, order[:steps_per_epoch * batch_size], batch_size,
                                config.loader_workers)
        epoch_start = time.perf_counter()
        for b in bar:
            if finished():
                break
            if not in_final_phase and progress() >= config.final_phase_start:
                in_final_phase = True
                dataset.box_jitter = config.box_jitter * config.final_jitter_mult
                dataset.scale_jitter = config.scale_jitter * config.final_jitter_mult
                log({"step": step, "final_phase": True, "box_jitter": dataset.box_jitter})
                if not quiet:
                    print(f"\nstep {step}: final phase, box jitter {dataset.box_jitter:.3f}, "
                          f"scale jitter {dataset.scale_jitter:.3f}", flush=True)
            lr = config.lr * lr_factor(progress(), step, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = next(batches)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            images = batch["image"]
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            logits = model(images)
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
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            samples_seen += len(images)
            values = parts.as_floats()
            first_loss = values["total"] if first_loss is None else first_loss
            last_loss = values["total"]
            for k, v in values.items():
                running[k] = 0.9 * running.get(k, v) + 0.1 * v
            rate = (b + 1) * batch_size / max(1e-9, time.perf_counter() - epoch_start)
            bar.set_postfix(loss=f"{running['total']:.3f}", gt=f"{running['ground_truth']:.3f}",
                            t=f"{running['teacher']:.3f}", area=f"{running['area']:.3f}",
                            sps=f"{rate:.1f}", refresh=False)
            step_record = {"step": step, "epoch": epoch, "lr": lr, "samples_per_s": rate,
                           **{f"loss_{k}": v for k, v in running.items()}}
            if step % 20 == 0 or finished():
                log(step_record)
                logged_step = step
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
        extra = {"epoch": epoch, "step": step, "best_miou": best_miou, "history": history,
                 "optimizer": optimizer.state_dict(), "metrics": metrics,
                 "elapsed_s": elapsed_before + time.perf_counter() - run_start}
        if metrics and metrics["miou"] > best_miou:
            best_miou = metrics["miou"]
            extra["best_miou"] = best_miou
            save_checkpoint(out_dir / "best.pt", model, config, {**extra, "optimizer": None})
        save_checkpoint(out_dir / "last.pt", model, config, extra)
    log_file.close()
    elapsed = time.perf_counter() - run_start
    summary = {"best_miou": best_miou, "steps": step, "samples_seen": samples_seen,
               "samples_per_s": samples_seen / max(elapsed, 1e-9), "elapsed_s": elapsed,
               "first_loss": first_loss, "last_loss": last_loss, "out_dir": str(out_dir)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not quiet:
        print(json.dumps(summary, indent=2))
    return summary


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
