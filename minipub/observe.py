"""The observed publish path: what observability hooks see, and running under them safely.

Used only when a plugin implements an observability hook. The rule held here: whatever a
hook does (raise before or after its yield, swallow the error, return something else), the
publish is sent exactly as without it, every other plugin still sees it, and the caller gets
the publish's own result or error. A failing hook is reported as a ``PluginWarning``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from .secret import Secret, redact, redact_bytes
from .transports.base import _SECRET_HEADERS, HTTPRequest, HTTPResponse

if TYPE_CHECKING:
    from .errors import MinipubError
    from .models import PublishResponse
    from .plugins import Plugins
    from .request import PublishRequest

__all__ = ["PublishInfo", "AttemptInfo", "Observer", "observe_publish"]


class _Outcome:
    """A call's outcome: ``response`` or ``error``, and ``duration`` in seconds."""

    __slots__ = ("duration", "error", "response")

    def __init__(self) -> None:
        self.response: Any = None
        self.error: Optional[Exception] = None
        self.duration: Optional[float] = None

    def _execute(self, run: Callable[[], Any]) -> None:
        start = time.perf_counter()
        try:
            self.response = run()
        except Exception as error:
            self.error = error
        finally:
            self.duration = time.perf_counter() - start


class PublishInfo(_Outcome):
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


class AttemptInfo(_Outcome):
    """One HTTP request of a publish: ``number``, ``refreshed``; after it ``response`` or ``error``, ``duration``."""

    __slots__ = ("number", "refreshed")

    def __init__(self, number: int, refreshed: bool) -> None:
        super().__init__()
        self.number = number
        self.refreshed = refreshed

    def __repr__(self) -> str:
        status = self.response.status if self.response is not None else None
        return f"AttemptInfo(number={self.number}, refreshed={self.refreshed}, status={status!r})"


def _run_under(plugins: Plugins, hook_name: str, call: _Outcome, run: Callable[[], Any],
               kwargs: Dict[str, Any]) -> None:
    """Run ``run`` once inside every plugin's wrapper of ``hook_name``, each isolated from the others."""
    entered = []
    for impl in plugins.impls[hook_name]:
        try:
            wrapper = impl(kwargs)
            next(wrapper)
        except StopIteration:
            impl.warn(hook_name, RuntimeError("the wrapper returned without yielding"))
        except Exception as exc:
            impl.warn(hook_name, exc)
        else:
            entered.append((impl, wrapper))
    call._execute(run)
    for impl, wrapper in reversed(entered):
        try:
            if call.error is not None:
                wrapper.throw(call.error)
            else:
                wrapper.send(call.response)
        except StopIteration:
            continue  # done; whatever it returned is ignored
        except Exception as exc:
            if exc is not call.error:
                impl.warn(hook_name, exc)
            continue
        wrapper.close()
        impl.warn(hook_name, RuntimeError("the wrapper yielded more than once"))


def _bearer_key(request: HTTPRequest) -> Optional[Secret]:
    """The bearer key of a request, as a Secret (to redact its echoes), or None."""
    auth = next((v for k, v in request.secret_headers.items() if k.lower() == "authorization"), None)
    value = "" if auth is None else auth.reveal()
    return Secret(value[7:]) if value.startswith("Bearer ") and len(value) > 7 else None


def _redact_response(response: HTTPResponse, key: Optional[Secret]) -> HTTPResponse:
    """The response with any echo of the key replaced (a copy only when needed; ``minipub.secret.redact``)."""
    if not key:
        return response
    body = redact_bytes(response.body, key, cut=response.truncated)
    headers = {redact(k, key): redact(v, key) for k, v in response.headers.items()}
    if body == response.body and headers == response.headers:
        return response
    return HTTPResponse(response.status, headers, body, response.truncated)


class Observer:
    """The hooks of one publish: ``send`` wraps the transport, ``retry_decision`` is the loop's callback."""

    def __init__(self, plugins: Plugins, publish: PublishInfo, send: Callable[[HTTPRequest], HTTPResponse]) -> None:
        self._plugins = plugins
        self._publish = publish
        self._send = send
        self._decided = True  # a request with no retry decision since the last one repeats it (401)

    def send(self, request: HTTPRequest) -> HTTPResponse:
        """Send through the transport inside the ``minipub_attempt`` wrappers."""
        publish = self._publish
        publish.attempts += 1
        attempt = AttemptInfo(publish.attempts, refreshed=not self._decided)
        self._decided = False
        if "minipub_attempt" not in self._plugins.observed:
            response = self._send(request)
            publish.status = response.status
            return response
        key = _bearer_key(request)
        seen = HTTPRequest(request.method, request.url, request.redacted_headers(), request.body, request.timeout)
        before = {name.lower() for name in (*request.public_headers, *request.secret_headers)}
        sent: List[HTTPResponse] = []

        def run() -> HTTPResponse:
            for name, value in seen.headers.items():  # headers the wrappers added
                if name.lower() not in before and name.lower() not in _SECRET_HEADERS:
                    request.set_header(name, value)
            response = self._send(request)
            publish.status = response.status
            sent.append(response)
            return _redact_response(response, key)

        _run_under(self._plugins, "minipub_attempt", attempt, run,
                   {"request": seen, "attempt": attempt, "publish": publish})
        if attempt.error is not None:
            raise attempt.error
        return sent[0]

    def retry_decision(self, number: int, error: MinipubError, delay: Optional[float]) -> None:
        """Count the decision, then tell every ``minipub_retry_decision`` implementation."""
        self._decided = True
        if delay is not None:
            self._publish.retries += 1
        kwargs = {"publish": self._publish, "error": error, "delay": delay}
        for impl in self._plugins.impls["minipub_retry_decision"]:
            try:
                impl(kwargs)
            except Exception as exc:
                impl.warn("minipub_retry_decision", exc)


def observe_publish(
    plugins: Plugins,
    request: PublishRequest,
    url: str,
    send: Callable[[HTTPRequest], HTTPResponse],
    run: Callable[[Observer], PublishResponse],
) -> PublishResponse:
    """Run one publish (``run``: the client's retry loop) under the publish and attempt hooks."""
    publish = PublishInfo(request.event_id, request.tenant_id, request.topic, url)
    observer = Observer(plugins, publish, send)
    _run_under(plugins, "minipub_publish", publish, lambda: run(observer), {"publish": publish})
    if publish.error is not None:
        raise publish.error
    result: PublishResponse = publish.response
    return result
