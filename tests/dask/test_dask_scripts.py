"""Flows run as users run them: ``python flow.py`` and ``taskloom run``, against workers started
apart (``dask worker``) that cannot import the script; what the console shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.dask, pytest.mark.slow]

SCRIPT = '''
import importlib.util
import os
import sys

from taskloom import flow, get_run_logger, task
from taskloom_dask import DaskTaskRunner


@task(log_prints=True)
def where(tag):
    """Runs on a dask worker: its pid, and whether that worker could import this script."""
    get_run_logger().info("hello from %s", tag)
    print("printed by", tag)
    return os.getpid(), importlib.util.find_spec("{module}") is not None


@task
def shout(text):
    return text.upper()


@flow{runner}
def script_flow():
    a, b = where.submit("a"), where.submit("b")
    return a.result(), b.result(), shout.submit(shout.submit("dask")).result()


if __name__ == "__main__":
    (pid_a, found_a), (pid_b, found_b), text = script_flow()
    print("driver", os.getpid(), "workers", pid_a, pid_b, "importable", found_a or found_b, text)
'''

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (INFO|WARNING|ERROR) +\| (.+?) - (.*)$")


def _write(tmp_path: Path, runner: str) -> Path:
    script = tmp_path / "flows_elsewhere.py"
    script.write_text(SCRIPT.format(module=script.stem, runner=runner))
    return script


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def _check_output(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    words = done.stdout.split()
    driver, pid_a, pid_b = int(words[1]), int(words[3]), int(words[4])
    assert driver not in (pid_a, pid_b), "task runs must run on the dask workers"
    assert words[6] == "False", "the workers could import the script: the test proves nothing"
    assert words[7] == "DASK"


def _console(stderr: str) -> list[tuple[str, str, str]]:
    return [m.groups() for m in map(LINE.match, stderr.splitlines()) if m]


def test_python_script_on_workers_that_cannot_import_it(process_cluster: Any, tmp_path: Path) -> None:
    script = _write(tmp_path, f"(task_runner=DaskTaskRunner(address={process_cluster.address!r}))")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=_env(), capture_output=True, text=True,
        timeout=120,
    )
    _check_output(done)
    lines = _console(done.stderr)
    prefixes = {prefix for _, prefix, _ in lines}
    assert ("INFO", "taskloom.task_runner.dask", f"Connecting to an existing Dask cluster at {process_cluster.address}") in lines
    hello = [(level, prefix, text) for level, prefix, text in lines if text.startswith("hello from")]
    assert len(hello) == 2, done.stderr
    for level, prefix, _ in hello:
        assert level == "INFO"
        assert re.fullmatch(r"Task run 'where-[0-9a-f]{8}-[01]'", prefix), prefix
    printed = [(level, prefix) for level, prefix, text in lines if text.startswith("printed by")]
    assert sorted(printed) == sorted(hello_prefix[:2] for hello_prefix in hello), done.stderr
    assert any(p.startswith("Flow run '") for p in prefixes)
    assert lines[-1][2] == "Finished in state Completed()"


def test_taskloom_run_with_runner_options_on_the_command_line(
    process_cluster: Any, tmp_path: Path
) -> None:
    script = _write(tmp_path, "")
    taskloom = Path(sys.executable).with_name("taskloom")
    command = (
        [str(taskloom)] if taskloom.exists() else [sys.executable, "-m", "taskloom"]
    ) + [
        "run", f"{script.name}:script_flow",
        "--runner", "dask", "--runner-option", f"address={process_cluster.address}",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = _console(done.stderr)
    assert any(text == f"Connecting to an existing Dask cluster at {process_cluster.address}" for _, _, text in lines), done.stderr
    assert sum(text.startswith("hello from") for _, _, text in lines) == 2


def test_runner_chosen_by_environment(process_cluster: Any, tmp_path: Path) -> None:
    script = _write(tmp_path, "")
    env = _env(TASKLOOM_TASK_RUNNER="dask", TASKLOOM_RUNNERS_DASK_ADDRESS=process_cluster.address)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )
    _check_output(done)
    assert f"Connecting to an existing Dask cluster at {process_cluster.address}" in done.stderr


def test_seed_example_prints_the_prefect_lines(tmp_path: Path) -> None:
    """docs/examples/seed_dask.py, run as a user runs it: a temporary cluster, then gone."""
    example = Path(__file__).parents[2] / "docs" / "examples" / "seed_dask.py"
    source = example.read_text().replace('["AAAA"] * 15', '["AAAA"] * 3').replace('["BBBB"] * 10', '["BBBB"] * 2')
    script = tmp_path / "seed_dask.py"
    script.write_text(source)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=_env(), capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    texts = [(prefix, text) for _, prefix, text in _console(done.stderr)]
    assert texts[0][1].startswith("Created flow run '") and texts[0][1].endswith("for flow 'my-flow3'")
    assert texts[1] == (
        "taskloom.task_runner.dask",
        "Creating a new Dask cluster with `distributed.deploy.local.LocalCluster`",
    )
    assert texts[2][1].startswith("The Dask dashboard is available at http://127.0.0.1:")
    assert texts[-1][1] == "Finished in state Completed('All states completed.')"
    assert sum("Submitted task run 'print_values3-" in text for _, text in texts) == 2


HELPERS = '''
import importlib.util

from taskloom import task


def triple(x):
    return 3 * x


@task
def tripled_where(x):
    """Runs on a dask worker that cannot import this module: it came by value."""
    return triple(x), importlib.util.find_spec("helpers_beside") is not None
'''

FLOW_USING_HELPERS = '''
from helpers_beside import tripled_where
from taskloom import flow


@flow
def uses_helpers():
    print("result", *tripled_where.submit(14).result())
'''


@pytest.mark.parametrize("how", ["python", "taskloom run"])
def test_a_module_beside_the_flow_travels_to_workers_that_cannot_import_it(
    process_cluster: Any, tmp_path: Path, how: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "helpers_beside.py").write_text(HELPERS)
    flow_file = project / "flow_with_helpers.py"
    flow_file.write_text(FLOW_USING_HELPERS + "\nif __name__ == '__main__':\n    uses_helpers()\n")
    env = _env(TASKLOOM_TASK_RUNNER="dask", TASKLOOM_RUNNERS_DASK_ADDRESS=process_cluster.address)
    if how == "python":
        command = [sys.executable, str(flow_file)]
    else:
        command = [sys.executable, "-m", "taskloom", "run", f"{flow_file}:uses_helpers"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ModuleNotFoundError" not in done.stderr
    assert "result 42 False" in done.stdout, done.stdout  # ran, on a worker that cannot import it


LOCK_SCRIPT = """
import threading
from taskloom import flow, task

@task
def give_lock():
    return threading.Lock()

@flow
def locked():
    give_lock.submit().wait()
"""


def test_a_result_that_cannot_be_pickled_is_one_sentence_on_the_console(tmp_path: Path) -> None:
    """``taskloom run --runner dask`` (a temporary cluster): the run fails in one line naming
    the task and the type; neither distributed's traceback nor the worker's reach the console."""
    (tmp_path / "locked.py").write_text(LOCK_SCRIPT)
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", "run", "locked.py:locked", "--runner", "dask"],
        cwd=tmp_path, env=_env(TASKLOOM_HISTORY_ENABLED="false"), capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    failed = [
        text for _, who, text in _console(done.stderr)
        if who.startswith("Task run") and text.startswith("Finished in state Failed(")
    ]
    assert failed == [
        "Finished in state Failed(\"Task 'give_lock' returned a _thread.lock, which could not be "
        "sent back from the worker (TypeError: cannot pickle '_thread.lock' object): return a "
        "value that pickles.\")"
    ], done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "TaskRunOutcome" not in done.stderr, done.stderr[-3000:]
