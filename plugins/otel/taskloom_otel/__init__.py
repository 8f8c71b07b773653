"""taskloom-otel: OpenTelemetry spans for taskloom flow runs and task runs.

Installed, it reports every flow run as a span and every task run as a child span to the
global tracer provider, under the instrumentation scope ``taskloom``. It needs only the
OpenTelemetry API; set up an SDK and an exporter in your program (see docs/otel.md). With no
tracer provider set, it does nothing.
"""

from __future__ import annotations

from ._attributes import TRACER_NAME

__version__ = "0.1.0"
__all__ = ["TRACER_NAME", "__version__"]
