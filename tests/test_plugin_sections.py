"""Each plugin gets its own settings: [sinks.NAME], [storages.NAME], and runner_options per runner.

Sinks, storages and runners here are small plugins registered in this process, each with its
own explicit parameters, as a third-party package writes them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import flow, plugins, task
from taskloom.config import ConfigError
from taskloom.logging import reset_logging
from taskloom_local import SequentialTaskRunner

BUILT: list[tuple[str, dict[str, Any]]] = []


class NarrowSink(logging.Handler):
    """A sink that lists its parameters: any other keyword fails its construction."""

    def __init__(self, path: str, width: int = 10) -> None:
        super().__init__()
        BUILT.append(("narrow", {"path": path, "width": width}))

    def emit(self, record: logging.LogRecord) -> None:
        pass


class OtherSink(logging.Handler):
    def __init__(self, level: str, colour: bool = False) -> None:
        super().__init__(level)
        BUILT.append(("other", {"level": level, "colour": colour}))

    def emit(self, record: logging.LogRecord) -> None:
        pass


class RefusingSink(logging.Handler):
    def __init__(self, url: str = "") -> None:
        raise ValueError(f"cannot reach {url!r}")


class DictStorage:
    """A storage with options beyond ``path``."""

    values: dict[str, bytes] = {}

    def __init__(self, bucket: str, retries: int = 1) -> None:
        self.bucket, self.retries = bucket, retries

    def write(self, key: str, data: bytes) -> None:
        self.values[f"{self.bucket}/{key}"] = data

    def read(self, key: str) -> bytes:
        return self.values[f"{self.bucket}/{key}"]

    def exists(self, key: str) -> bool:
        return f"{self.bucket}/{key}" in self.values


class RecordingRunner(SequentialTaskRunner):
    """A sequential runner that notes the runner_options each call brings."""

    name = "recording"
    seen: list[dict[str, Any]] = []

    def submit(self, call: Any) -> Any:
        self.seen.append(dict(call.task_run.runner_options))
        return super().submit(call)


class SectionsPlugin:
    @taskloom.hookimpl
    def taskloom_register_log_sinks(self) -> dict[str, Any]:
        return {"narrow": NarrowSink, "other": OtherSink, "refusing": RefusingSink}

    @taskloom.hookimpl
    def taskloom_register_result_storages(self) -> dict[str, Any]:
        return {"dict": DictStorage}

    @taskloom.hookimpl
    def taskloom_register_task_runners(self) -> dict[str, Any]:
        return {"recording": RecordingRunner}


@pytest.fixture(autouse=True)
def sections_plugin(in_tmp: Path, fresh_plugins: None) -> Iterator[Path]:
    plugin = SectionsPlugin()
    plugins.register(plugin, name="sections-test")
    BUILT.clear()
    RecordingRunner.seen.clear()
    yield in_tmp
    reset_logging()
    plugins.unregister(plugin)


@task
def double(x: int) -> int:
    return 2 * x


@flow(task_runner="sequential")
def doubled() -> int:
    return double(21)


def test_each_sink_gets_its_own_section_only(sections_plugin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (sections_plugin / "taskloom.toml").write_text(
        "[logging]\nsinks = ['narrow', 'other']\nlevel = 'DEBUG'\n"
        "[sinks.narrow]\npath = 'runs.log'\n"
        "[sinks.other]\ncolour = true\n"
    )
    monkeypatch.setenv("TASKLOOM_SINKS_NARROW_WIDTH", "7")
    assert doubled() == 42
    # narrow takes no level and gets none; other takes one and gets the level in force.
    assert BUILT == [("narrow", {"path": "runs.log", "width": 7}), ("other", {"level": "DEBUG", "colour": True})]


def test_a_sink_option_it_does_not_take_is_one_sentence(sections_plugin: Path) -> None:
    (sections_plugin / "taskloom.toml").write_text("[logging]\nsinks = ['narrow']\n[sinks.narrow]\npath = 'x'\nwidht = 3\n")
    with pytest.raises(ConfigError) as caught:
        doubled()
    assert str(caught.value) == (
        f"Log sink 'narrow' has no option 'widht' (set in {sections_plugin / 'taskloom.toml'}). "
        "Its options: path, width."
    )


def test_a_sink_that_refuses_its_options_is_named(sections_plugin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_LOGGING_SINKS", "refusing")
    monkeypatch.setenv("TASKLOOM_SINKS_REFUSING_URL", "tcp://nowhere")
    with pytest.raises(ConfigError) as caught:
        doubled()
    assert str(caught.value) == (
        "Log sink 'refusing' refused its options (url from env TASKLOOM_SINKS_REFUSING_URL): "
        "ValueError: cannot reach 'tcp://nowhere'"
    )


def test_a_sink_that_raises_is_reported_once_and_the_flow_goes_on(
    sections_plugin: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(NarrowSink, "emit", lambda self, record: 1 / 0)
    monkeypatch.setenv("TASKLOOM_LOGGING_SINKS", "narrow")
    monkeypatch.setenv("TASKLOOM_SINKS_NARROW_PATH", "x")
    assert doubled() == 42
    assert doubled() == 42
    err = capsys.readouterr().err
    assert err.count("log sink 'narrow' raised ZeroDivisionError: division by zero") == 1


def test_a_storage_gets_its_own_section(sections_plugin: Path) -> None:
    (sections_plugin / "taskloom.toml").write_text(
        "[results]\nstorage = 'dict'\npersist = true\n[storages.dict]\nbucket = 'b1'\nretries = 3\n"
    )

    @flow(task_runner="sequential")
    def persisted() -> Any:
        future = double.submit(4)
        future.wait()
        return {"state": future.state}

    state = persisted()["state"]
    assert state.result() == 8
    assert (state.data.storage.bucket, state.data.storage.retries) == ("b1", 3)
    assert state.data.storage.exists(state.data.key), "path is not given to a storage that takes none"


def test_a_storage_option_it_does_not_take_fails_before_any_task_runs(sections_plugin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_STORAGES_DICT_BUCKT", "b1")
    with pytest.raises(ConfigError, match=r"^Result storage 'dict' has no option 'buckt' \(set in env TASKLOOM_STORAGES_DICT_BUCKT\)\. Its options: bucket, retries\.$"):
        doubled()


def test_runner_options_per_runner_reach_only_their_runner(sections_plugin: Path, caplog: pytest.LogCaptureFixture) -> None:
    keyed = double.with_options(runner_options={"recording": {"slots": 2}, "ray": {"num_gpus": 1}})
    flat = double.with_options(runner_options={"slots": 3})
    elsewhere = double.with_options(runner_options={"no-such-runner": {"timeout": 5}})

    @flow(task_runner="recording")
    def on_recording() -> list[int]:
        return [keyed.submit(1).result(), flat.submit(2).result(), elsewhere.submit(3).result(), elsewhere.submit(4).result()]

    assert on_recording() == [2, 4, 6, 8]
    assert RecordingRunner.seen == [{"slots": 2}, {"slots": 3}, {}, {}]
    warnings = [r.getMessage() for r in caplog.records if "no installed runner" in r.getMessage()]
    assert warnings == [
        "Task 'double': runner_options names 'no-such-runner', which is no installed runner, so no runner "
        "gets those options; give each runner's options under its name, such as "
        "{'dask': {'resources': {'GPU': 1}}}."
    ], "said once, and only for the key that names no installed runner"
