"""How every node of this package runs: spin until SIGINT/SIGTERM, stop its threads, then shut down.

rclpy's own signal handler invalidates the context the moment Ctrl-C arrives, while
the node's threads (camera, worker, HTTP) may still be publishing: they die with
"publisher's context is invalid". Here the signal only sets a flag; the executor
returns, the node stops its threads (``shutdown()`` when it has one), and only then
is the node destroyed and the context shut down. No traceback, exit code 0.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


def run_node(
    make_node: Callable[[], Node],
    name: str,
    startup_errors: tuple[type[BaseException], ...] = (),
    args: list[str] | None = None,
) -> int:
    """Create the node, spin it until a signal, stop it cleanly; 2 when it cannot start."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    node = None
    code = 0
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
        executor.remove_node(node)
        executor.shutdown(timeout_sec=1.0)
    except startup_errors as exc:
        print(f"[{name}] cannot start: {exc}", file=sys.stderr, flush=True)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            stop_threads = getattr(node, "shutdown", None)
            if callable(stop_threads):
                stop_threads()
            node.destroy_node()
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
