"""Sony's ``imxconv-pt``: MCTQ-format ONNX -> ``packerOut.zip`` for the IMX500.

The converter lives in its own venv (``.venv-imx500``, from
``requirements/venv-imx500.txt``): it pins mct-quantizers 1.6, onnx 1.17 and
onnxruntime 1.21, which clash with the training venv. It also needs Java (the
SDSP back end). We run it as a subprocess and read its memory report
(``<stem>_MemoryReport.json``): the network must fit the IMX500's 8 MB.

The Pi-side step (``imx500-package`` -> ``network.rpk``) is in docs/imx500_packaging.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "PICOSAM3_IMXCONV"


class ConversionError(RuntimeError):
    """imxconv-pt is unavailable or failed; the message says why."""


@dataclass
class ConversionResult:
    packer_zip: Path
    memory_report: dict  # the converter's "Memory Report" block
    fits: bool
    log_tail: str

    def describe(self) -> str:
        r = self.memory_report
        return (
            f"{self.packer_zip} ({self.packer_zip.stat().st_size / 1e6:.2f} MB): memory usage "
            f"{r.get('Memory Usage')} of {r.get('Total Memory Available On Chip')} "
            f"({r.get('Memory Utilization')}; runtime {r.get('Runtime Memory Physical Size')}, "
            f"model {r.get('Model Memory Physical Size')}); fits in chip: {self.fits}"
        )


def find_imxconv() -> Path | None:
    """$PICOSAM3_IMXCONV, else the repo's .venv-imx500/bin/imxconv-pt, else imxconv-pt on PATH."""
    candidates = [
        os.environ.get(ENV_VAR, ""),
        str(REPO_ROOT / ".venv-imx500" / "bin" / "imxconv-pt"),
        shutil.which("imxconv-pt") or "",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def convert(mctq_onnx: str | Path, out_dir: str | Path, timeout_s: float = 1800) -> ConversionResult:
    """Run ``imxconv-pt -i MODEL -o OUT --overwrite-output``; return packerOut.zip and the memory report.

    Raises ConversionError with the reason (no converter, no Java, converter error,
    no packerOut.zip)."""
    mctq_onnx, out_dir = Path(mctq_onnx), Path(out_dir)
    exe = find_imxconv()
    if exe is None:
        raise ConversionError(
            "imxconv-pt not found: create its venv (python3 -m venv .venv-imx500 && "
            ".venv-imx500/bin/pip install -r requirements/venv-imx500.txt, or tools/bootstrap.sh) "
            f"or set {ENV_VAR}"
        )
    if shutil.which("java") is None:
        raise ConversionError("imxconv-pt needs a Java runtime (e.g. apt install default-jre-headless)")
    if not mctq_onnx.is_file():
        raise ConversionError(f"no MCTQ ONNX at {mctq_onnx}")
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [str(exe), "-i", str(mctq_onnx), "-o", str(out_dir), "--overwrite-output"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"imxconv-pt timed out after {timeout_s:.0f} s") from exc
    log = (proc.stdout or "") + (proc.stderr or "")
    tail = "\n".join(log.strip().splitlines()[-15:])
    packer = out_dir / "packerOut.zip"
    if proc.returncode != 0 or not packer.is_file():
        raise ConversionError(f"imxconv-pt exited {proc.returncode} without packerOut.zip:\n{tail}")
    report_path = out_dir / f"{mctq_onnx.stem}_MemoryReport.json"
    memory: dict = {}
    if report_path.is_file():
        memory = json.loads(report_path.read_text()).get("Memory Report", {})
    fits = bool(memory.get("Fit In Chip", False))
    return ConversionResult(packer, memory, fits, tail)
