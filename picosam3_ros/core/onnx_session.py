"""The one way this project opens an ONNX model on the CPU (node, emulator, evaluator, teachers, bench)."""

from __future__ import annotations

from pathlib import Path


def cpu_session(path: str | Path, threads: int = 0):
    """An ``onnxruntime.InferenceSession`` on the CPU execution provider.

    ``threads`` > 0 fixes the intra-op pool size (0 = ONNX Runtime's default). Pool
    threads do not busy-wait between runs: spinning threads steal the cores that the
    executor (image deserialisation) and the camera need; on a loaded 2-core machine a
    batch of 4 crops took ~2x longer with spinning on (bench/bench_node.py, README).
    Raises whatever ONNX Runtime raises for a missing or corrupt file.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
