"""Per-ROI latency of the fp32 and INT8 ONNX models in ONNX Runtime, against the compute floor.

    python bench/bench_model_latency.py [--models picosam3_ros/models] [--repeats 30]

For batch 1/4/8 and 1/2 intra-op threads it prints the median time per ROI, and the
compute floor: the model's multiply-accumulates (2 FLOPs each) over the CPU's
measured float32 peak (a big numpy matmul with the same thread count). The ratio
says how far ONNX Runtime is from what the arithmetic alone would cost. MACs come
from ``picosam3_train.model.count_macs`` for the card's model, or are counted from
the ONNX graph's Conv nodes (works for any model).

Without a model folder (no card), a freshly exported random-init picosam3 is used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from picosam3_ros.core.crop import MODEL_INPUT_SIZE  # noqa: E402
from picosam3_ros.core.onnx_session import cpu_session  # noqa: E402


def conv_macs_from_onnx(path: Path, size: int = MODEL_INPUT_SIZE) -> int:
    """Multiply-accumulates of the Conv nodes of an fp32 ONNX graph at batch 1 (shape inference)."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    graph = model.graph
    graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    inferred = shape_inference.infer_shapes(model).graph
    shapes = {}
    for value in list(inferred.value_info) + list(inferred.output) + list(inferred.input):
        shapes[value.name] = [d.dim_value for d in value.type.tensor_type.shape.dim]
    weights = {init.name: list(init.dims) for init in graph.initializer}
    macs = 0
    for node in inferred.node:
        if node.op_type != "Conv" or node.output[0] not in shapes or node.input[1] not in weights:
            continue
        out = shapes[node.output[0]]
        w = weights[node.input[1]]  # (C_out, C_in/groups, kH, kW)
        macs += int(np.prod(out[1:])) * int(np.prod(w[1:]))
    return macs


def measure_peak_gflops(threads: int, n: int = 1536, repeats: int = 5) -> float:
    """float32 matmul GFLOP/s with ``threads`` BLAS threads, in a fresh process (BLAS reads its
    thread count at start-up)."""
    code = (
        "import numpy as np, time\n"
        f"n={n}\n"
        "a=np.random.rand(n,n).astype(np.float32); b=np.random.rand(n,n).astype(np.float32); a@b\n"
        "best=1e9\n"
        f"for _ in range({repeats}):\n"
        "    t=time.perf_counter(); a@b; best=min(best, time.perf_counter()-t)\n"
        "print(2*n**3/best/1e9)\n"
    )
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        OPENBLAS_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def time_session(path: Path, batch: int, threads: int, repeats: int, input_name: str | None = None) -> float:
    """Median seconds per ROI of ``repeats`` runs of one batch."""
    session = cpu_session(path, threads)  # the node's own session settings
    name = input_name or session.get_inputs()[0].name
    size = MODEL_INPUT_SIZE
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    for _ in range(3):
        session.run(None, {name: x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - start)
    return statistics.median(times) / batch


def fresh_models(tmp: Path) -> dict[str, Path]:
    """fp32 export of a random-init picosam3 (INT8 needs a trained model; skipped here)."""
    from picosam3_train.export import export_onnx
    from picosam3_train.model import build_model

    path = export_onnx(build_model("picosam3"), tmp / "picosam3_random_fp32.onnx", verbose=False).path
    return {"fp32 (random init)": path}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default=str(REPO_ROOT / "picosam3_ros" / "models"),
        help="folder with model_card.json (fp32 and int8 files)",
    )
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)

    from picosam3_ros.core.model_card import ModelCardError, load_model_card

    tmp = Path(tempfile.mkdtemp(prefix="bench_latency_"))
    try:
        card = load_model_card(args.models)
        models = {role: card.path(role) for role in ("fp32", "int8") if role in card.files}
        source = f"model card {card.directory}"
    except ModelCardError as exc:
        print(f"no model card ({exc}); using a freshly exported random-init picosam3")
        models, source = fresh_models(tmp), "random-init picosam3"
    fp32_path = next(iter(models.values()))
    macs = conv_macs_from_onnx(fp32_path)
    batches = [int(b) for b in args.batches.split(",")]
    threads_list = [int(t) for t in args.threads.split(",")]
    peaks = {t: measure_peak_gflops(t) for t in threads_list}

    print(f"\nPer-ROI latency, ONNX Runtime CPU ({source}); {macs / 1e6:.1f} M MACs per ROI at 96x96")
    print(
        "CPU float32 peak (numpy matmul): "
        + ", ".join(f"{t} thread(s) {peaks[t]:.1f} GFLOP/s" for t in threads_list)
    )
    header = f"| {'model':<22} | threads | batch | ms/ROI | floor ms/ROI | x floor |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, path in models.items():
        for threads in threads_list:
            floor_ms = 2 * macs / (peaks[threads] * 1e9) * 1e3
            for batch in batches:
                ms = time_session(path, batch, threads, args.repeats) * 1e3
                print(
                    f"| {name:<22} | {threads:>7} | {batch:>5} | {ms:>6.2f} | {floor_ms:>12.2f} | "
                    f"{ms / floor_ms:>7.1f} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
