"""Structured logs without OpenTelemetry: one JSON line per HTTP attempt and per publish outcome.

Lines carry no credentials and no event data: ``{"time", "event": "minipub.attempt",
"event_id", "topic", "tenant_id", "attempt", "refreshed", "method", "url", "status",
"error_type", "error", "duration_ms"}`` and ``{"time", "event": "minipub.publish", "event_id",
"topic", "tenant_id", "outcome", "attempts", "retries", "status", "duplicate", "error_type",
"error", "duration_ms"}``. The ``jsonlog`` entry point is active when ``MINIPUB_LOG_JSON`` is
``stderr`` (or ``1``), ``stdout``, or a file path (appended to), read when it is loaded.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import IO, Any, Callable, Dict, Generator, Optional

from minipub.hookspecs import hookimpl

__all__ = ["JsonLinesLogger", "from_env", "plugin", "ENV"]

ENV = "MINIPUB_LOG_JSON"
_MAX_ERROR = 300
_Wrapper = Generator[None, Any, Any]


def _error_fields(error: Optional[BaseException]) -> Dict[str, Any]:
    if error is None:
        return {"error_type": None, "error": None}
    return {"error_type": type(error).__name__, "error": str(error)[:_MAX_ERROR]}


def _ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds * 1000, 3)


class JsonLinesLogger:
    """Writes one JSON object per line to ``stream`` (or appends to the file ``path``)."""

    #: Replaces the entry point's plugin when passed to ``SDK(plugins=...)``.
    minipub_plugin_name = "jsonlog"

    def __init__(self, stream: Optional[IO[str]] = None, *, path: Optional[str] = None,
                 clock: Callable[[], float] = time.time) -> None:
        if stream is not None and path is not None:
            raise ValueError("JsonLinesLogger takes a stream or a path, not both")
        self._stream = stream
        self._path = path
        self._clock = clock
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JsonLinesLogger(path={self._path!r})" if self._path else "JsonLinesLogger(stream)"

    def write(self, record: Dict[str, Any]) -> None:
        """Write one line (thread-safe)."""
        line = json.dumps({"time": round(self._clock(), 6), **record}, separators=(",", ":"), ensure_ascii=False,
                          default=str) + "\n"
        with self._lock:
            if self._path is not None:
                with open(self._path, "a", encoding="utf-8") as handle:
                    handle.write(line)
            else:
                stream = self._stream or sys.stderr
                stream.write(line)
                stream.flush()

    @staticmethod
    def _publish_fields(publish: Any) -> Dict[str, Any]:
        return {"event_id": publish.event_id, "topic": publish.topic, "tenant_id": publish.tenant_id}

    @hookimpl(wrapper=True)
    def minipub_attempt(self, request: Any, attempt: Any, publish: Any) -> _Wrapper:
        try:
            return (yield)
        finally:
            self.write({
                "event": "minipub.attempt", **self._publish_fields(publish), "attempt": attempt.number,
                "refreshed": attempt.refreshed, "method": request.method, "url": request.url,
                "status": attempt.response.status if attempt.response is not None else None,
                **_error_fields(attempt.error), "duration_ms": _ms(attempt.duration),
            })

    @hookimpl(wrapper=True)
    def minipub_publish(self, publish: Any) -> _Wrapper:
        try:
            return (yield)
        finally:
            response = publish.response
            outcome = "error" if publish.error is not None else ("duplicate" if response.duplicate else "accepted")
            self.write({
                "event": "minipub.publish", **self._publish_fields(publish), "outcome": outcome,
                "attempts": publish.attempts, "retries": publish.retries, "status": publish.status,
                "duplicate": None if response is None else response.duplicate,
                **_error_fields(publish.error), "duration_ms": _ms(publish.duration),
            })


class _Off:
    """The entry point's plugin while ``MINIPUB_LOG_JSON`` is unset: no hooks, so no cost."""

    minipub_plugin_name = "jsonlog"

    def __repr__(self) -> str:
        return f"JsonLinesLogger(off: {ENV} is not set)"


def from_env(value: Optional[str] = None) -> Any:
    """The logger ``MINIPUB_LOG_JSON`` asks for, or a plugin without hooks when it is unset."""
    target = (os.environ.get(ENV, "") if value is None else value).strip()
    if not target or target.lower() in ("0", "false", "off", "no"):
        return _Off()
    if target.lower() in ("1", "true", "on", "yes", "stderr", "-"):
        return JsonLinesLogger()
    if target.lower() == "stdout":
        return JsonLinesLogger(sys.stdout)
    return JsonLinesLogger(path=target)


plugin = from_env()
