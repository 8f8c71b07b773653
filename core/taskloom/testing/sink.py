"""`SinkConformance`: what every log sink must do, as pytest tests.

The cases switch the sink on by configuration, as a user does (``logging.sinks`` and the
sink's own ``[sinks.NAME]`` section), run real flows, and read back what the sink wrote.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import taskloom
from taskloom import flow, get_run_logger, plugins, task
from taskloom.config import set_cli_values
from taskloom.logging import reset_logging

__all__ = ["SinkConformance"]

_LEVELS = ("debug", "info", "warning", "error", "critical")


class SinkConformanceError(Exception):
    """What the task of `test_records_of_every_level` logs with its ERROR line."""


@task(task_run_name="sink-kit-{tag}")
def _log_every_level(tag: str) -> str:
    logger = get_run_logger()
    for level in _LEVELS:
        getattr(logger, level)("%s line %s", level, tag)
    try:
        raise SinkConformanceError(f"sink-kit exception {tag}")
    except SinkConformanceError:
        logger.exception("caught %s", tag)
    return tag


class _RaisingSink(logging.Handler):
    """A sink whose every record fails, as a broken plugin's would."""

    def handle(self, record: logging.LogRecord) -> bool:
        raise RuntimeError("the kit's raising sink")

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle raises first
        raise RuntimeError("the kit's raising sink")


class _RaisingSinkPlugin:
    @taskloom.hookimpl
    def taskloom_register_log_sinks(self) -> dict[str, Any]:
        return {"sink-kit-raising": _RaisingSink}


class SinkConformance:
    """Subclass it, set ``sink`` and implement `read_output`; every test here must pass.

    ``sink`` is the sink's registered name. Override the ``taskloom_sink_options`` fixture to
    give the sink the ``[sinks.NAME]`` options a test should use (a file in ``tmp_path``),
    and `read_output` to return what the sink wrote, as text. ``runner`` is the runner of the
    flows: set ``"processes"`` to prove records from worker processes.
    """

    sink: str | None = None
    runner: Any = "threads"

    @pytest.fixture
    def taskloom_sink_options(self, tmp_path: Any) -> dict[str, Any]:
        """The sink's ``[sinks.NAME]`` options for one test."""
        return {}

    def read_output(self, options: dict[str, Any], stderr: str) -> str:
        """Everything the sink wrote in the test, as text (``stderr`` is what reached stderr)."""
        raise NotImplementedError("Implement read_output: return what the sink wrote, as text.")

    @pytest.fixture
    def switched_on(self, taskloom_sink_options: dict[str, Any]) -> Iterator[Any]:
        """A function that runs a zero-argument callable with the sink (and others) switched on."""
        if self.sink is None:
            pytest.skip("No sink under test: set `sink = ...` on the class.")
        name = self.sink
        plugins.lookup("log_sink", name)  # an unknown name fails here, naming what exists

        def run(body: Any, sinks: tuple[str, ...] = (name,)) -> Any:
            values = {
                "logging.sinks": list(sinks),
                "logging.level": "DEBUG",
                **{f"sinks.{name}.{k}": v for k, v in taskloom_sink_options.items()},
            }
            undo = set_cli_values(values)
            try:
                return body()
            finally:
                undo()
                reset_logging()  # closes the sink, so that what it wrote is on disk

        reset_logging()
        try:
            yield run
        finally:
            reset_logging()

    def _output(self, options: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
        return self.read_output(options, capsys.readouterr().err)

    def test_records_of_every_level(
        self, switched_on: Any, taskloom_sink_options: dict[str, Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        tag = uuid.uuid4().hex[:12]

        @flow(task_runner=self.runner)
        def every_level() -> Any:
            get_run_logger().info("flow line %s", tag)
            return _log_every_level.submit(tag).result()

        state = switched_on(lambda: every_level(return_state=True))
        assert state.is_completed(), f"the flow ended {state!r}: {state.message}"
        output = self._output(taskloom_sink_options, capsys)
        lines = [f"flow line {tag}", *(f"{level} line {tag}" for level in _LEVELS), f"caught {tag}"]
        positions = [output.find(line) for line in lines]
        missing = [line for line, at in zip(lines, positions, strict=True) if at < 0]
        assert not missing, f"the sink did not write {missing}"
        assert positions[1:] == sorted(positions[1:]), "a task run's records must be written in order"
        assert f"sink-kit exception {tag}" in output, "a record's exception must be written with it"
        assert "Finished in state Completed()" in output, "the engine's own records reach sinks too"

    def test_worker_records_carry_run_names(
        self, switched_on: Any, taskloom_sink_options: dict[str, Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        tags = [uuid.uuid4().hex[:12] for _ in range(3)]
        seen: dict[str, str] = {}

        @flow(task_runner=self.runner)
        def named_runs() -> None:
            seen["flow_run"] = taskloom.get_flow_run().name  # type: ignore[union-attr]
            futures = [_log_every_level.submit(tag) for tag in tags]
            for future in futures:
                future.wait()

        switched_on(named_runs)
        output = self._output(taskloom_sink_options, capsys).splitlines()
        for tag in tags:
            [line] = [line for line in output if f"info line {tag}" in line]
            assert f"sink-kit-{tag}" in line, f"a task run's record must name its task run: {line!r}"
        created = [line for line in output if "Created task run" in line]
        assert created and all(seen["flow_run"] in line for line in created), (
            "a flow run's records must name the flow run"
        )

    def test_a_sink_that_raises_is_reported_and_the_flow_goes_on(
        self, switched_on: Any, taskloom_sink_options: dict[str, Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        tag = uuid.uuid4().hex[:12]
        plugin = _RaisingSinkPlugin()
        plugins.register(plugin, name=f"sink-kit-raising-{id(plugin)}")

        @flow(task_runner=self.runner)
        def beside_a_broken_sink() -> str:
            return _log_every_level.submit(tag).result()

        try:
            state = switched_on(
                lambda: beside_a_broken_sink(return_state=True), sinks=("sink-kit-raising", self.sink)
            )
        finally:
            plugins.unregister(plugin)
        assert state.is_completed(), f"a raising sink must not fail the flow, got {state!r}"
        err = capsys.readouterr().err
        assert "log sink 'sink-kit-raising' raised RuntimeError" in err, "the raising sink must be named"
        output = self.read_output(taskloom_sink_options, err)
        assert all(f"{level} line {tag}" in output for level in _LEVELS), (
            "the sink under test must get every record, whatever the sink before it does"
        )
