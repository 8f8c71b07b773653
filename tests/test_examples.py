"""Every example under docs/examples runs; the seed's two examples behave as the tutorial says."""

from __future__ import annotations

import importlib.util
import os
import runpy
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import plugins

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"

pytestmark = pytest.mark.slow

NEEDS = {"dask": "taskloom_dask", "ray": "taskloom_ray"}


class Intervals:
    """Records when each task run started running and when it finished, from its states."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}

    @taskloom.hookimpl
    def taskloom_task_run_state_changed(self, task_run: Any, old: Any, new: Any) -> None:
        with self.lock:
            if new.name == "Running":
                self.started[task_run.name] = new.timestamp
            elif new.is_final():
                self.finished[task_run.name] = new.timestamp

    def spans(self) -> list[tuple[float, float]]:
        return sorted((self.started[n], self.finished[n]) for n in self.started)


def run_seed(name: str, run_logs: Any) -> tuple[list[tuple[float, float]], list[str]]:
    recorder = Intervals()
    plugins.register(recorder, name="interval-recorder")
    try:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    finally:
        plugins.unregister(recorder)
    return recorder.spans(), run_logs.messages()


def test_seed_concurrent_example_interleaves_two_tasks(run_logs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    spans, messages = run_seed("seed_concurrent.py", run_logs)
    assert len(spans) == 2
    (a_start, a_end), (b_start, b_end) = spans
    assert min(a_end, b_end) > max(a_start, b_start), "the two task runs must overlap on threads"
    assert sum(m.startswith("Submitted task run 'print_values-") for m in messages) == 2
    assert messages[-1] == "Finished in state Completed('All states completed.')"
    printed = capsys.readouterr().out
    assert printed.count("AAAA") == 15 and printed.count("BBBB") == 10


def test_seed_sequential_example_runs_one_after_the_other(run_logs: Any) -> None:
    spans, messages = run_seed("seed_sequential.py", run_logs)
    (_, a_end), (b_start, _) = spans
    assert b_start >= a_end, "the sequential runner must finish the first run before the second"
    assert sum(m.startswith("Executing 'print_values-") and m.endswith("immediately...") for m in messages) == 2
    assert messages[-1] == "Finished in state Completed('All states completed.')"


def _examples() -> list[Any]:
    params = []
    for path in sorted(EXAMPLES.glob("*.py")):
        if path.name.startswith("seed_") and path.stem in ("seed_concurrent", "seed_sequential"):
            continue  # run above, in-process, with their timing checked
        marks = []
        for word, module in NEEDS.items():
            if word in path.stem:
                marks.append(getattr(pytest.mark, word))
                if importlib.util.find_spec(module) is None:
                    marks.append(pytest.mark.skip(reason=f"{module} is not installed"))
        params.append(pytest.param(path, id=path.name, marks=marks))
    return params


@pytest.mark.parametrize("path", _examples())
def test_example_runs(path: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    # A private Ray otherwise writes ~/.ray/auth_token, which later `ray start`s pick up.
    env.setdefault("RAY_AUTH_MODE", "disabled")
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stdout}\n{proc.stderr}"
    flow_lines = [line for line in proc.stderr.splitlines() if "| Flow run '" in line and "Finished in state" in line]
    assert flow_lines and "Finished in state Completed(" in flow_lines[-1], proc.stderr
