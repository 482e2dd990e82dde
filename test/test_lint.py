"""ruff (configured in pyproject.toml) finds nothing in the project's Python code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
LINTED = ["picosam3_ros", "picosam3_train", "test", "launch", "bench", "tools", "setup.py"]


def test_ruff_check_is_clean():
    try:
        import ruff  # noqa: F401
        command = [sys.executable, "-m", "ruff"]
    except ImportError:
        if shutil.which("ruff") is None:
            pytest.fail("ruff is not installed: pip install -r requirements/test.txt (make bootstrap does)")
        command = ["ruff"]
    paths = [p for p in LINTED if (REPO_ROOT / p).exists()]
    result = subprocess.run(
        [*command, "check", "--no-cache", "--output-format", "concise", *paths],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"ruff check {' '.join(paths)}:\n{result.stdout}{result.stderr}"
