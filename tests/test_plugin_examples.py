"""The plugin packages of the author guide (docs/examples/plugin-*/) pass their own tests.

Each is a separate distribution, installed into the test environment as a user would install
it (``nox -s tests`` pip-installs every ``docs/examples/plugin-*/`` folder). Their tests run in
a subprocess, as their authors run them: ``pytest docs/examples/plugin-X/tests``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"

#: What each example registers, as `taskloom plugins --json` lists it.
PROVIDES = {
    "plugin-loky": {"task_runner": ["loky"]},
    "plugin-pebble": {"task_runner": ["pebble"]},
    "plugin-storage": {"result_storage": ["sqlite"]},
    "plugin-sink": {"log_sink": ["csv"]},
}


def _project(folder: Path) -> dict[str, Any]:
    with (folder / "pyproject.toml").open("rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


def _packages() -> list[Any]:
    return [
        pytest.param(folder, id=folder.name)
        for folder in sorted(EXAMPLES.glob("plugin-*"))
        if (folder / "pyproject.toml").is_file()
    ]


def _require_installed(folder: Path) -> str:
    dist = str(_project(folder)["name"])
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        pytest.skip(
            f"{dist} is not installed in this environment: pip install ./{folder.relative_to(ROOT)} "
            "(nox -s tests installs every docs/examples/plugin-* package)."
        )
    return dist


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}


def test_every_example_is_known_here() -> None:
    folders = {folder.name for folder in EXAMPLES.glob("plugin-*") if (folder / "pyproject.toml").is_file()}
    assert folders == set(PROVIDES), "add a new docs/examples/plugin-* package to PROVIDES"


@pytest.mark.slow
@pytest.mark.parametrize("folder", _packages())
def test_example_package_passes_its_own_tests(folder: Path) -> None:
    _require_installed(folder)
    tests = folder.relative_to(ROOT) / "tests"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(tests), "-q", "-rs", "-p", "no:cacheprovider"],
        capture_output=True, text=True, cwd=ROOT, env=_clean_env(), timeout=600,
    )
    assert proc.returncode == 0, f"pytest {tests} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert " passed" in proc.stdout, proc.stdout[-2000:]
    _assert_no_skips_but_the_optional_timeout_case(proc.stdout)


@pytest.fixture(scope="module")
def listing() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "taskloom", "plugins", "--json"],
        capture_output=True, text=True, cwd=ROOT, env=_clean_env(), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize("folder", _packages())
def test_taskloom_plugins_lists_the_example(folder: Path, listing: dict[str, Any]) -> None:
    dist = _require_installed(folder)
    project = _project(folder)
    [entry_point] = project["entry-points"]["taskloom"]
    by_name = {p["name"]: p for p in listing["plugins"]}
    assert entry_point in by_name, f"{dist} is installed but `taskloom plugins` does not list it: {listing}"
    plugin = by_name[entry_point]
    assert plugin["distribution"] == dist and plugin["version"] == project["version"]
    assert plugin["provides"] == PROVIDES[folder.name]
    assert not [f for f in listing["failed"] if f["distribution"] == dist]


def _assert_no_skips_but_the_optional_timeout_case(stdout: str) -> None:
    # The kit skips its runner-owned-timeout case for a runner that does not claim
    # ENFORCES_TIMEOUTS; any other skip means a case silently did not run.
    skips = [line for line in stdout.splitlines() if line.startswith("SKIPPED")]
    unexpected = [line for line in skips if "does not declare ENFORCES_TIMEOUTS" not in line]
    assert not unexpected, "\n".join(unexpected)
