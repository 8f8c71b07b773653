"""Runner selection and settings: code > CLI > environment > file > default, each tested."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskloom import flow, get_flow_run, plugins, task
from taskloom.config import ConfigError, load_settings, set_cli_values
from taskloom.plugins import PluginError


def _runner_of(task_runner: object = None) -> str:
    @flow(task_runner=task_runner)  # type: ignore[arg-type]
    def probe() -> str:
        from taskloom.context import _flow_run_driver

        driver = _flow_run_driver.get()
        assert driver is not None and get_flow_run() is not None
        return f"{driver.runner.name}:{getattr(driver.runner, 'max_workers', '-')}"

    return probe()


def test_default_is_the_concurrent_runner(in_tmp: Path) -> None:
    assert _runner_of() == "concurrent:None"
    settings = load_settings()
    assert settings.sources["task_runner"] == "default"


def test_file_beats_default(in_tmp: Path) -> None:
    (in_tmp / "taskloom.toml").write_text('task_runner = "sequential"\n')
    assert _runner_of() == "sequential:-"
    assert load_settings().sources["task_runner"] == str(in_tmp / "taskloom.toml")


def test_pyproject_tool_table_is_read_and_taskloom_toml_wins(in_tmp: Path) -> None:
    (in_tmp / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.taskloom]\ntask_runner = "threads"\n'
        "[tool.taskloom.runners.threads]\nmax_workers = 3\n"
    )
    assert _runner_of() == "concurrent:3"
    sub = in_tmp / "sub"
    sub.mkdir()
    (sub / "taskloom.toml").write_text('task_runner = "sequential"\n')
    import os

    os.chdir(sub)
    assert _runner_of() == "sequential:-", "the nearest file, searching upwards, wins"


def test_env_beats_file(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (in_tmp / "taskloom.toml").write_text('task_runner = "sequential"\n')
    monkeypatch.setenv("TASKLOOM_TASK_RUNNER", "concurrent")
    monkeypatch.setenv("TASKLOOM_RUNNERS_CONCURRENT_MAX_WORKERS", "5")
    assert _runner_of() == "concurrent:5"
    settings = load_settings()
    assert settings.sources["task_runner"] == "env TASKLOOM_TASK_RUNNER"
    assert settings.runner_options("concurrent") == {"max_workers": ("5", "env TASKLOOM_RUNNERS_CONCURRENT_MAX_WORKERS")}


def test_cli_beats_env_and_code_beats_cli(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_TASK_RUNNER", "sequential")
    undo = set_cli_values({"task_runner": "threads", "runners.threads.max_workers": "2"})
    try:
        assert _runner_of() == "concurrent:2"
        assert _runner_of("sequential") == "sequential:-"
        from taskloom.runners import ConcurrentTaskRunner

        assert _runner_of(ConcurrentTaskRunner(max_workers=7)) == "concurrent:7"
    finally:
        undo()


def test_unknown_runner_name_lists_installed_and_the_extra(in_tmp: Path) -> None:
    @task
    def never() -> None:
        raise AssertionError("no task may run when the runner name is wrong")

    @flow(task_runner="dask-typo")
    def wrong() -> None:
        never()

    with pytest.raises(PluginError) as info:
        wrong()
    message = str(info.value)
    assert message.startswith("Unknown task runner 'dask-typo'. Installed task runners: ")
    assert "'concurrent'" in message and "'sequential'" in message


def test_missing_first_party_runner_names_the_pip_extra(in_tmp: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None) -> None:
    monkeypatch.setenv("TASKLOOM_DISABLE_PLUGINS", "ray,taskloom-ray")

    @flow(task_runner="ray")
    def on_ray() -> None:
        pass

    with pytest.raises(PluginError, match=r"pip install 'taskloom\[ray\]'"):
        on_ray()


def test_unknown_key_in_file_names_key_and_file(in_tmp: Path) -> None:
    (in_tmp / "taskloom.toml").write_text("task_runer = 'sequential'\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"Unknown setting 'task_runer' in {in_tmp / 'taskloom.toml'}" in str(info.value)


def test_wrong_type_in_file_names_key_type_and_file(in_tmp: Path) -> None:
    (in_tmp / "taskloom.toml").write_text("[results]\npersist = 'yes'\n")
    with pytest.raises(ConfigError, match=r"Setting 'results.persist' in .*taskloom.toml must be of type bool, got 'yes' \(str\)"):
        load_settings()


def test_wrong_type_in_env_names_the_variable(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_RESULTS_PERSIST", "maybe")
    with pytest.raises(ConfigError, match=r"Environment variable TASKLOOM_RESULTS_PERSIST must be bool, got 'maybe'\."):
        load_settings()


def test_unknown_runner_option_is_named_with_its_source(in_tmp: Path) -> None:
    (in_tmp / "taskloom.toml").write_text("[runners.concurrent]\nmax_worker = 2\n")
    with pytest.raises(ConfigError, match=r"Runner 'concurrent' has no option 'max_worker' \(set in .*taskloom.toml\). Its options: max_workers."):
        _runner_of()


def test_options_for_a_runner_that_is_not_installed_warn(in_tmp: Path) -> None:
    (in_tmp / "taskloom.toml").write_text("[runners.not-installed]\naddress = 'x'\n")
    with pytest.warns(UserWarning, match="runner 'not-installed', which is not installed"):
        load_settings()


def test_settings_of_a_disabled_first_party_plugin_warn(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None
) -> None:
    (in_tmp / "taskloom.toml").write_text("[history]\npath = 'elsewhere.db'\n")
    assert load_settings()["history.path"] == "elsewhere.db"
    monkeypatch.setenv("TASKLOOM_DISABLE_PLUGINS", "history")
    plugins.reset()
    with pytest.warns(UserWarning, match="sets 'history.path' for taskloom-history, which is not installed or is disabled"):
        settings = load_settings()
    assert "history.path" not in settings.values
    monkeypatch.setenv("TASKLOOM_HISTORY_ENABLED", "false")
    with pytest.warns(UserWarning) as caught:
        load_settings()
    assert sorted(str(w.message).split(" ", 1)[1][:40] for w in caught) == [
        "is a setting of taskloom-history, which ",
        "sets 'history.path' for taskloom-history",
    ]


def test_a_disabled_plugins_setting_warns_on_every_flow_run_reading_metadata_once(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None
) -> None:
    # Which plugin owns a section, and the extra that brings it, come from installed
    # packages' metadata (a few hundred file reads): once per loading of the plugins, not
    # once per flow run, while each flow run still warns.
    import importlib.metadata

    monkeypatch.setenv("TASKLOOM_DISABLE_PLUGINS", "history")
    monkeypatch.setenv("TASKLOOM_HISTORY_PATH", str(in_tmp / "elsewhere.db"))
    plugins.reset()
    reads: list[str] = []
    entry_points, requires = importlib.metadata.entry_points, importlib.metadata.requires

    def counted_entry_points(**selection: str) -> object:
        reads.append(selection.get("group", ""))
        return entry_points(**selection)

    def counted_requires(distribution: str) -> object:
        reads.append(f"requires {distribution}")
        return requires(distribution)

    monkeypatch.setattr(importlib.metadata, "entry_points", counted_entry_points)
    monkeypatch.setattr(importlib.metadata, "requires", counted_requires)

    @flow
    def plain() -> int:
        return 1

    for _ in range(3):
        with pytest.warns(
            UserWarning,
            match="TASKLOOM_HISTORY_PATH is a setting of taskloom-history, which is not installed or is disabled",
        ):
            assert plain() == 1
    assert sorted(r for r in reads if r != "taskloom") == ["requires taskloom", "taskloom.sections"]
    plugins.reset()  # after a reset (a pip install, say) the metadata is read again
    with pytest.warns(UserWarning, match="TASKLOOM_HISTORY_PATH is a setting of taskloom-history"):
        load_settings()
    assert reads.count("taskloom.sections") == 2


def test_concurrency_limits_and_logging_level_from_file(in_tmp: Path) -> None:
    (in_tmp / "taskloom.toml").write_text("[logging]\nlevel = 'WARNING'\n[concurrency_limits]\ndatabase = 2\n")
    settings = load_settings()
    assert settings["logging.level"] == "WARNING"
    assert settings.concurrency_limits == {"database": 2}


def test_invalid_toml_is_one_clear_error(in_tmp: Path) -> None:
    (in_tmp / "taskloom.toml").write_text("task_runner = \n")
    with pytest.raises(ConfigError, match=r"taskloom.toml is not valid TOML"):
        load_settings()
