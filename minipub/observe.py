"""The observed publish path: what observability hooks see, and running under them safely.

Used only when a plugin implements an observability hook. The rule held here: whatever a
hook does (raise before or after the yield, swallow an error, return something else), the
publish is sent exactly once per attempt and the caller gets its own result or error.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from .transports.base import _SECRET_HEADERS, HTTPRequest, HTTPResponse

if TYPE_CHECKING:
    from .errors import MinipubError
    from .models import PublishResponse
    from .plugins import Plugins
    from .request import PublishRequest

__all__ = ["PublishInfo", "AttemptInfo", "Observer", "observe_publish"]


class _Call:
    """An outcome recorded by the innermost call, whatever the wrappers around it do."""

    __slots__ = ("_run", "_started", "duration", "error", "response")

    def __init__(self) -> None:
        self.response: Any = None
        self.error: Optional[Exception] = None
        self.duration: Optional[float] = None
        self._started = False
        self._run: Callable[[], Any] = _never

    def _execute(self) -> None:
        self._started = True
        start = time.perf_counter()
        try:
            self.response = self._run()
        except Exception as error:
            self.error = error
        finally:
            self.duration = time.perf_counter() - start

    def _result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.response

    def _core(self) -> Any:
        """The innermost hook implementation: run once, then hand the outcome to the wrappers."""
        if not self._started:
            self._execute()
        return self._result()


def _never() -> Any:  # pragma: no cover - replaced before any call
    raise RuntimeError("nothing to run")


class PublishInfo(_Call):
    """One publish call, as observability hooks see it (no credentials, no event data).

    Before: ``event_id``, ``tenant_id``, ``topic``, ``url`` (the publish URL). Kept up to
    date: ``attempts`` (HTTP requests sent), ``retries`` (retries decided), ``status`` (the
    last HTTP status, or None). After: ``response`` (``PublishResponse``) or ``error``,
    ``duration`` (seconds).
    """

    __slots__ = ("attempts", "event_id", "retries", "status", "tenant_id", "topic", "url")

    def __init__(self, event_id: str, tenant_id: str, topic: str, url: str) -> None:
        super().__init__()
        self.event_id = event_id
        self.tenant_id = tenant_id
        self.topic = topic
        self.url = url
        self.attempts = 0
        self.retries = 0
        self.status: Optional[int] = None

    def __repr__(self) -> str:
        return (f"PublishInfo(event_id={self.event_id!r}, topic={self.topic!r}, attempts={self.attempts}, "
                f"status={self.status!r}, error={type(self.error).__name__ if self.error else None})")


class AttemptInfo(_Call):
    """One HTTP request of a publish: ``number``, ``refreshed``; after it ``response`` or ``error``, ``duration``."""

    __slots__ = ("number", "refreshed")

    def __init__(self, number: int, refreshed: bool) -> None:
        super().__init__()
        self.number = number
        self.refreshed = refreshed

    def __repr__(self) -> str:
        status = self.response.status if self.response is not None else None
        return f"AttemptInfo(number={self.number}, refreshed={self.refreshed}, status={status!r})"


def _run_under(plugins: Plugins, hook_name: str, call: _Call, kwargs: Dict[str, Any]) -> Any:
    """Call an observability wrapper hook around ``call``; its outcome is the call's, always."""
    if hook_name in plugins.observed:
        try:
            getattr(plugins.hook, hook_name)(**kwargs)
        except Exception as exc:
            if not (call._started and exc is call.error):
                plugins.warn(hook_name, exc)
    if not call._started:  # a wrapper failed before the call ran: run it unobserved
        call._execute()
    return call._result()


def _redact_response(response: HTTPResponse, key: Optional[str]) -> HTTPResponse:
    """The response with any echo of the key replaced by ``***`` (a copy only when needed)."""
    if not key:
        return response
    secret = key.encode("utf-8")
    headers = response.headers
    if secret not in response.body and not any(key in v for v in headers.values()):
        return response
    return HTTPResponse(response.status, {k: v.replace(key, "***") for k, v in headers.items()},
                        response.body.replace(secret, b"***"), response.truncated)


class Observer:
    """The hooks of one publish: ``send`` wraps the transport, ``retry_decision`` feeds the loop's callback."""

    def __init__(self, plugins: Plugins, publish: PublishInfo, send: Callable[[HTTPRequest], HTTPResponse]) -> None:
        self._plugins = plugins
        self._publish = publish
        self._send = send
        self._decided = True  # a request sent with no retry decision since the last one repeats it (401)

    def send(self, request: HTTPRequest) -> HTTPResponse:
        publish = self._publish
        publish.attempts += 1
        attempt = AttemptInfo(publish.attempts, refreshed=not self._decided)
        self._decided = False
        auth = request.headers.get("Authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else None
        seen = HTTPRequest(request.method, request.url, request.redacted_headers(), request.body, request.timeout)
        before = {name.lower() for name in request.headers}

        sent: List[HTTPResponse] = []

        def run() -> HTTPResponse:
            for name, value in seen.headers.items():  # headers the wrappers added
                if name.lower() not in before and name.lower() not in _SECRET_HEADERS:
                    request.headers[name] = value
            response = self._send(request)
            publish.status = response.status
            sent.append(response)
            return _redact_response(response, key)

        attempt._run = run
        _run_under(self._plugins, "minipub_attempt", attempt, {"request": seen, "attempt": attempt, "publish": publish})
        return sent[0]

    def retry_decision(self, number: int, error: MinipubError, delay: Optional[float]) -> None:
        self._decided = True
        if delay is not None:
            self._publish.retries += 1
        if "minipub_retry_decision" in self._plugins.observed:
            try:
                self._plugins.hook.minipub_retry_decision(publish=self._publish, error=error, delay=delay)
            except Exception as exc:
                self._plugins.warn("minipub_retry_decision", exc)


def observe_publish(
    plugins: Plugins,
    request: PublishRequest,
    url: str,
    send: Callable[[HTTPRequest], HTTPResponse],
    run: Callable[[Observer], PublishResponse],
) -> PublishResponse:
    """Run one publish (``run``, the client's retry loop) under the publish and attempt hooks."""
    publish = PublishInfo(request.event_id, request.tenant_id, request.topic, url)
    observer = Observer(plugins, publish, send)
    publish._run = lambda: run(observer)
    result: PublishResponse = _run_under(plugins, "minipub_publish", publish, {"publish": publish})
    return result
