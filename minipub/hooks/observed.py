"""The observed publish path: the publish and each of its HTTP requests run inside pluggy's hook calls.

Used only when a plugin implements an observability hook. The call itself is put in the info
object the hook gets (``PublishInfo``, ``AttemptInfo``) and run by the innermost implementation
(``core.py``); the guards (``guard.py``) make sure that whatever a plugin does, the publish is
sent exactly as without it and the caller gets the publish's own result or error. Hooks see the
request with its credentials as ``***`` and the response with every echo of the key redacted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, List, Optional

from ..secret import Secret, redact_bytes, redact_data
from ..transports.base import HTTPRequest, HTTPResponse
from .specs import AttemptInfo, PublishInfo

if TYPE_CHECKING:
    from ..errors import MinipubError
    from ..models import PublishResponse
    from ..request import PublishRequest
    from .manager import Plugins

__all__ = ["Observer", "observe_publish"]

#: What hooks see of a credential header.
_SHOWN = Secret("***")


def _redacted(response: HTTPResponse, key: Optional[Secret]) -> HTTPResponse:
    """The response with any echo of the key replaced (a copy only when needed; ``minipub.secret``)."""
    if not key:
        return response
    if response.truncated:  # its cut end may hold the start of an echo: redacted on its own
        headers = redact_data(dict(response.headers), key)
        body = redact_bytes(response.body, key, cut=True)
    else:  # one pass (the key's forms computed once) over the headers and the body
        headers, text = redact_data([dict(response.headers), response.body.decode("utf-8", "surrogateescape")], key)
        body = text.encode("utf-8", "surrogateescape")
    if body == response.body and headers == response.headers:
        return response
    return HTTPResponse(response.status, headers, body, response.truncated)


class Observer:
    """The hooks of one publish: ``send`` runs one HTTP request, ``retry_decision`` is the loop's callback."""

    __slots__ = ("_decided", "_plugins", "_publish", "_send")

    def __init__(self, plugins: Plugins, publish: PublishInfo, send: Callable[[HTTPRequest], HTTPResponse]) -> None:
        self._plugins = plugins
        self._publish = publish
        self._send = send
        self._decided = True  # a request with no retry decision since the last one repeats it (401)

    def send(self, request: HTTPRequest, key: Optional[Secret]) -> HTTPResponse:
        """Send ``request`` (which carries ``key``) through the transport, inside the ``minipub_attempt`` hook."""
        publish = self._publish
        publish.attempts += 1
        attempt = AttemptInfo(publish.attempts, refreshed=not self._decided)
        self._decided = False
        if "minipub_attempt" not in self._plugins.observed:
            response = self._send(request)
            publish.status = response.status
            return response
        seen = HTTPRequest.split(request.method, request.url, dict(request.public_headers),
                                 dict.fromkeys(request.secret_headers, _SHOWN), request.body, request.timeout)
        before = {name.lower() for name in (*request.public_headers, *request.secret_headers)}
        sent: List[HTTPResponse] = []

        def run() -> HTTPResponse:
            for name, value in seen.public_headers.items():  # headers the wrappers added (credentials are not)
                if name.lower() not in before:
                    request.set_header(name, value)
            response = self._send(request)
            publish.status = response.status
            sent.append(response)
            return _redacted(response, key)

        attempt._run = run
        self._plugins.hook.minipub_attempt(request=seen, attempt=attempt, publish=publish)
        return sent[0]

    def retry_decision(self, number: int, error: MinipubError, delay: Optional[float]) -> None:
        """Count the decision, then call the ``minipub_retry_decision`` hook."""
        self._decided = True
        if delay is not None:
            self._publish.retries += 1
        if "minipub_retry_decision" in self._plugins.observed:
            self._plugins.hook.minipub_retry_decision(publish=self._publish, error=error, delay=delay)


def observe_publish(
    plugins: Plugins,
    request: PublishRequest,
    url: str,
    send: Callable[[HTTPRequest], HTTPResponse],
    run: Callable[[Observer], PublishResponse],
) -> PublishResponse:
    """Run one publish (``run``: the client's retry loop, sending through the observer) inside the publish hook."""
    publish = PublishInfo(request.event_id, request.tenant_id, request.topic, url)
    observer = Observer(plugins, publish, send)
    publish._run = lambda: run(observer)
    result: PublishResponse = (plugins.hook.minipub_publish(publish=publish) if "minipub_publish" in plugins.observed
                               else publish._execute())
    return result
