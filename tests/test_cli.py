"""The taskloom command as a user types it: exit codes, one-line errors, parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskloom.cli import main

FLOW_FILE = """
from taskloom import flow, task

@task
def scale(x: float, factor: float) -> float:
    return x * factor

@flow
def compute(n: int, factor: float = 2.0, tags: list = [], verbose: bool = False) -> float:
    print("RESULT", scale(n, factor), len(tags), verbose)

@flow
def failing() -> None:
    raise RuntimeError("flow body failed")

if __name__ == "__main__":
    raise SystemExit("the __main__ block must not run under taskloom run")
"""


def taskloom(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    return subprocess.run(
        [sys.executable, "-m", "taskloom", *args], capture_output=True, text=True, cwd=cwd,
        env={**base, **(env or {})}, timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(FLOW_FILE)
    return tmp_path


def test_run_converts_parameters_by_type_hints(project: Path) -> None:
    proc = taskloom("run", "flows.py:compute", "--param", "n=3", "--param", "factor=1.5",
                    "--param", 'tags=["a","b"]', "--param", "verbose=true", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "RESULT 4.5 2 True" in proc.stdout
    assert "Finished in state Completed()" in proc.stderr


def test_failed_flow_exits_one(project: Path) -> None:
    proc = taskloom("run", "flows.py:failing", cwd=project)
    assert proc.returncode == 1
    assert "Finished in state Failed('Flow run encountered an exception. RuntimeError: flow body failed')" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "flows.py:compute", "--param", "n=abc"], "taskloom: error: Parameter 'n' of flow 'compute' must be int, got 'abc'.\n"),
        (["run", "flows.py:compute", "--param", "m=1"], "taskloom: error: Flow 'compute' has no parameter 'm'. Its parameters: n, factor, tags, verbose.\n"),
        (["run", "flows.py:compute"], "taskloom: error: Flow 'compute' got parameters that do not fit its signature compute(n, factor=2.0, tags=[], verbose=False): missing a required argument: 'n'.\n"),
        (["run", "flows.py:nope"], "taskloom: error: flows.py has no flow named 'nope'. Flows in it: compute, failing.\n"),
        (["run", "missing.py:compute"], "taskloom: error: No such file: missing.py.\n"),
        (["run", "flows.py"], "taskloom: error: Name the flow as FILE:FLOW (for example flows.py:my_flow), got 'flows.py'.\n"),
        (["run", "flows.py:compute", "--runner", "nope"], "taskloom: error: Unknown task runner 'nope'. Installed task runners: "),
        (["run", "flows.py:compute", "--param", "n=1", "--runner", "threads", "--runner-option", "max_workers=many"], "taskloom: error: Option 'max_workers' of runner 'threads' (cli) must be int, got 'many'.\n"),
        (["run", "flows.py:compute", "--runner-option", "x=1"], "taskloom: error: --runner-option needs --runner NAME to say which runner it is for.\n"),
    ],
)
def test_bad_input_is_one_line_and_exit_two(project: Path, args: list[str], message: str) -> None:
    proc = taskloom(*args, cwd=project)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr


def test_runner_option_reaches_the_runner(project: Path) -> None:
    (project / "which.py").write_text(
        "from taskloom import flow\nfrom taskloom.context import _flow_run_driver\n"
        "@flow\ndef which():\n    r = _flow_run_driver.get().runner\n    print('RUNNER', r.name, r.max_workers)\n"
    )
    proc = taskloom("run", "which.py:which", "--runner", "threads", "--runner-option", "max_workers=3", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "RUNNER concurrent 3" in proc.stdout


def test_config_shows_values_and_sources(project: Path) -> None:
    (project / "taskloom.toml").write_text("task_runner = 'sequential'\n[runners.threads]\nmax_workers = 4\n")
    proc = taskloom("config", cwd=project, env={"TASKLOOM_LOGGING_LEVEL": "DEBUG"})
    assert proc.returncode == 0, proc.stderr
    lines = {line.split("=")[0].strip(): line for line in proc.stdout.splitlines()}
    assert lines["task_runner"].endswith(f'"sequential"  ({project / "taskloom.toml"})')
    assert lines["logging.level"].endswith('"DEBUG"  (env TASKLOOM_LOGGING_LEVEL)')
    assert lines["results.persist"].endswith("false  (default)")
    assert lines["runners.threads.max_workers"].endswith(f"4  ({project / 'taskloom.toml'})")


def test_config_shows_options_from_the_environment_typed_as_from_the_file(project: Path) -> None:
    (project / "taskloom.toml").write_text("[sinks.json]\npath = 'runs.jsonl'\n")
    env = {"TASKLOOM_RUNNERS_THREADS_MAX_WORKERS": "3", "TASKLOOM_STORAGES_FSSPEC_STORAGE_OPTIONS": '{"anon": true}'}
    proc = taskloom("config", cwd=project, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split("=")[0].strip(): line for line in proc.stdout.splitlines()}
    assert lines["runners.threads.max_workers"].endswith("= 3  (env TASKLOOM_RUNNERS_THREADS_MAX_WORKERS)")
    assert lines["storages.fsspec.storage_options"].endswith('= {"anon": true}  (env TASKLOOM_STORAGES_FSSPEC_STORAGE_OPTIONS)')
    assert lines["sinks.json.path"].endswith(f'= "runs.jsonl"  ({project / "taskloom.toml"})')


def test_plugins_into_a_closed_pipe_ends_quietly(project: Path) -> None:
    # `taskloom plugins | head -1`: the reader is gone before taskloom writes.
    base = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "plugins"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=project, env=base,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == "", err


def test_bad_config_file_is_one_line(project: Path) -> None:
    (project / "taskloom.toml").write_text("colour = true\n")
    proc = taskloom("config", cwd=project)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"taskloom: error: Unknown setting 'colour' in {project / 'taskloom.toml'}.")


def test_version_lists_plugins(project: Path) -> None:
    proc = taskloom("version", cwd=project)
    assert proc.returncode == 0
    assert proc.stdout.startswith("taskloom 0.1.0\n")
    assert "taskloom-local 0.1.0" in proc.stdout


def test_plugins_lists_the_hooks_each_plugin_implements(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    found = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert found["history"]["hooks"] == [
        "add_commands", "add_settings", "flow_run_finished", "flow_run_started",
        "task_run_created", "task_run_state_changed",
    ]
    assert found["local"]["provides"]["task_runner"] and "register_task_runners" in found["local"]["hooks"]
