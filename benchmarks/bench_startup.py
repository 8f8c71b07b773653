"""Start-up and memory: `import taskloom`, `python flow.py` to the first task, 100,000 tasks.

Each is measured in a fresh interpreter, beside the same thing without taskloom.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

FIRST_TASK = """
import time, sys
from taskloom import flow, task

@task
def first():
    sys.stdout.write(f"{time.time()}\\n"); sys.stdout.flush()

@flow(task_runner="concurrent")
def start():
    first()

start()
"""

MANY_TASKS = """
import os, sys, time
os.environ["TASKLOOM_LOGGING_LEVEL"] = sys.argv[2]
from taskloom import flow, task

@task
def noop(i):
    return None

@flow(task_runner="concurrent")
def many(n):
    batch = []
    for i in range(n):
        batch.append(noop.submit(i))
        if len(batch) == 1000:
            for f in batch:
                f.wait()
            batch = []

many(1000)
started = time.perf_counter()
many(int(sys.argv[1]))
print((time.perf_counter() - started) / int(sys.argv[1]) * 1e6)
# VmHWM, not ru_maxrss: the latter is inherited from the parent process across fork.
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
"""

BASELINE_MEMORY = """
from concurrent.futures import ThreadPoolExecutor
import taskloom
print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
"""


# Bytecode caches allowed, as on a user's machine, and warmed by a first run.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("TASKLOOM_")}


def _median_run(args: list[str], repeat: int = 7) -> float:
    subprocess.run(args, check=True, capture_output=True, env=ENV)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, env=ENV)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def import_time() -> dict[str, Any]:
    bare = _median_run([sys.executable, "-c", "pass"])
    ours = _median_run([sys.executable, "-c", "from taskloom import flow, task"])
    return {"case": "import taskloom (from taskloom import flow, task)", "taskloom_ms": (ours - bare) * 1e3,
            "raw_ms": 0.0, "note": f"interpreter start {bare * 1e3:.0f} ms not counted"}


def first_task() -> dict[str, Any]:
    samples = []
    subprocess.run([sys.executable, "-c", FIRST_TASK], check=True, capture_output=True, env=ENV)
    for _ in range(5):
        started = time.time()
        out = subprocess.run([sys.executable, "-c", FIRST_TASK], check=True, capture_output=True, text=True, env=ENV).stdout
        samples.append(float(out.strip().splitlines()[0]) - started)
    bare = _median_run([sys.executable, "-c", "pass"], repeat=5)
    return {"case": "python flow.py to the first task starting", "taskloom_ms": statistics.median(samples) * 1e3,
            "raw_ms": bare * 1e3, "note": "raw: an empty interpreter"}


def _many(n: int, level: str) -> tuple[float, float]:
    """µs per task and peak MiB of ``n`` no-op tasks at ``level``, the console written to a file
    (as when a scheduler captures a flow's output), history as installed."""
    with tempfile.TemporaryFile() as console:
        out = subprocess.run(
            [sys.executable, "-c", MANY_TASKS, str(n), level], check=True, stdout=subprocess.PIPE,
            stderr=console, text=True, env=ENV,
        ).stdout.split()
    return float(out[-2]), int(out[-1]) / 1024


def many_tasks(n: int = 100_000) -> list[dict[str, Any]]:
    quiet_us, quiet_mib = min(_many(n, "WARNING") for _ in range(2))
    info_us, info_mib = min(_many(n, "INFO") for _ in range(2))
    base = subprocess.run([sys.executable, "-c", BASELINE_MEMORY], check=True, capture_output=True, text=True, env=ENV).stdout
    return [
        {"case": f"peak memory, {n:,} no-op tasks on threads (WARNING)", "taskloom_mib": quiet_mib,
         "raw_mib": int(base.strip()) / 1024, "note": "raw: the same interpreter after import, no tasks"},
        {"case": f"peak memory, {n:,} no-op tasks on threads at INFO (the default)", "taskloom_mib": info_mib,
         "raw_mib": quiet_mib, "note": "baseline: the same at WARNING"},
        {"case": f"time per task, {n:,} no-op tasks on threads at INFO (the default)", "taskloom_us": info_us,
         "raw_us": quiet_us, "note": f"baseline: the same at WARNING; ratio {info_us / quiet_us:.2f} (goal: at most 2)"},
    ]


def run() -> list[dict[str, Any]]:
    return [import_time(), first_task(), *many_tasks()]


if __name__ == "__main__":
    for row in run():
        print(row)
