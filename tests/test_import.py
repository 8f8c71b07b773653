"""`import taskloom` stays light: no plugin, no cluster library, no attrs or pluggy until used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_the_package_lists_each_public_name_where_it_loads_from() -> None:
    """`__all__` is literal for type checkers, the lazy names are imported under
    TYPE_CHECKING for them too, and `_LAZY` says where each loads from: the three agree."""
    import ast

    import taskloom

    tree = ast.parse(Path(taskloom.__file__).read_text())
    typed = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for stmt in node.body
        if isinstance(stmt, ast.ImportFrom)
        for alias in stmt.names
    }
    lazy = set(taskloom._LAZY)
    assert typed == lazy
    assert lazy <= set(taskloom.__all__)
    code = "import taskloom\nfor name in taskloom.__all__:\n    getattr(taskloom, name)"
    subprocess.run([sys.executable, "-c", code], check=True)  # a fresh process: each loads


def test_prefect_import_paths_of_task_helpers() -> None:
    # Prefect 2 and 3: `from prefect.tasks import task_input_hash, exponential_backoff`.
    import taskloom
    from taskloom.caching import task_input_hash as in_caching
    from taskloom.tasks import exponential_backoff, task_input_hash

    assert task_input_hash is in_caching and task_input_hash is taskloom.task_input_hash
    assert exponential_backoff(backoff_factor=2)(3) == [2, 4, 8]
