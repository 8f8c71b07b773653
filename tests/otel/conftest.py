"""One OpenTelemetry SDK tracer provider for the session, its finished spans cleared per test.

OpenTelemetry lets a process set its global tracer provider once, so the session sets it the
first time an otel test needs it; each test then sees only the spans its own flows made.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("taskloom_otel", reason="install plugins/otel: pip install -e plugins/otel")
pytest.importorskip("opentelemetry.sdk", reason="install the SDK: pip install opentelemetry-sdk")

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class FaultySpanProcessor(SpanProcessor):
    """A processor that fails on every span start while ``armed``: a broken tracing setup."""

    def __init__(self) -> None:
        self.armed = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.armed:
            raise RuntimeError("the tracing backend is unreachable")

    def on_end(self, span: ReadableSpan) -> None:
        pass


class Tracing:
    def __init__(self, exporter: InMemorySpanExporter, faulty: FaultySpanProcessor) -> None:
        self.exporter = exporter
        self.faulty = faulty

    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return list(self.exporter.get_finished_spans())


@pytest.fixture(scope="session")
def _tracing_session() -> Tracing:
    exporter = InMemorySpanExporter()
    faulty = FaultySpanProcessor()
    provider: Any = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(faulty)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(exporter, faulty)


@pytest.fixture
def tracing(_tracing_session: Tracing) -> Iterator[Tracing]:
    _tracing_session.exporter.clear()
    _tracing_session.faulty.armed = False
    yield _tracing_session
    _tracing_session.faulty.armed = False
