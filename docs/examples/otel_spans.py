"""OpenTelemetry spans for a flow run, its task runs and a subflow, printed as a tree.

Needs taskloom-otel and an OpenTelemetry SDK:
    pip install 'taskloom[otel]' opentelemetry-sdk
The SDK is set up once, before the first flow run; spans go to an in-memory exporter so this
script can print them. In production, swap in a batch processor and an OTLP exporter (below).
"""

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskloom import flow, task

exporter = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": "otel-spans-example"}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
# In production, for example (pip install opentelemetry-exporter-otlp):
#   from opentelemetry.sdk.trace.export import BatchSpanProcessor
#   from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
#   provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)

attempts: dict[int, int] = {}


@task(retries=1)
def fetch(n: int) -> int:
    attempts[n] = attempts.get(n, 0) + 1
    if n == 2 and attempts[n] == 1:
        raise ConnectionError("the source hung up; the retry will get it")
    return n * 10


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow(task_runner="sequential")
def load(values: list[int]) -> int:
    return total(values)


@flow
def report() -> int:
    numbers = [fetch.submit(n) for n in range(3)]
    return load([f.result() for f in numbers])  # a subflow: a child span in the same trace


def print_tree(spans: Sequence[ReadableSpan]) -> None:
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        children.setdefault(span.parent.span_id if span.parent else None, []).append(span)

    def show(span: ReadableSpan, depth: int) -> None:
        attributes = span.attributes or {}
        events = "".join(f", {event.name}" for event in span.events)
        print(f"{'    ' * depth}{span.name} [{attributes.get('taskloom.state.name')}{events}]")
        for child in children.get(span.context.span_id, []):
            show(child, depth + 1)

    for root in children.get(None, []):
        print(f"trace {root.context.trace_id:032x}")
        show(root, 1)


if __name__ == "__main__":
    print("result:", report())
    provider.force_flush()
    print_tree(exporter.get_finished_spans())
