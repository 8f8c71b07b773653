"""The documented example runs, and a program without a tracer provider pays almost nothing.

Each test is a fresh interpreter: what OpenTelemetry allows a process to set (its global
tracer provider) and what it has imported are per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "otel_spans.py"


def run_python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKLOOM_", "OTEL_"))}
    proc = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_the_example_prints_one_trace_with_the_subflow_inside(tmp_path: Path) -> None:
    proc = run_python([str(EXAMPLE)], tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0] == "result: 30"
    assert lines[1].startswith("trace ") and sum(line.startswith("trace ") for line in lines) == 1
    assert lines[2] == "    report [Completed]", proc.stdout
    # The three fetches start together, in any order; load waits for them.
    assert sorted(lines[3:6]) == [
        "        fetch [Completed, AwaitingRetry, Retrying]",
        "        fetch [Completed]",
        "        fetch [Completed]",
    ], proc.stdout
    assert lines[6:] == ["        load [Completed]", "            total [Completed]"], proc.stdout
    assert "Finished in state Completed(" in proc.stderr


SCRIPT = """
import sys
from taskloom import flow, task

@task
def double(x):
    return 2 * x

@flow(task_runner="concurrent")
def doubled():
    return [f.result() for f in [double.submit(i) for i in range(3)]]

assert doubled() == [0, 2, 4]
"""


def test_without_opentelemetry_imported_a_flow_run_never_imports_it(tmp_path: Path) -> None:
    code = SCRIPT + "print(sorted({m.split('.')[0] for m in sys.modules} & {'opentelemetry', 'taskloom_otel'}))"
    proc = run_python(["-c", textwrap.dedent(code)], tmp_path)
    # The plugin is loaded (its entry point is light); the OpenTelemetry API is not.
    assert proc.stdout.strip() == "['taskloom_otel']"


def test_a_provider_set_after_a_flow_run_traces_the_next_one(tmp_path: Path) -> None:
    code = SCRIPT + textwrap.dedent(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        assert doubled() == [0, 2, 4]  # the API is imported, no provider: the no-op path
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        assert doubled() == [0, 2, 4]
        print(sorted(s.name for s in exporter.get_finished_spans()))
        """
    )
    proc = run_python(["-c", code], tmp_path)
    assert proc.stdout.strip() == "['double', 'double', 'double', 'doubled']"
    assert "taskloom-otel" not in proc.stderr


def test_otel_sdk_disabled_means_no_spans_and_no_errors(tmp_path: Path) -> None:
    code = SCRIPT + textwrap.dedent(
        """
        import os
        os.environ["OTEL_SDK_DISABLED"] = "true"
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider())
        assert doubled() == [0, 2, 4]
        print("ok")
        """
    )
    proc = run_python(["-c", code], tmp_path)
    assert proc.stdout.strip() == "ok"
    assert "taskloom-otel" not in proc.stderr
