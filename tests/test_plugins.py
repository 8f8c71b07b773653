"""The plugin manager with real entry points: distributions written to a folder on sys.path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import flow, plugins, task
from taskloom.cli import main
from taskloom.plugins import PluginError


def install_dist(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str], api: str | None = None) -> None:
    """Write a minimal installed distribution (dist-info + modules) under ``root``."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[taskloom]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_plugin_that_fails_to_import_is_reported_and_the_rest_work(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install_dist(site, "taskloom-broken", {"broken": "broken_plugin"}, {"broken_plugin": "raise ImportError('needs libfoo')\n"})
    failures = plugins.failures()
    assert [(f.name, f.distribution, f.reason) for f in failures] == [
        ("broken", "taskloom-broken", "ImportError: needs libfoo")
    ]

    @task
    def one() -> int:
        return 1

    @flow(task_runner="sequential")
    def still_works() -> int:
        return one()

    assert still_works() == 1
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "FAILED broken (taskloom-broken): ImportError: needs libfoo" in out
    assert "local (taskloom-local" in out


def test_third_party_runner_is_selectable_by_name_and_importable_from_taskloom_runners(site: Path) -> None:
    install_dist(
        site,
        "taskloom-inline",
        {"inline": "inline_plugin"},
        {
            "inline_plugin": """
                from taskloom import hookimpl

                @hookimpl
                def taskloom_register_task_runners():
                    return {"inline": "inline_runner:InlineTaskRunner"}
            """,
            "inline_runner": """
                from concurrent.futures import Future
                from taskloom.runners import run_task_call
                from taskloom.runners import TaskRunner, upstream_handles

                class InlineTaskRunner(TaskRunner):
                    name = "inline"
                    concurrency = "sequential"

                    def __init__(self, label: str = "x"):
                        self.label = label

                    def submit(self, call):
                        native = Future()
                        native.set_result(run_task_call(call, *upstream_handles(call, lambda n: isinstance(n, Future))))
                        return native
            """,
        },
    )
    assert "inline_runner" not in sys.modules, "registering must not import the runner"

    @task
    def add(x: int, y: int) -> int:
        return x + y

    @flow(task_runner="inline")
    def uses_inline() -> int:
        return add.submit(add.submit(1, 2), 3).result()

    assert uses_inline() == 6
    from taskloom.runners import InlineTaskRunner  # type: ignore[attr-defined]

    assert InlineTaskRunner.name == "inline"
    registration = plugins.lookup("task_runner", "inline")
    assert registration.distribution == "taskloom-inline"


def test_runner_options_from_the_environment_follow_generic_and_optional_hints(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_dist(
        site,
        "taskloom-hinted",
        {"hinted": "hinted_plugin"},
        {
            "hinted_plugin": """
                from taskloom import hookimpl

                @hookimpl
                def taskloom_register_task_runners():
                    return {"hinted": "hinted_runner:HintedTaskRunner"}
            """,
            "hinted_runner": """
                from taskloom.runners import CompletedNative, TaskRunner, run_task_call

                SEEN = []

                class HintedTaskRunner(TaskRunner):
                    name = "hinted"
                    concurrency = "sequential"

                    def __init__(self, ports: list[int] | None = None, hosts: list[str] = [], limit: int | None = None):
                        SEEN.append((ports, hosts, limit))

                    def submit(self, call):
                        return CompletedNative(run_task_call(call))
            """,
        },
    )
    monkeypatch.setenv("TASKLOOM_RUNNERS_HINTED_PORTS", "[8000, 8001]")
    monkeypatch.setenv("TASKLOOM_RUNNERS_HINTED_HOSTS", "a.example, b.example")
    monkeypatch.setenv("TASKLOOM_RUNNERS_HINTED_LIMIT", "3")

    @task
    def one() -> int:
        return 1

    @flow(task_runner="hinted")
    def uses_hinted() -> int:
        return one()

    assert uses_hinted() == 1
    import hinted_runner  # type: ignore[import-not-found]

    assert hinted_runner.SEEN[-1] == ([8000, 8001], ["a.example", "b.example"], 3)


def test_two_plugins_with_one_name_is_an_error_naming_both(site: Path) -> None:
    source = """
        from taskloom import hookimpl

        @hookimpl
        def taskloom_register_task_runners():
            return {"twin": "taskloom_local:SequentialTaskRunner"}
    """
    install_dist(site, "taskloom-twin-a", {"twin-a": "twin_a"}, {"twin_a": source})
    install_dist(site, "taskloom-twin-b", {"twin-b": "twin_b"}, {"twin_b": source})

    @flow(task_runner="twin")
    def ambiguous() -> None:
        pass

    with pytest.raises(PluginError, match=r"'twin' is registered by more than one distribution \(taskloom-twin-\w, taskloom-twin-\w\)"):
        ambiguous()


def test_disable_plugins_switches_one_off(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_dist(site, "taskloom-broken", {"broken": "broken_plugin"}, {"broken_plugin": "raise ImportError('x')\n"})
    monkeypatch.setenv("TASKLOOM_DISABLE_PLUGINS", "broken, loguru")
    assert plugins.failures() == []
    assert "loguru" not in {p.name for p in plugins.plugins()}
    assert "console" not in plugins.registered("log_sink")


def test_plugin_for_another_api_version_is_refused_by_name(site: Path) -> None:
    install_dist(site, "taskloom-future", {"future": "future_plugin"}, {"future_plugin": "TASKLOOM_PLUGIN_API = 2\n"})
    [failure] = plugins.failures()
    assert failure.name == "future"
    assert failure.reason == "built for plugin API 2, this taskloom has API 1"


def test_plugin_with_a_malformed_api_version_is_refused_alone(site: Path) -> None:
    install_dist(site, "taskloom-odd", {"odd": "odd_plugin"}, {"odd_plugin": "TASKLOOM_PLUGIN_API = '1.x'\n"})
    [failure] = plugins.failures()
    assert failure.name == "odd"
    assert failure.reason == "its TASKLOOM_PLUGIN_API is '1.x', which is not a whole number (this taskloom has API 1)"
    assert "sequential" in plugins.registered("task_runner")  # the others keep working


def test_plugin_commands_and_json_listing(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    install_dist(
        site,
        "taskloom-hello",
        {"hello": "hello_plugin"},
        {
            "hello_plugin": """
                from taskloom import hookimpl

                @hookimpl
                def taskloom_add_commands(subparsers):
                    cmd = subparsers.add_parser("hello", help="say hello")
                    cmd.set_defaults(func=lambda args: print("hello from a plugin") or 0)
            """
        },
    )
    assert main(["hello"]) == 0
    assert capsys.readouterr().out == "hello from a plugin\n"
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_name = {p["name"]: p for p in listing["plugins"]}
    assert by_name["local"]["provides"]["task_runner"] == ["sequential", "concurrent", "threads", "processes"]
    assert by_name["hello"]["distribution"] == "taskloom-hello"


def test_trace_hooks_logs_each_hook_call(tmp_path: Path) -> None:
    script = tmp_path / "traced.py"
    script.write_text(
        "from taskloom import flow, task\n"
        "@task\ndef one():\n    return 1\n"
        "@flow(task_runner='sequential')\ndef traced():\n    return one.submit().result()\n"
        "traced()\n"
    )
    env = {**__import__("os").environ, "TASKLOOM_TRACE_HOOKS": "1"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "taskloom_flow_run_started" in proc.stderr
    assert "taskloom_task_run_created" in proc.stderr


def test_observers_are_called_in_pluggy_order(fresh_plugins: None) -> None:
    calls: list[str] = []

    class Early:
        @taskloom.hookimpl(tryfirst=True)
        def taskloom_task_run_state_changed(self, new: Any) -> None:
            calls.append(f"early {new.name}")

    class Late:
        @taskloom.hookimpl
        def taskloom_task_run_state_changed(self, task_run: Any, new: Any) -> None:
            calls.append(f"late {new.name}")

    class Plain:
        @taskloom.hookimpl
        def taskloom_task_run_state_changed(self, old: Any, new: Any) -> None:
            calls.append(f"plain {new.name}")

    for observer in (Early(), Late(), Plain()):
        plugins.register(observer)

    @taskloom.task
    def one() -> int:
        return 1

    @taskloom.flow(task_runner="sequential")
    def observed_flow() -> int:
        return one()

    assert observed_flow() == 1
    # tryfirst first; then the last registered first, as pluggy calls them.
    assert calls[:3] == ["early Pending", "plain Pending", "late Pending"]
    assert calls[-3:] == ["early Completed", "plain Completed", "late Completed"]


@pytest.mark.slow
def test_a_plugin_that_fails_to_import_is_reported_once_per_flow_run_not_per_worker(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_dist(site, "taskloom-broken", {"broken": "broken_plugin"}, {"broken_plugin": "raise ImportError('needs libfoo')\n"})
    script = tmp_path / "two_runs.py"
    script.write_text(
        "from taskloom import flow, task\n"
        "@task\ndef one(x):\n    return x\n"
        "@flow(task_runner='processes')\ndef on_workers():\n    return [f.result() for f in one.map(range(6))]\n"
        "if __name__ == '__main__':\n    print(on_workers(), on_workers())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")])),
               TASKLOOM_RUNNERS_PROCESSES_MAX_WORKERS="3", TASKLOOM_HISTORY_ENABLED="false")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 1, 2, 3, 4, 5] [0, 1, 2, 3, 4, 5]"
    reports = [line for line in proc.stderr.splitlines() if "needs libfoo" in line]
    assert len(reports) == 2, "one report per flow run, none from the three workers:\n" + "\n".join(reports)
    assert all("WARNING" in line and "Plugin 'broken' (taskloom-broken)" in line for line in reports)


def test_the_hook_specs_module_exports_every_hook() -> None:
    from taskloom import hookspecs

    hooks = {name for name in vars(hookspecs) if name.startswith("taskloom_")}
    assert hooks and hooks == {n for n in hookspecs.__all__ if n.startswith("taskloom_")}
