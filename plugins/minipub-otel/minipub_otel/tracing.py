"""OpenTelemetry for minipub: a span per publish and per HTTP attempt, metrics, ``traceparent``.

Spans (HTTP client semantic conventions on the attempt spans):

* ``publish {topic}`` (PRODUCER), around the whole publish: ``minipub.topic``,
  ``minipub.tenant_id``, ``minipub.event_id``, ``minipub.attempts``, ``minipub.retries``,
  ``minipub.outcome`` (``accepted``, ``duplicate`` or ``error``), ``minipub.duplicate``,
  ``http.response.status_code`` (the last one), ``error.type``; an event per retry decision.
* ``POST`` (CLIENT), one per HTTP request, child of the publish span: ``http.request.method``,
  ``url.full`` (never with credentials), ``server.address``, ``server.port``,
  ``http.request.resend_count`` (from the second request on), ``http.response.status_code``,
  ``error.type`` (the status for 4XX/5XX, else the exception's class); status ERROR on failure.
  Its context is sent as W3C ``traceparent`` (the global propagator, unless one is given).

Metrics: ``minipub.publish.duration`` (histogram, s), ``minipub.publish.attempts``,
``minipub.publish.retries`` and ``minipub.publish.outcomes`` (counters), and the semantic
conventions' ``http.client.request.duration`` (histogram, s) per request.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Generator, Optional
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from minipub.hookspecs import hookimpl

__all__ = ["OtelPlugin", "plugin", "SCOPE"]

SCOPE = "minipub_otel"
_VERSION = "0.1.0"
_Wrapper = Generator[None, Any, Any]


def safe_url(url: str) -> str:
    """The URL without user info, query or fragment (``url.full`` never carries credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def error_type(error: BaseException) -> str:
    """The fully qualified class name, as ``error.type`` wants it."""
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def _outcome(publish: Any) -> str:
    if publish.error is not None:
        return "error"
    return "duplicate" if publish.response is not None and publish.response.duplicate else "accepted"


class OtelPlugin:
    """Spans and metrics on the given providers (default: the global ones, looked up lazily)."""

    #: Replaces the entry point's plugin when passed to ``SDK(plugins=...)``.
    minipub_plugin_name = "otel"

    def __init__(
        self,
        tracer_provider: Optional[trace.TracerProvider] = None,
        meter_provider: Optional[metrics.MeterProvider] = None,
        propagator: Any = None,
    ) -> None:
        self._tracer = trace.get_tracer(SCOPE, _VERSION, tracer_provider)
        meter = metrics.get_meter(SCOPE, _VERSION, meter_provider)
        self._propagator = propagator
        self._publish_duration = meter.create_histogram(
            "minipub.publish.duration", unit="s", description="Duration of publish calls, retries and waits included")
        self._attempts = meter.create_counter(
            "minipub.publish.attempts", unit="{request}", description="HTTP requests sent by publish calls")
        self._retries = meter.create_counter(
            "minipub.publish.retries", unit="{retry}", description="Retries the retry loop decided")
        self._outcomes = meter.create_counter(
            "minipub.publish.outcomes", unit="{publish}", description="Publish calls by outcome")
        self._request_duration = meter.create_histogram(
            "http.client.request.duration", unit="s", description="Duration of HTTP client requests")
        self._spans: Dict[int, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "OtelPlugin()"

    @hookimpl(wrapper=True)
    def minipub_publish(self, publish: Any) -> _Wrapper:
        attributes = {"minipub.topic": publish.topic, "minipub.tenant_id": publish.tenant_id,
                      "minipub.event_id": publish.event_id}
        with self._tracer.start_as_current_span(f"publish {publish.topic}", kind=SpanKind.PRODUCER,
                                                attributes=attributes, record_exception=False,
                                                set_status_on_exception=False) as span:
            with self._lock:
                self._spans[id(publish)] = span
            try:
                return (yield)
            finally:
                with self._lock:
                    self._spans.pop(id(publish), None)
                self._end_publish(span, publish)

    def _end_publish(self, span: Any, publish: Any) -> None:
        outcome = _outcome(publish)
        span.set_attribute("minipub.attempts", publish.attempts)
        span.set_attribute("minipub.retries", publish.retries)
        span.set_attribute("minipub.outcome", outcome)
        if publish.status is not None:
            span.set_attribute("http.response.status_code", publish.status)
        labels: Dict[str, Any] = {"minipub.outcome": outcome}
        if publish.error is not None:
            kind = error_type(publish.error)
            labels["error.type"] = kind
            span.set_attribute("error.type", kind)
            span.record_exception(publish.error)
            span.set_status(Status(StatusCode.ERROR, type(publish.error).__name__))
        else:
            span.set_attribute("minipub.duplicate", bool(publish.response.duplicate))
        if publish.duration is not None:
            self._publish_duration.record(publish.duration, labels)
        self._outcomes.add(1, labels)

    @hookimpl(wrapper=True)
    def minipub_attempt(self, request: Any, attempt: Any) -> _Wrapper:
        url = safe_url(request.url)
        parts = urlsplit(url)
        labels: Dict[str, Any] = {
            "http.request.method": request.method,
            "server.address": parts.hostname or "",
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        }
        attributes = {**labels, "url.full": url}
        if attempt.number > 1:
            attributes["http.request.resend_count"] = attempt.number - 1
        with self._tracer.start_as_current_span(request.method, kind=SpanKind.CLIENT, attributes=attributes,
                                                record_exception=False, set_status_on_exception=False) as span:
            if self._propagator is not None:
                self._propagator.inject(request.headers)
            else:
                propagate.inject(request.headers)
            try:
                return (yield)
            finally:
                if attempt.response is not None:
                    status = attempt.response.status
                    span.set_attribute("http.response.status_code", status)
                    labels["http.response.status_code"] = status
                    if status >= 400:
                        labels["error.type"] = str(status)
                        span.set_status(Status(StatusCode.ERROR))
                elif attempt.error is not None:
                    labels["error.type"] = error_type(attempt.error)
                    span.record_exception(attempt.error)
                    span.set_status(Status(StatusCode.ERROR, type(attempt.error).__name__))
                if "error.type" in labels:
                    span.set_attribute("error.type", labels["error.type"])
                if attempt.duration is not None:
                    self._request_duration.record(attempt.duration, labels)
                self._attempts.add(1, labels)

    @hookimpl
    def minipub_retry_decision(self, publish: Any, error: BaseException, delay: Optional[float]) -> None:
        with self._lock:
            span = self._spans.get(id(publish))
        attributes: Dict[str, Any] = {"minipub.attempts": publish.attempts, "error.type": error_type(error),
                                      "minipub.retry": delay is not None}
        if delay is not None:
            attributes["minipub.retry.delay_s"] = delay
            self._retries.add(1, {"error.type": error_type(error)})
        if span is not None:
            span.add_event("minipub.retry_decision", attributes)


#: The entry point's plugin: the global providers (set them up before publishing).
plugin = OtelPlugin()
