"""`import taskloom` stays light: no plugin, no cluster library, no attrs or pluggy until used."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("dask", "distributed", "ray", "loguru", "taskloom_local", "taskloom_loguru", "taskloom_dask", "taskloom_ray")


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout
    return {name.split(".")[0] for name in out.split()}


def test_import_taskloom_imports_no_plugin_nor_heavy_library() -> None:
    loaded = modules_after("from taskloom import flow, task")
    assert not loaded & set(HEAVY)
    assert "attr" not in loaded and "pluggy" not in loaded, "states and plugins load on first use"


def test_a_sequential_flow_imports_no_cluster_library() -> None:
    loaded = modules_after(
        "from taskloom import flow, task\n"
        "@task\ndef one():\n    return 1\n"
        "@flow(task_runner='sequential')\ndef f():\n    return one.submit().result()\n"
        "assert f() == 1\n"
    )
    # Plugin packages load (their entry points name them), their engines must not.
    assert not loaded & {"dask", "distributed", "ray"}


def test_runner_classes_come_from_the_registry() -> None:
    from taskloom.runners import ConcurrentTaskRunner, SequentialTaskRunner, ThreadPoolTaskRunner

    assert SequentialTaskRunner.__module__ == "taskloom_local.runners"
    assert ThreadPoolTaskRunner is ConcurrentTaskRunner


def test_missing_runner_class_names_the_extra() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from taskloom.runners import NoSuchTaskRunner"],
        capture_output=True, text=True,
    )
    assert "No installed plugin provides taskloom.runners.NoSuchTaskRunner." in proc.stderr
