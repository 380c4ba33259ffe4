"""minipub-otel: OpenTelemetry spans and metrics for each publish and attempt, or JSON-lines logs.

Installed, both are found through ``minipub`` entry points: ``otel`` (the global tracer and
meter providers, W3C ``traceparent`` on every request) and ``jsonlog`` (active when
``MINIPUB_LOG_JSON`` is set). Configured by arguments instead:
``SDK(plugins=[OtelPlugin(tracer_provider=..., meter_provider=...)])`` or
``SDK(plugins=[JsonLinesLogger(sys.stderr)])``. ``JsonLinesLogger`` needs no OpenTelemetry.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OtelPlugin", "JsonLinesLogger"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "OtelPlugin":
        from .tracing import OtelPlugin

        return OtelPlugin
    if name == "JsonLinesLogger":
        from .jsonlog import JsonLinesLogger

        return JsonLinesLogger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
