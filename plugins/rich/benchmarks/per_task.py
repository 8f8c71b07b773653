"""Per-task cost of taskloom-rich: 2,000 no-op tasks on the default ``concurrent`` runner.

    python plugins/rich/benchmarks/per_task.py [--tasks 2000] [--repeats 5]

Three variants, each in fresh interpreters, taken in turn so that a busy machine slows them
alike:

- ``none``: no observer plugin (``TASKLOOM_DISABLE_PLUGINS=rich``);
- ``empty``: instead, an observer whose four hooks do nothing: what the core itself does
  more once anything watches task runs (it makes and hands over every state change);
- ``rich``: taskloom-rich.

Each runs with standard error on a pipe (the display is off) and on a pseudo-terminal (the
display is on), at log level INFO (three log lines per task reach the terminal) and WARNING
(only the display draws). Each interpreter reports its best of three flow runs; the table
shows the median over ``--repeats`` interpreters, in microseconds per task (a whole flow run,
divided by its tasks). Other observer plugins that may be installed are switched off.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from taskloom import hookimpl

OTHER_OBSERVERS = "history,otel,csvlog"
VARIANTS = ("none", "empty", "rich")


class _EmptyObserver:
    @hookimpl
    def taskloom_flow_run_started(self, flow_run: Any, task_runner: Any) -> None:
        pass

    @hookimpl
    def taskloom_flow_run_finished(self, flow_run: Any, state: Any) -> None:
        pass

    @hookimpl
    def taskloom_task_run_created(self, task_run: Any, parameters: Any) -> None:
        pass

    @hookimpl
    def taskloom_task_run_state_changed(self, task_run: Any, old: Any, new: Any) -> None:
        pass


def _child(tasks: int, variant: str) -> None:
    from taskloom import flow, plugins, task

    if variant == "empty":
        plugins.register(_EmptyObserver(), name="empty-observer")

    @task
    def noop(x: int) -> int:
        return x

    @flow
    def many(n: int) -> None:
        for f in noop.map(range(n)):
            f.wait()

    many(50)  # warm up: plugins, settings, logging, the display's imports
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        many(tasks)
        timings.append((time.perf_counter() - started) / tasks * 1e6)
    sys.stdout.write(json.dumps(min(timings)) + "\n")
    sys.stdout.flush()


def _drain(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


def _run_case(tasks: int, terminal: bool, level: str, variant: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    env["TASKLOOM_LOGGING_LEVEL"] = level
    env["TASKLOOM_DISABLE_PLUGINS"] = OTHER_OBSERVERS + ("" if variant == "rich" else ",rich")
    env.setdefault("TERM", "xterm-256color")
    command = [sys.executable, __file__, "--child", variant, "--tasks", str(tasks)]
    if not terminal:
        proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True, text=True)
        return float(json.loads(proc.stdout.strip().splitlines()[-1]))
    master, slave = os.openpty()
    reader = threading.Thread(target=_drain, args=(master,), daemon=True)
    reader.start()
    try:
        proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=slave, check=True, text=True)
    finally:
        os.close(slave)
        reader.join(timeout=5)
        os.close(master)
    return float(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=VARIANTS)
    args = parser.parse_args()
    if args.child:
        _child(args.tasks, args.child)
        return
    print(f"{args.tasks} no-op tasks on 'concurrent', µs per task (median of {args.repeats} interpreters)")
    print(f"{'stderr':<9} {'log level':<9} {'none':>8} {'empty':>8} {'rich':>8} {'rich-empty':>11}")
    for terminal in (False, True):
        for level in ("INFO", "WARNING"):
            runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for _ in range(args.repeats):
                for variant in VARIANTS:
                    runs[variant].append(_run_case(args.tasks, terminal, level, variant))
            none, empty, rich = (statistics.median(runs[v]) for v in VARIANTS)
            where = "terminal" if terminal else "pipe"
            print(f"{where:<9} {level:<9} {none:>8.1f} {empty:>8.1f} {rich:>8.1f} {rich - empty:>+11.1f}", flush=True)


if __name__ == "__main__":
    main()
