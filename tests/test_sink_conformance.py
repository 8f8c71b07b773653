"""taskloom-loguru's sinks pass the sink conformance kit, as a third-party sink would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from taskloom.testing import SinkConformance


class TestConsoleSink(SinkConformance):
    sink = "console"

    def read_output(self, options: dict[str, Any], stderr: str) -> str:
        return stderr


class TestFileSink(SinkConformance):
    sink = "file"

    @pytest.fixture
    def taskloom_sink_options(self, tmp_path: Path) -> dict[str, Any]:
        return {"path": str(tmp_path / "logs" / "runs.log")}

    def read_output(self, options: dict[str, Any], stderr: str) -> str:
        return Path(options["path"]).read_text(encoding="utf-8")


class TestJSONSink(SinkConformance):
    sink = "json"

    @pytest.fixture
    def taskloom_sink_options(self, tmp_path: Path) -> dict[str, Any]:
        return {"path": str(tmp_path / "runs.jsonl")}

    def read_output(self, options: dict[str, Any], stderr: str) -> str:
        # One JSON object per line; non-ASCII text and quotes are escaped in it.
        import json

        return "\n".join(
            " ".join(str(v) for v in json.loads(line).values())
            for line in Path(options["path"]).read_text(encoding="utf-8").splitlines()
        )


@pytest.mark.slow
class TestJSONSinkWithProcessWorkers(TestJSONSink):
    """Records written in worker processes reach the sink with their run names."""

    runner = "processes"
