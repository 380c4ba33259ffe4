"""What plugins cost: ``python plugins/benchmark.py`` prints figures and ratios (it asserts nothing).

The client's own CPU per publish, through an in-process transport that answers 202 at once (no
network, so the hooks' cost is not lost in the noise), interleaving the setups so that drift
affects them alike: no plugin; a transport plugin only (the plain publish path); no-op
observability wrappers (the observed path); and, when the OpenTelemetry SDK and minipub-otel are
installed, ``OtelPlugin`` on an in-memory exporter. Then ``SDK()`` construction.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
from typing import Any, Callable, Dict, List, Optional

os.environ["MINIPUB_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the plugins named below

from minipub import SDK
from minipub.transports.base import HTTPRequest, HTTPResponse

KEY = "sk_bench_" + "x" * 20
ROUNDS = 7
PUBLISHES = 3000
URL = "http://127.0.0.1:9/api"  # never connected to: the transport below answers


class Answering:
    """A test-double transport: 202 at once."""

    def send(self, request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse(202, {"content-type": "application/json"}, b'{"duplicate":false}')

    def close(self) -> None:
        pass


def plugin_sets() -> Dict[str, List[Any]]:
    from minipub.hookspecs import hookimpl

    class TransportOnly:
        @hookimpl
        def minipub_transport(self, name: Optional[str], options: Dict[str, Any]) -> Any:
            return Answering() if name is None else None

    class NoOpWrappers:
        @hookimpl(wrapper=True)
        def minipub_publish(self) -> Any:
            return (yield)

        @hookimpl(wrapper=True)
        def minipub_attempt(self) -> Any:
            return (yield)

    sets: Dict[str, List[Any]] = {"no plugin": [], "transport plugin only": [TransportOnly()],
                                  "no-op observability wrappers": [NoOpWrappers()]}
    if importlib.util.find_spec("opentelemetry.sdk") and importlib.util.find_spec("minipub_otel"):
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from minipub_otel import OtelPlugin

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        sets["OtelPlugin (in-memory SDK)"] = [OtelPlugin(tracer_provider, meter_provider)]
    return sets


def per_call(action: Callable[[], Any], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        action()
    return (time.perf_counter() - start) / count * 1e6


def client(plugins: List[Any]) -> SDK:
    transport = None if plugins and hasattr(plugins[0], "minipub_transport") else Answering()
    return SDK(KEY, server_url=URL, plugins=plugins, transport=transport)


def main() -> None:
    sets = plugin_sets()
    results: Dict[str, List[float]] = {name: [] for name in sets}
    clients = {name: client(plugins) for name, plugins in sets.items()}
    for _ in range(ROUNDS):
        for name, sdk in clients.items():

            def one(sdk: SDK = sdk) -> Any:
                return sdk.publish.event(tenant_id="bench", topic="bench", data={"n": 1})

            per_call(one, 200)  # warm
            results[name].append(per_call(one, PUBLISHES))
    for sdk in clients.values():
        sdk.close()
    base = statistics.median(results["no plugin"])
    print(f"client CPU per publish, in-process 202 transport (median of {ROUNDS} x {PUBLISHES}):")
    for name, figures in results.items():
        median = statistics.median(figures)
        print(f"  {name:30s} {median:6.1f} us/publish  x{median / base:.2f}  ({median - base:+.1f} us)")
    print("SDK() construction (explicit plugins are registered per client):")
    for name, plugins in sets.items():
        figure = per_call(lambda plugins=plugins: client(plugins).close(), 500)
        print(f"  {name:30s} {figure:6.1f} us")


if __name__ == "__main__":
    main()
