"""Real short training runs on the tiny fixture set: the loss goes down, checkpoints rebuild
their model, resume continues, the CLI and config overrides work, val is never trained on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from picosam3_train.checkpoint import load_checkpoint, save_checkpoint
from picosam3_train.config import TrainConfig, load_config
from picosam3_train.model import build_model
from picosam3_train.train import train

FIXTURES = Path(__file__).parent / "fixtures" / "train"
REPO = Path(__file__).parent.parent


def fixture_config(tmp_path: Path, **overrides) -> TrainConfig:
    config = TrainConfig(
        data_root=str(FIXTURES),
        train_datasets=["instances_fixture_train.json:images"],
        val_dataset="instances_fixture_val.json:images",
        cache_dir=str(tmp_path / "cache"),
        out_dir=str(tmp_path / "run"),
        batch_size=8,
        lr=3e-3,
        warmup_steps=1,
        threads=1,
        device="cpu",
        eval_every=1,
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def test_twenty_steps_lower_the_loss(tmp_path):
    config = fixture_config(tmp_path, max_steps=20, augment=False, eval_every=10)
    summary = train(config, quiet=True)
    assert summary["steps"] == 20
    assert summary["last_loss"] < 0.7 * summary["first_loss"], summary
    out = Path(config.out_dir)
    for name in ("best.pt", "last.pt", "last.yaml", "config.yaml", "metrics.jsonl", "summary.json"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r["eval"] for r in records if "eval" in r]
    assert evals and all(0.0 <= e["miou"] <= 1.0 and e["instances"] == 2 for e in evals)
    assert any("loss_ground_truth" in r and "loss_area" in r and "loss_teacher" in r for r in records)


def test_checkpoint_rebuilds_its_model(tmp_path):
    torch.manual_seed(0)
    model = build_model("picosam2", width_mult=0.5).eval()
    config = TrainConfig(model="picosam2", width_mult=0.5, epochs=7)
    path = save_checkpoint(tmp_path / "ck.pt", model, config, {"note": "hello"})
    assert path.with_suffix(".yaml").read_text().startswith("model: picosam2")
    rebuilt, loaded_config, extra = load_checkpoint(path)
    assert type(rebuilt) is type(model) and rebuilt.variant == "picosam2" and rebuilt.width_mult == 0.5
    assert loaded_config == config and extra == {"note": "hello"}
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_resume_continues_from_last(tmp_path):
    config = fixture_config(tmp_path, max_steps=2, eval_every=1)
    train(config, quiet=True)  # 1 step per epoch with 8 instances at batch 8
    last = Path(config.out_dir) / "last.pt"
    _, _, extra = load_checkpoint(last)
    assert extra["step"] == 2 and extra["epoch"] == 1 and extra["optimizer"]["state"]
    config.max_steps = 4
    summary = train(config, resume=last, quiet=True)
    assert summary["steps"] == 4
    _, _, extra = load_checkpoint(last)
    assert extra["step"] == 4 and extra["epoch"] == 3
    assert [h["epoch"] for h in extra["history"]] == [0, 1, 2, 3]


def test_config_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: picosam2\nepochs: 3\ntrain_datasets:\n  - a.json:imgs\n")
    config = load_config(path, ["lr=0.01", "augment=false", "train_datasets=x.json:i,y.json:j"])
    assert (config.model, config.epochs, config.lr, config.augment) == ("picosam2", 3, 0.01, False)
    assert config.train_datasets == ["x.json:i", "y.json:j"]
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(None, ["not_a_key=1"])
    shipped = load_config(REPO / "picosam3_train" / "configs" / "picosam3.yaml")
    assert shipped.model == "picosam3" and not any("val2017" in d for d in shipped.train_datasets)


def test_training_on_val2017_is_refused(tmp_path):
    config = fixture_config(tmp_path, max_steps=1,
                            train_datasets=["coco/annotations/instances_val2017_dev.json:coco/val2017"])
    with pytest.raises(ValueError, match="val"):
        train(config, quiet=True)


def test_cli_dispatch():
    run = [sys.executable, "-m", "picosam3_train.cli"]
    help_out = subprocess.run(run + ["--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert help_out.returncode == 0 and "train" in help_out.stdout and "package" in help_out.stdout
    bad = subprocess.run(run + ["frobnicate"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and "unknown subcommand" in bad.stderr
    model = subprocess.run(run + ["model", "--name", "picosam3"], capture_output=True, text=True, cwd=REPO,
                           timeout=120)
    assert model.returncode == 0 and "M parameters" in model.stdout and "MACs" in model.stdout


def test_seed_helper_makes_runs_repeatable():
    from picosam3_train.seed import seed_everything

    seed_everything(5)
    a = (np.random.rand(3), torch.rand(3))
    seed_everything(5)
    b = (np.random.rand(3), torch.rand(3))
    np.testing.assert_array_equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_time_budget_stops_on_time_with_a_decayed_learning_rate(tmp_path):
    config = fixture_config(tmp_path, max_steps=10_000, eval_every=0, time_budget_min=0.05)  # 3 s
    summary = train(config, quiet=True)
    assert 1 <= summary["steps"] < 10_000
    records = [json.loads(line) for line in (Path(config.out_dir) / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if "lr" in r]
    assert lrs and lrs[-1] < config.lr


def test_final_phase_tightens_the_box_jitter(tmp_path):
    config = fixture_config(tmp_path, max_steps=4, eval_every=0, warmup_steps=1, final_phase_start=0.5,
                            final_jitter_mult=0.25, box_jitter=0.2)
    train(config, quiet=True)
    records = [json.loads(line) for line in (Path(config.out_dir) / "metrics.jsonl").read_text().splitlines()]
    switches = [r for r in records if r.get("final_phase")]
    assert len(switches) == 1 and switches[0]["box_jitter"] == pytest.approx(0.05)
    assert 1 <= switches[0]["step"] <= 3
