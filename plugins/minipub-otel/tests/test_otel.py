"""OpenTelemetry spans, metrics and traceparent, and JSON-lines logs, against the embedded server."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from conftest import API_KEY, Telemetry

from minipub import SDK, BackoffStrategy, RetryConfig
from minipub.errors import ConnectError, InternalServerError
from minipub.plugins import reset_autoload
from minipub.testing import OutpostServer
from minipub_otel import JsonLinesLogger, OtelPlugin
from minipub_otel.jsonlog import from_env

RETRY = RetryConfig("backoff", BackoffStrategy(1, 5, 2.0, 10_000), True, max_attempts=3)


def publish(sdk: SDK, **overrides: Any) -> Any:
    args: Dict[str, Any] = {"tenant_id": "acme", "topic": "order.paid", "data": {"order": 7}}
    args.update(overrides)
    return sdk.publish.event(**args)


def client(server: OutpostServer, *plugins: Any, **options: Any) -> SDK:
    return SDK(API_KEY, server_url=server.url, plugins=list(plugins), retry_config=RETRY, sleep=lambda s: None,
               **options)


def by_kind(spans: Any, kind: str) -> List[Any]:
    return [span for span in spans if span.kind.name == kind]


def test_spans_for_a_publish_and_its_attempts_with_traceparent(server: OutpostServer, telemetry: Telemetry) -> None:
    server.fail_next(503)
    with client(server, OtelPlugin(telemetry.tracer_provider, telemetry.meter_provider)) as sdk:
        response = publish(sdk)
    spans = telemetry.spans.get_finished_spans()
    (root,) = by_kind(spans, "PRODUCER")
    first, second = by_kind(spans, "CLIENT")
    assert root.name == "publish order.paid" and root.parent is None
    assert dict(root.attributes) == {
        "minipub.topic": "order.paid", "minipub.tenant_id": "acme", "minipub.event_id": response.id,
        "minipub.attempts": 2, "minipub.retries": 1, "minipub.outcome": "accepted", "minipub.duplicate": False,
        "http.response.status_code": 202,
    }
    assert root.status.status_code.name == "UNSET"
    (event,) = root.events
    assert event.name == "minipub.retry_decision" and event.attributes["minipub.retry"] is True
    assert event.attributes["error.type"] == "minipub.errors.InternalServerError"
    port = server.port
    assert first.name == "POST" and dict(first.attributes) == {
        "http.request.method": "POST", "server.address": "127.0.0.1", "server.port": port,
        "url.full": f"http://127.0.0.1:{port}/api/v1/publish", "http.response.status_code": 503, "error.type": "503",
    }
    assert first.status.status_code.name == "ERROR"
    assert second.attributes["http.request.resend_count"] == 1 and second.attributes["http.response.status_code"] == 202
    for span in (first, second):
        assert span.parent.span_id == root.context.span_id and span.context.trace_id == root.context.trace_id
    sent = [request.headers["traceparent"] for request in server.requests]
    assert sent == [f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-{span.context.trace_flags:02x}" for span in (first, second)]
    for span in spans:
        assert API_KEY not in json.dumps(dict(span.attributes)) + str([dict(e.attributes) for e in span.events])


def test_metrics(server: OutpostServer, telemetry: Telemetry) -> None:
    plugin = OtelPlugin(telemetry.tracer_provider, telemetry.meter_provider)
    with client(server, plugin) as sdk:
        server.fail_next(429)
        publish(sdk, id="evt_1")
        publish(sdk, id="evt_1")  # duplicate
        server.fail_next(500, times=3)
        with pytest.raises(InternalServerError):
            publish(sdk)
    found = telemetry.metrics()
    durations = {point.attributes["minipub.outcome"]: point.count for point in found["minipub.publish.duration"]}
    assert durations == {"accepted": 1, "duplicate": 1, "error": 1}
    outcomes = {(p.attributes["minipub.outcome"], p.attributes.get("error.type")): p.value
                for p in found["minipub.publish.outcomes"]}
    assert outcomes == {("accepted", None): 1, ("duplicate", None): 1,
                        ("error", "minipub.errors.InternalServerError"): 1}
    assert sum(p.value for p in found["minipub.publish.attempts"]) == 6
    assert sum(p.value for p in found["minipub.publish.retries"]) == 3
    statuses = {p.attributes["http.response.status_code"]: p.count for p in found["http.client.request.duration"]}
    assert statuses == {429: 1, 202: 2, 500: 3}


def test_transport_errors_are_recorded(telemetry: Telemetry) -> None:
    plugin = OtelPlugin(telemetry.tracer_provider, telemetry.meter_provider)
    with SDK(API_KEY, server_url="http://127.0.0.1:9/api", plugins=[plugin], retry_config=RetryConfig("none")) as sdk, \
            pytest.raises(ConnectError):
        publish(sdk)
    spans = telemetry.spans.get_finished_spans()
    (root,) = by_kind(spans, "PRODUCER")
    (attempt,) = by_kind(spans, "CLIENT")
    for span in (root, attempt):
        assert span.attributes["error.type"] == "minipub.errors.ConnectError"
        assert span.status.status_code.name == "ERROR"
        assert [e.name for e in span.events if e.name == "exception"] == ["exception"]
    assert root.attributes["minipub.outcome"] == "error" and "http.response.status_code" not in root.attributes


@pytest.fixture(scope="session")
def global_telemetry() -> Telemetry:
    """The process-wide providers (settable once), as an application would set them up."""
    from opentelemetry import metrics, trace

    telemetry = Telemetry()
    trace.set_tracer_provider(telemetry.tracer_provider)
    metrics.set_meter_provider(telemetry.meter_provider)
    return telemetry


@pytest.fixture
def autoload(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("MINIPUB_DISABLE_PLUGIN_AUTOLOAD")
    reset_autoload()
    yield
    reset_autoload()


def test_the_entry_point_uses_the_global_providers(
    autoload: None, global_telemetry: Telemetry, server: OutpostServer
) -> None:
    global_telemetry.spans.clear()
    with SDK(API_KEY, server_url=server.url, transport="http.client") as sdk:
        assert sdk.plugins is not None and "otel" in sdk.plugins.names
        assert "minipub_attempt" in sdk.plugins.observed
        response = publish(sdk)
    (root,) = by_kind(global_telemetry.spans.get_finished_spans(), "PRODUCER")
    assert root.attributes["minipub.event_id"] == response.id and root.attributes["minipub.attempts"] == 1
    assert "traceparent" in server.requests[0].headers


def test_json_lines_one_per_attempt_and_outcome(server: OutpostServer) -> None:
    stream = io.StringIO()
    server.fail_next(503, body=f"echo {API_KEY}")
    with client(server, JsonLinesLogger(stream, clock=lambda: 1700000000.0)) as sdk:
        response = publish(sdk)
    assert API_KEY not in stream.getvalue()
    first, second, outcome = (json.loads(line) for line in stream.getvalue().splitlines())
    common = {"time": 1700000000.0, "event_id": response.id, "topic": "order.paid", "tenant_id": "acme"}
    url = server.url + "/publish"
    assert first.pop("duration_ms") >= 0 and second.pop("duration_ms") >= 0 and outcome.pop("duration_ms") >= 0
    assert first == {**common, "event": "minipub.attempt", "attempt": 1, "refreshed": False, "method": "POST",
                     "url": url, "status": 503, "error_type": None, "error": None}
    assert second == {**first, "attempt": 2, "status": 202}
    assert outcome == {**common, "event": "minipub.publish", "outcome": "accepted", "attempts": 2, "retries": 1,
                       "status": 202, "duplicate": False, "error_type": None, "error": None}


def test_json_lines_for_an_error_to_a_file(tmp_path: Path) -> None:
    path = tmp_path / "minipub.jsonl"
    with SDK(API_KEY, server_url="http://127.0.0.1:9/api", plugins=[from_env(str(path))],
             retry_config=RetryConfig("none")) as sdk, pytest.raises(ConnectError):
        publish(sdk)
    attempt, outcome = (json.loads(line) for line in path.read_text().splitlines())
    assert attempt["error_type"] == outcome["error_type"] == "ConnectError" and attempt["status"] is None
    assert outcome["outcome"] == "error" and outcome["attempts"] == 1 and outcome["duplicate"] is None


def test_json_lines_entry_point_is_off_unless_configured(autoload: None, server: OutpostServer) -> None:
    with SDK(API_KEY, server_url=server.url, plugins=[from_env("")], transport="http.client") as sdk:
        assert sdk.plugins is not None and "jsonlog" in sdk.plugins.names
        observed = {impl.plugin for hook in sdk.plugins.observed for impl in sdk.plugins.impls[hook]}
        assert "jsonlog" not in observed
    assert isinstance(from_env("stdout"), JsonLinesLogger) and isinstance(from_env("1"), JsonLinesLogger)
