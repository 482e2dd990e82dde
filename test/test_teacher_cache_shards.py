"""Sharded teacher caching: shards written by 2 torchrun ranks (or a job array) read as one
cache equal, value for value, to the single-process cache; a killed shard resumes after its
last commit; shards of different work are not merged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_evaluate import make_coco_fixture  # noqa: E402

from picosam3_train.teachers import build_teacher  # noqa: E402
from picosam3_train.teachers.cache import (  # noqa: E402
    PROGRESS,
    build_cache,
    load_cache,
    merge_shards,
    shard_directory,
)

REPO = Path(__file__).parent.parent


def onnx_teacher_file(path: Path, seed: int) -> Path:
    from picosam3_train.export import export_onnx
    from picosam3_train.model import build_model

    torch.manual_seed(seed)
    return export_onnx(build_model("picosam2", width_mult=0.25).eval(), path, verbose=False).path


def cache_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "picosam3_train.cli", "cache-teacher", "--teacher", "onnx", *args]


def assert_same_cache(a, b) -> None:
    np.testing.assert_array_equal(a.ann_ids, b.ann_ids)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(np.asarray(a.soft_masks), np.asarray(b.soft_masks))


def test_two_ranks_write_one_cache_equal_to_the_single_process_cache(tmp_path):
    from picosam3_train.data import load_teacher_caches

    ann, images = make_coco_fixture(tmp_path / "coco", n_images=5)
    weights = onnx_teacher_file(tmp_path / "teacher.onnx", seed=1)
    single = build_cache(build_teacher("onnx", weights), ann, images, tmp_path / "single")
    assert len(single) == 10

    out = tmp_path / "sharded"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = cache_command("--weights", str(weights), "--dataset", f"{ann}:{images}", "--out", str(out))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *args[1:]]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sharded = load_cache(out)
    assert sharded.meta["counts"] == [4, 6] and sharded.meta["count"] == len(single)  # disjoint, balanced
    assert sharded.meta["weights_sha256"] == single.meta["weights_sha256"]
    assert sharded.meta["skipped"]["crowd"] == single.meta["skipped"]["crowd"] == 5
    assert_same_cache(sharded, single)
    assert sharded.probability(int(single.ann_ids[7])).shape == (96, 96)
    # the trainer reads the sharded cache like any other
    entry = load_teacher_caches([out], [ann])[ann.name]
    np.testing.assert_array_equal(entry.soft_masks[7], single.soft_masks[7])

    # a shard made with other weights is refused at the merge
    other = onnx_teacher_file(tmp_path / "other.onnx", seed=2)
    build_cache(build_teacher("onnx", other), ann, images, tmp_path / "mixed", shard=(0, 2))
    build_cache(build_teacher("onnx", weights), ann, images, tmp_path / "mixed", shard=(1, 2))
    assert not (tmp_path / "mixed" / "manifest.json").exists()
    with pytest.raises(ValueError, match="weights_sha256"):
        merge_shards(tmp_path / "mixed")


def test_a_killed_shard_resumes_after_its_last_commit(tmp_path):
    ann, images = make_coco_fixture(tmp_path / "coco", n_images=300)
    weights = onnx_teacher_file(tmp_path / "teacher.onnx", seed=1)
    single = build_cache(build_teacher("onnx", weights), ann, images, tmp_path / "single")

    out = tmp_path / "sharded"
    args = cache_command("--weights", str(weights), "--dataset", f"{ann}:{images}", "--out", str(out),
                         "--shard", "1/2", "--commit-every", "1")
    shard = shard_directory(out, 1, 2)
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    committed = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            committed = json.loads((shard / PROGRESS).read_text())["rows"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            committed = 0
        if committed >= 5:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the shard finished before it could be killed"
    assert not (shard / "meta.json").exists()

    resumed = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    meta = json.loads((shard / "meta.json").read_text())
    assert meta["resumed_at"] >= committed >= 5  # continued, not started again
    assert not (shard / PROGRESS).exists() and not (out / "manifest.json").exists()

    build_cache(build_teacher("onnx", weights), ann, images, out, shard=(0, 2))  # finishes last: merges
    assert_same_cache(load_cache(out), single)
