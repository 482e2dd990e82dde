"""Child processes in their own process group: start, then stop with SIGINT and, if need be, SIGKILL.

The one way the demo, the tests and the benchmarks run nodes as processes. A node started
by ``python -c`` may spawn helpers; signalling the group reaches them all and never any
other process. SIGINT first, so that rclpy shuts down cleanly (and the test sees its real
exit code); SIGKILL only for a child that hangs.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Sequence


def start_group(
    cmd: Sequence[str], env: dict[str, str] | None = None, log_path: Path | None = None, **popen_kwargs: Any
) -> subprocess.Popen:
    """Start ``cmd`` as the leader of a new process group.

    log_path: stdout and stderr go to this file (closed by :func:`stop_group`); without it
    ``popen_kwargs`` decide (e.g. ``stdout=subprocess.PIPE``).
    """
    log = None
    if log_path is not None:
        log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_group
        popen_kwargs.update(stdout=log, stderr=subprocess.STDOUT)
    try:
        proc = subprocess.Popen(list(cmd), env=env, start_new_session=True, **popen_kwargs)
    except BaseException:
        if log is not None:
            log.close()
        raise
    proc._group_log = log  # type: ignore[attr-defined]
    return proc


def stop_group(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """SIGINT the child's process group, SIGKILL it after ``timeout`` s; returns the exit code."""
    try:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass  # already gone
    finally:
        log = getattr(proc, "_group_log", None)
        if log is not None:
            log.close()
    return proc.returncode
