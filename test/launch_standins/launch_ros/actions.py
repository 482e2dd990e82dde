"""Stand-in for ``launch_ros.actions.Node`` (tests only): the command line launch_ros builds for a
node, its parameter files, and the process (output lines, pseudo-terminal, exit, signals)."""

from __future__ import annotations

import itertools
import os
import pty
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import yaml

from launch import Action, LaunchContext, Substitution, perform_substitutions

_numbers = itertools.count(1)


def _is_substitution(value: Any) -> bool:
    return isinstance(value, Substitution) or (
        isinstance(value, (list, tuple)) and value and all(isinstance(v, (Substitution, str)) for v in value)
        and any(isinstance(v, Substitution) for v in value))


def _evaluate_parameter(context: LaunchContext, name: str, value: Any) -> Any:
    """launch_ros's rule: a substituted value is read as YAML ('' stays an empty string)."""
    if not _is_substitution(value):
        return value
    text = perform_substitutions(context, value) or "''"
    evaluated = yaml.safe_load(text)
    if type(evaluated) not in (bool, int, float, str, bytes):
        raise TypeError(f"Allowed value types are bytes, bool, int, float, str, ... Got {type(evaluated)} "
                        f"for \"{name}\"")
    return evaluated


class Node(Action):
    def __init__(self, *, executable, package=None, name=None, namespace=None, exec_name=None,
                 parameters=None, remappings=None, ros_arguments=None, arguments=None,
                 output="log", emulate_tty=False, on_exit=None, additional_env=None, condition=None,
                 **kwargs) -> None:
        super().__init__(condition=condition)
        self.executable, self.package, self.node_name, self.namespace = executable, package, name, namespace
        self.exec_name = exec_name
        self.parameters = parameters or []
        self.remappings = remappings or []
        self.ros_arguments, self.arguments = ros_arguments, arguments or []
        self.output, self.emulate_tty = output, emulate_tty
        self.on_exit = on_exit if isinstance(on_exit, list) or on_exit is None else [on_exit]
        self.additional_env = additional_env or {}
        self.process: subprocess.Popen | None = None
        self.label = ""
        self._handled = False

    # --- the command line -----------------------------------------------------------------
    def command(self, context: LaunchContext) -> list[str]:
        perform = lambda value: perform_substitutions(context, value)  # noqa: E731
        executable = perform(self.executable)
        if self.package is not None:
            from ament_index_python.packages import get_package_prefix

            executable = str(Path(get_package_prefix(perform(self.package))) / "lib" / perform(self.package)
                             / executable)
        cmd = [executable, *[perform(a) for a in self.arguments]]
        if self.ros_arguments is not None:
            cmd += ["--ros-args", *[perform(a) for a in self.ros_arguments]]
        cmd += ["--ros-args"]
        name = perform(self.node_name) if self.node_name is not None else None
        if name is not None:
            cmd += ["-r", f"__node:={name}"]
        namespace = None
        if self.namespace is not None:
            namespace = perform(self.namespace)
            namespace = namespace if namespace.startswith("/") else "/" + namespace
            cmd += ["-r", f"__ns:={namespace}"]
        full_name = None
        if name is not None and namespace is not None:
            full_name = namespace.rstrip("/") + "/" + name
        for entry in self.parameters:
            if isinstance(entry, dict):
                values = {perform(k): _evaluate_parameter(context, perform(k), v) for k, v in entry.items()}
                with tempfile.NamedTemporaryFile("w", prefix="launch_params_", delete=False) as f:
                    yaml.dump({full_name or "/**": {"ros__parameters": values}}, f, default_flow_style=False)
                cmd += ["--params-file", f.name]
            else:
                cmd += ["--params-file", perform(entry)]
        for source, target in self.remappings:
            cmd += ["-r", f"{perform(source)}:={perform(target)}"]
        return cmd

    # --- the process ------------------------------------------------------------------------
    def execute(self, context: LaunchContext):
        cmd = self.command(context)
        env = dict(context.environment)
        env.update({perform_substitutions(context, k): perform_substitutions(context, v)
                    for k, v in self.additional_env.items()})
        self.label = f"{self.exec_name or Path(cmd[0]).name}-{next(_numbers)}"
        if self.emulate_tty:
            master, slave = pty.openpty()
            self.process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=slave,
                                            stderr=slave)
            os.close(slave)
            stream = os.fdopen(master, "rb", buffering=0)
        else:
            self.process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT)
            stream = self.process.stdout
        context.log(f"[INFO] [{self.label}]: process started with pid [{self.process.pid}]")
        self._reader = threading.Thread(target=self._relay, args=(context, stream), daemon=True)
        self._reader.start()
        context.processes.append(self)
        return None

    def _relay(self, context: LaunchContext, stream) -> None:
        buffer = b""
        while True:
            try:
                chunk = stream.read(4096) if self.emulate_tty else stream.read1(4096)
            except OSError:  # the pseudo-terminal closes with EIO when the process is gone
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self._print(context, line)
        if buffer:
            self._print(context, buffer)

    def _print(self, context: LaunchContext, line: bytes) -> None:
        if self.output in ("screen", "both"):
            text = line.rstrip(b"\r").decode(errors="replace")
            context.log(f"[{self.label}] {text}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send_signal(self, sig) -> None:
        if self.running():
            self.process.send_signal(sig)

    def check_exit(self, context: LaunchContext, handle: bool = True) -> None:
        """Once the process has exited: launch's line for it, then its on_exit actions."""
        if self._handled or self.process is None or self.process.poll() is None:
            return
        self._handled = True
        self._reader.join(timeout=5.0)
        code = self.process.returncode
        if code == 0:
            context.log(f"[INFO] [{self.label}]: process has finished cleanly [pid {self.process.pid}]")
        else:
            context.log(f"[ERROR] [{self.label}]: process has died [pid {self.process.pid}, "
                        f"exit code {code}, cmd '{' '.join(self.process.args)}'].")
        if handle and self.on_exit and context.shutdown_reason is None:
            context.event = self.label
            for action in self.on_exit:
                action.visit(context)
            context.event = None
