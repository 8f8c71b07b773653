"""Running a script under a real pseudo-terminal, and reading what it drew."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "progress_script.py"

_CSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")
_ROW = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s+[━╸╺─\-]+\s+(?P<done>\d+)/(?P<total>\d+)(?:\s+(?P<failed>\d+) failed)?\s*$")

# Variables that change how rich or taskloom decide about the terminal.
_TERMINAL_VARS = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES", "TERM")


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TASKLOOM_") and k not in _TERMINAL_VARS
    }
    env["TERM"] = "xterm-256color"
    env["TASKLOOM_RESULTS_PATH"] = str(tmp_path / "results")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_on_terminal(
    env: Mapping[str, str], cwd: Path, *, pipe_stdout: bool = False, columns: int = 120, timeout: float = 120
) -> tuple[int, str, str]:
    """Run SCRIPT with stderr (and stdout, unless ``pipe_stdout``) on a new pseudo-terminal.

    Returns the exit code, what reached the terminal and what reached the stdout pipe.
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if pipe_stdout else slave,
        stderr=slave,
        cwd=cwd,
        env=dict(env),
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        out = proc.stdout.read().decode() if proc.stdout is not None else ""
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace"), out


def plain_lines(terminal_text: str) -> list[str]:
    """The text without escape sequences, split into lines as a reader would see them."""
    text = _CSI.sub("", terminal_text).replace("\r\n", "\n")
    return [part for line in text.split("\n") for part in line.split("\r")]


def bar_rows(lines: list[str]) -> list[tuple[str, int, int, int]]:
    """Every ``name bar done/total [N failed]`` row drawn, in order: ``(name, done, total, failed)``."""
    rows = []
    for line in lines:
        match = _ROW.match(line.strip())
        if match:
            rows.append(
                (match["name"], int(match["done"]), int(match["total"]), int(match["failed"] or 0))
            )
    return rows


def last_frame(lines: list[str]) -> dict[str, tuple[int, int, int]]:
    """The last row drawn for each task name: ``{name: (done, total, failed)}``."""
    return {name: (done, total, failed) for name, done, total, failed in bar_rows(lines)}
