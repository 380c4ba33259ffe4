"""Fixtures: the embedded Outpost server (from minipub's pytest plugin) and a clean environment (entry points off unless a test turns them on)."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

from minipub.testing import OutpostServer

API_KEY = "sk_test_" + "0te1" * 6
ENV = ("OUTPOST_API_KEY", "OUTPOST_API_BASE_URL", "OUTPOST_API_KEY_FILE", "OUTPOST_API_KEY_COMMAND",
       "OUTPOST_API_KEY_COMMAND_TTL", "MINIPUB_LOG_JSON", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINIPUB_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture(scope="session")
def outpost_server_options() -> Dict[str, Any]:
    """The session's embedded server (minipub's pytest plugin, ``outpost_session_server``): this suite's key."""
    return {"api_key": API_KEY}


@pytest.fixture
def server(outpost_shared_server: OutpostServer) -> OutpostServer:
    """The session's embedded server, reset for this test (minipub's pytest plugin)."""
    return outpost_shared_server


class Telemetry:
    """In-memory OpenTelemetry: a tracer provider with a span exporter, a meter provider with a reader."""

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def metrics(self) -> Dict[str, List[Any]]:
        """Metric name -> data points."""
        data = self.reader.get_metrics_data()
        found: Dict[str, List[Any]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()
