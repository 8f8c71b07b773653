"""``taskloom new-plugin``: the package it writes is complete, selectable by name and green.

The scaffolded package is not pip-installed into the test environment: its folder goes on
sys.path beside a hand-written dist-info that carries the entry point from its own
pyproject.toml, which is what pip would install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskloom import flow, plugins, task
from taskloom.cli import main
from taskloom.results import get_result_storage


def scaffold(tmp_path: Path, name: str, kind: str) -> Path:
    target = tmp_path / f"taskloom-{name}"
    assert main(["new-plugin", name, "--kind", kind, "--dir", str(target)]) == 0
    return target


def install_dist_info(site: Path, package: Path) -> None:
    """Write the dist-info pip would write for ``package``: its name and its entry points."""
    with (package / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["taskloom"].items())
    (info / "entry_points.txt").write_text(f"[taskloom]\n{lines}")


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None) -> Iterator[tuple[Path, Path]]:
    """A scaffolded runner package importable in this process, and its site folder."""
    package = scaffold(tmp_path, "scaffolded", "runner")
    site = tmp_path / "site"
    install_dist_info(site, package)
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    yield package, site
    for module in [m for m in sys.modules if m == "taskloom_scaffolded" or m.startswith("taskloom_scaffolded.")]:
        del sys.modules[module]


def test_runner_package_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    package = scaffold(tmp_path, "my-runner", "runner")
    files = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "pyproject.toml",
        "taskloom_my_runner/__init__.py",
        "taskloom_my_runner/plugin.py",
        "taskloom_my_runner/runner.py",
        "tests/test_taskloom_my_runner.py",
    ]
    with (package / "pyproject.toml").open("rb") as f:
        pyproject = tomllib.load(f)
    project = pyproject["project"]
    assert project["name"] == "taskloom-my-runner"
    assert project["dependencies"] == ["taskloom-core>=0.1,<0.2"]
    assert project["entry-points"]["taskloom"] == {"my-runner": "taskloom_my_runner.plugin"}
    assert pyproject["build-system"]["build-backend"] == "hatchling.build"
    for path in package.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    runner = (package / "taskloom_my_runner" / "runner.py").read_text()
    assert "class MyRunnerTaskRunner(TaskRunner):" in runner and 'name = "my-runner"' in runner
    assert "class TestConformance(RunnerConformance):" in (package / "tests/test_taskloom_my_runner.py").read_text()
    assert "$" not in "".join(p.read_text() for p in package.rglob("*") if p.is_file()), "a placeholder was left"
    out = capsys.readouterr().out
    assert "Created the runner plugin taskloom-my-runner" in out and "pip install -e '.[test]'" in out


def test_scaffolded_runner_is_selected_by_name(installed: tuple[Path, Path]) -> None:
    @task
    def add(x: int, y: int) -> int:
        return x + y

    @flow(task_runner="scaffolded")
    def on_scaffolded() -> int:
        return add.submit(add.submit(1, 2), 3).result()

    assert on_scaffolded() == 6
    registration = plugins.lookup("task_runner", "scaffolded")
    assert registration.distribution == "taskloom-scaffolded"
    from taskloom.runners import ScaffoldedTaskRunner  # type: ignore[attr-defined]

    assert ScaffoldedTaskRunner.__module__ == "taskloom_scaffolded.runner"


def test_scaffolded_runner_passes_on_only_the_handles_it_made(installed: tuple[Path, Path]) -> None:
    """Another runner's handle is waited for in the flow's process, even a Future subclass."""
    from concurrent.futures import Future

    from taskloom_scaffolded.runner import ScaffoldedTaskRunner  # type: ignore[import-not-found]

    class PoolFuture(Future):  # type: ignore[type-arg]  # as a process pool's futures are
        pass

    @task
    def one() -> int:
        return 1

    @flow(task_runner="scaffolded")
    def on_scaffolded() -> tuple[bool, bool, bool]:
        future = one.submit()
        future.wait()
        runner = future._driver.runner  # the flow run's own instance
        assert isinstance(runner, ScaffoldedTaskRunner)
        return runner._is_native(future.native), runner._is_native(Future()), runner._is_native(PoolFuture())

    assert on_scaffolded() == (True, False, False)


@pytest.mark.parametrize("kind", ["storage", "sink"])
def test_storage_and_sink_packages_are_found_by_name(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None
) -> None:
    name = f"scaffolded-{kind}"
    package = scaffold(tmp_path, name, kind)
    install_dist_info(tmp_path / "site", package)
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    plugins.reset()
    module = f"taskloom_scaffolded_{kind}"
    try:
        if kind == "storage":
            storage = get_result_storage(name)
            storage.write("k", b"v")
            assert storage.read("k") == b"v"
        else:
            sink = plugins.lookup("log_sink", name).load()(level="INFO")
            assert type(sink).__name__ == "ScaffoldedSinkSink"
    finally:
        for loaded in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
            del sys.modules[loaded]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["runner", "storage", "sink"])
def test_generated_tests_pass(kind: str, tmp_path: Path) -> None:
    package = scaffold(tmp_path, f"fresh-{kind}", kind)
    site = tmp_path / "site"
    install_dist_info(site, package)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package), str(site), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"],
        capture_output=True, text=True, cwd=package, env=env, timeout=600,
    )
    assert proc.returncode == 0, f"the generated {kind} tests failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert " passed" in proc.stdout, proc.stdout[-2000:]
    _assert_no_skips_but_the_optional_timeout_case(proc.stdout)
    assert not (package / ".taskloom" / "history.db").exists(), (
        "the kit's pytest plugin must keep run history out of the plugin's folder"
    )


def test_bad_name_and_occupied_folder_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new-plugin", "My_Runner", "--dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("taskloom: error: Plugin name 'My_Runner' must be lowercase") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "mine.txt").write_text("keep me")
    assert main(["new-plugin", "fine", "--dir", str(occupied)]) == 2
    assert "already exists and is not an empty folder: choose another folder with --dir." in capsys.readouterr().err
    assert [p.name for p in occupied.iterdir()] == ["mine.txt"]


def test_the_taskloom_prefix_is_not_doubled(tmp_path: Path) -> None:
    package = scaffold(tmp_path, "taskloom-extra", "sink")
    assert (package / "taskloom_extra" / "sink.py").is_file()
    assert 'name = "taskloom-extra"' in (package / "pyproject.toml").read_text()


def _assert_no_skips_but_the_optional_timeout_case(stdout: str) -> None:
    # The kit skips its runner-owned-timeout case for a runner that does not claim
    # ENFORCES_TIMEOUTS; any other skip means a case silently did not run.
    skips = [line for line in stdout.splitlines() if line.startswith("SKIPPED")]
    unexpected = [line for line in skips if "does not declare ENFORCES_TIMEOUTS" not in line]
    assert not unexpected, "\n".join(unexpected)
