"""The client: ``SDK(...).publish.event(...)``, the path of every publish.

build request → auth → transport → classify response → retry or return.
"""

from __future__ import annotations

import os
import sys
import time as _time

from . import _log
from ._sync import ready, run_sync
from ._version import __version__
from .auth import API_KEY_ENV, StaticKey, from_provider, provided_key, resolve_auth
from .errors import ConfigurationError, MinipubError, UnauthorizedError, ValidationError
from .fields import build, check_retry_config, timeout_seconds
from .models import PublishResponse
from .request import PublishRequest
from .response import parse_publish_response
from .retry import (
    DEFAULT_RETRY_CONFIG,
    PER_CLIENT_BUDGET,
    RetryBudget,
    RetryConfig,
    RetryState,
    retrying,
)
from .secret import Secret
from .transports import DEFAULT_TRANSPORT, create_transport
from .transports.base import DEFAULT_MAX_BODY, HTTPRequest, HTTPResponse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Awaitable, Callable, Dict, Iterable, Optional, Tuple, Union

    from typing_extensions import Unpack

    from .auth import AuthProvider
    from .fields import EventCall
    from .hooks.manager import Plugins
    from .retry import RetryObserver
    from .transports.base import Transport


__all__ = ["SDK", "Publish", "DEFAULT_SERVER_URL", "BASE_URL_ENV", "DEFAULT_TIMEOUT_MS"]

#: The spec's first server entry: managed Outpost.
DEFAULT_SERVER_URL = "https://api.outpost.hookdeck.com/2025-07-01"
BASE_URL_ENV = "OUTPOST_API_BASE_URL"
#: Per-attempt timeout.
DEFAULT_TIMEOUT_MS = 10_000
USER_AGENT = f"minipub/{__version__} python/{sys.version_info[0]}.{sys.version_info[1]}"


def check_server_url(url: object) -> str:
    """An http(s) base URL without credentials, query or fragment; trailing slash removed."""
    from ._url import urlsplit

    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"server_url must be a non-empty str such as {DEFAULT_SERVER_URL!r}")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"server_url must start with https:// or http:// and name a host, e.g. {DEFAULT_SERVER_URL!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError("server_url must not contain credentials; pass the key as admin_api_key")
    if parts.query or parts.fragment:
        raise ConfigurationError("server_url must not have a query or fragment")
    try:
        _ = parts.port
    except ValueError:
        raise ConfigurationError("server_url has an invalid port") from None
    return url.strip().rstrip("/")


class SDK:
    """An Outpost client. Thread-safe; use as a context manager or call ``close()``.

    ``admin_api_key`` falls back to ``OUTPOST_API_KEY``, ``server_url`` to
    ``OUTPOST_API_BASE_URL`` then the managed Outpost URL. ``transport`` is a built-in or
    plugin name (``"http.client"``, ``"lean"``, ``"urllib"``, ``"httpx"``) or any object with ``send``/``close``.
    ``plugins`` are registered for this client, besides the ``minipub`` entry points
    (see ``minipub/hookspecs.py``).
    """

    def __init__(
        self,
        admin_api_key: Optional[str] = None,
        *,
        server_url: Optional[str] = None,
        timeout_ms: float = DEFAULT_TIMEOUT_MS,
        retry_config: Optional[RetryConfig] = None,
        transport: Union[str, Transport, None] = None,
        auth: Optional[AuthProvider] = None,
        ca_file: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: Optional[str] = None,
        ssl_context: Any = None,
        proxy: Optional[str] = "env",
        max_response_bytes: int = DEFAULT_MAX_BODY,
        retry_budget: Optional[RetryBudget] = PER_CLIENT_BUDGET,
        clock: Callable[[], float] = _time.monotonic,
        sleep: Callable[[float], None] = _time.sleep,
        plugins: Optional[Iterable[object]] = None,
    ) -> None:
        from .hooks.entrypoints import automatic

        try:  # the key is held as a Secret from here on; no frame of a traceback shows it
            static = None if admin_api_key is None else StaticKey(admin_api_key)
        finally:
            admin_api_key = None
        #: The client's plugins (``minipub.hooks.manager.Plugins``), or None: then no hook is ever called.
        if plugins is None and not automatic():  # no plugin: the manager (and pluggy) is never imported
            self.plugins: Optional[Plugins] = None
        else:
            from .hooks.manager import load_plugins

            self.plugins = load_plugins(plugins)
        self.server_url = check_server_url(server_url or os.environ.get(BASE_URL_ENV) or DEFAULT_SERVER_URL)
        if static is None and auth is None and self.plugins is not None:
            auth = self.plugins.auth(self.server_url)
        self._publish_url = self.server_url + "/publish"
        self._timeout = timeout_seconds(timeout_ms, "timeout_ms")
        if retry_config is not None and not isinstance(retry_config, RetryConfig):
            raise ValidationError("retry_config must be a minipub.RetryConfig")
        self.retry_config = retry_config or DEFAULT_RETRY_CONFIG
        if retry_budget is not None and not isinstance(retry_budget, RetryBudget):
            raise ValidationError("retry_budget must be a minipub.RetryBudget, or None for no budget")
        #: The retry budget shared by this client's publishes, or None (no budget: only the policy limits retries).
        self.retry_budget = RetryBudget() if retry_budget is PER_CLIENT_BUDGET else retry_budget
        self._clock = clock
        self._sleep = sleep
        if transport is None or isinstance(transport, str):
            options: Dict[str, Any] = {"ca_file": ca_file, "client_cert": client_cert, "client_key": client_key,
                                       "ssl_context": ssl_context, "max_body": max_response_bytes, "proxy": proxy}
            chosen = None if self.plugins is None else self.plugins.transport(transport, options)
            self._transport: Transport = (
                create_transport(transport or DEFAULT_TRANSPORT, **options) if chosen is None else chosen
            )
        elif callable(getattr(transport, "send", None)) and callable(getattr(transport, "close", None)):
            self._transport = transport
        else:
            raise ConfigurationError("transport must be a built-in name or an object with send() and close()")
        # A transport that sends no HTTP (``needs_api_key = False``, e.g. one that writes to Outpost's
        # publish queue) needs no admin key: one given is still checked, none is demanded.
        needs_key = getattr(self._transport, "needs_api_key", True) is not False
        try:
            self._auth: Optional[AuthProvider] = (
                static or resolve_auth(None, auth)
                if needs_key or static is not None or auth is not None or os.environ.get(API_KEY_ENV)
                else None
            )
        except BaseException:
            self._transport.close()
            raise
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
        # the sync path's send and sleep as the one publish path awaits them (made once: see _sync.py)
        self._send_now = _keyless(self._transport.send)
        self._sleep_now = ready(self._sleep)
        native = getattr(self._transport, "send_async", None)  # observability hooks wrap a blocking call:
        self._send_async_now = _keyless_async(native) if callable(native) and not (  # then a thread instead
            self.plugins is not None and self.plugins.observed) else None
        self.publish = Publish(self)

    def __repr__(self) -> str:
        # getattr: a traceback of a failed __init__ shows this repr (capture_locals) before every attribute is set
        transport = getattr(self, "_transport", None)
        return f"SDK(server_url={getattr(self, 'server_url', None)!r}, transport={type(transport).__name__})"

    @property
    def auth(self) -> Optional[AuthProvider]:
        """The key provider this client resolved (``admin_api_key``, ``auth=``, a plugin, or
        ``OUTPOST_API_KEY``), for tools that must send the same key elsewhere (``minipub ping``);
        None when the transport sends no HTTP and no key was given."""
        return self._auth

    def __enter__(self) -> SDK:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self._transport.close()

    @property
    def transport(self) -> Transport:
        """The transport this client sends with (built-in, plugin, or the object passed)."""
        return self._transport

    @property
    def timeout_ms(self) -> float:
        """The per-attempt timeout, in milliseconds (``timeout_ms=`` of a publish overrides it)."""
        return self._timeout * 1000

    # -- the seam: a built request in, its answer out ---------------------------------------

    def send(
        self,
        request: PublishRequest,
        *,
        retry_config: Optional[RetryConfig] = None,
        timeout_ms: Optional[float] = None,
        on_retry: Optional[RetryObserver] = None,
        wait_for_budget: bool = False,
    ) -> PublishResponse:
        """Publish an already built request (``minipub.request.build_publish_request``) through the retry loop.

        ``retry_config``/``timeout_ms`` default to the client's; ``on_retry(attempt, error, delay_or_None)``
        sees each retry decision; ``wait_for_budget``: an empty retry budget delays a retry instead of
        ending it (background workers).
        """
        _check_request(request, retry_config)
        return self._publish(request, retry_config, timeout_ms, on_retry, wait_for_budget)

    def _publish(self, request: PublishRequest, retry_config: Optional[RetryConfig], timeout_ms: Optional[float],
                 on_retry: Optional[RetryObserver] = None, wait_for_budget: bool = False) -> PublishResponse:
        config, timeout = self._resolve(retry_config, timeout_ms)
        plugins = self.plugins
        if plugins is None or not plugins.observed:  # no observability plugin: no hook call
            return run_sync(self._attempts(request, config, timeout, self._send_now, on_retry, wait_for_budget,
                                           self._sleep_now))
        from .hooks.observed import observe_publish

        return observe_publish(plugins, request, self._publish_url, self._transport.send, lambda observer: run_sync(
            self._attempts(request, config, timeout, ready(observer.send), _both(observer.retry_decision, on_retry),
                           wait_for_budget, self._sleep_now)))

    async def send_async(
        self, request: PublishRequest, *, retry_config: Optional[RetryConfig] = None,
        timeout_ms: Optional[float] = None, on_retry: Optional[RetryObserver] = None, wait_for_budget: bool = False,
    ) -> PublishResponse:
        """:meth:`send`, awaited: natively when the transport has ``send_async`` (a wait for a budget
        token is awaited too), else in a worker thread (``asyncio.to_thread``), as also when an
        observability plugin is installed: its hooks wrap a blocking call."""
        _check_request(request, retry_config)
        return await self._publish_async(request, retry_config, timeout_ms, on_retry, wait_for_budget)

    def sends_natively_async(self) -> bool:
        """Whether :meth:`send_async` runs on the event loop itself (a transport with ``send_async``
        and no observability plugin), rather than in a worker thread."""
        return self._send_async_now is not None

    async def _publish_async(self, request: PublishRequest, retry_config: Optional[RetryConfig],
                             timeout_ms: Optional[float], on_retry: Optional[RetryObserver] = None,
                             wait_for_budget: bool = False) -> PublishResponse:
        send = self._send_async_now
        if send is None:
            import asyncio

            return await asyncio.to_thread(self._publish, request, retry_config, timeout_ms, on_retry, wait_for_budget)
        config, timeout = self._resolve(retry_config, timeout_ms)
        return await self._attempts(request, config, timeout, send, on_retry, wait_for_budget, self._sleep_async,
                                    _real_sleep)

    async def _sleep_async(self, seconds: float) -> None:
        """The wait between async attempts: ``asyncio.sleep``, or an injected ``sleep=`` (a test's
        clock) run in a worker thread, so that it is honoured and never blocks the loop."""
        import asyncio

        if self._sleep is _time.sleep:
            await asyncio.sleep(seconds)
            return
        try:
            waiting = asyncio.get_running_loop().run_in_executor(None, self._sleep, seconds)
        except RuntimeError:  # an exit hook (the interpreter stopped its thread pools): wait here
            self._sleep(seconds)
            return
        await waiting

    def _resolve(self, retry_config: Optional[RetryConfig], timeout_ms: Optional[float]) -> Tuple[RetryConfig, float]:
        """A publish's retry config and per-attempt timeout (seconds): its own, else the client's."""
        timeout = self._timeout if timeout_ms is None else timeout_seconds(timeout_ms, "timeout_ms")
        return retry_config or self.retry_config, timeout

    # -- one publish, written once for the sync and async paths -----------------------------

    async def _attempts(
        self,
        request: PublishRequest,
        config: RetryConfig,
        timeout: float,
        send: Callable[[HTTPRequest, Optional[Secret]], Awaitable[HTTPResponse]],
        on_retry: Optional[RetryObserver],
        wait_for_budget: bool,
        sleep: Callable[[float], Awaitable[None]],
        token_sleep: Optional[Callable[[float], Awaitable[None]]] = None,
    ) -> PublishResponse:
        """auth → send → classify, under the retry loop; on a 401 a rotating key is reloaded once per
        publish and that attempt repeated once. Each attempt's timeout is cut to the publish's deadline."""
        state = RetryState(config, budget=self.retry_budget, clock=self._clock, on_retry_decision=on_retry,
                           wait_for_budget=wait_for_budget, token_sleep=token_sleep)
        refreshed = False

        async def attempt(number: int) -> PublishResponse:
            nonlocal refreshed
            while True:
                http_request, key = self._http_request(request, state.attempt_timeout(timeout))
                try:  # no local keeps the raw answer
                    return parse_publish_response(await send(http_request, key), request.event_id, key)
                except UnauthorizedError as error:
                    if refreshed or not self._should_refresh(error):
                        raise
                    refreshed = True  # the same attempt once more, with the reloaded key

        return await retrying(attempt, state, sleep)

    def _http_request(self, request: PublishRequest, timeout: float) -> Tuple[HTTPRequest, Optional[Secret]]:
        """The HTTP request of one attempt, and the key (as a Secret: no local of any frame holds it)."""
        auth = self._auth
        public = {**self._headers, **request.headers} if request.headers else self._headers
        if auth is None:  # a transport that needs no key: no Authorization header at all
            return HTTPRequest.split("POST", self._publish_url, public, {}, request.body, timeout), None
        key, bearer = auth.secrets() if type(auth) is StaticKey else provided_key(auth)
        http_request = HTTPRequest.split("POST", self._publish_url, public, {"Authorization": bearer}, request.body,
                                         timeout)
        if _log.enabled("DEBUG"):
            _log.log("DEBUG", "sending %r (event id %s)", http_request, request.event_id)
        return http_request, key

    def _should_refresh(self, error: UnauthorizedError) -> bool:
        if error.status_code != 401 or self._auth is None:
            return False
        return bool(from_provider(self._auth.refresh, "refresh()"))


def _keyless(send: Callable[[HTTPRequest], HTTPResponse]) -> Callable[[HTTPRequest, Optional[Secret]],
                                                                   Awaitable[HTTPResponse]]:
    """A transport's ``send`` as the publish path awaits it (the key is for observability hooks' redaction)."""

    async def sent(request: HTTPRequest, key: Optional[Secret]) -> HTTPResponse:
        return send(request)

    return sent


def _keyless_async(send: Callable[[HTTPRequest], Awaitable[HTTPResponse]]) -> Callable[
        [HTTPRequest, Optional[Secret]], Awaitable[HTTPResponse]]:
    async def sent(request: HTTPRequest, key: Optional[Secret]) -> HTTPResponse:
        return await send(request)

    return sent


async def _real_sleep(seconds: float) -> None:
    """How the async path waits for a budget token between looks: real time, as the budget counts it."""
    import asyncio  # only on the async path: a sync client never loads it

    await asyncio.sleep(seconds)


def _check_request(request: PublishRequest, retry_config: Optional[RetryConfig]) -> None:
    """What ``send`` is handed, checked (``Publish.event`` builds its request itself: ``fields.build``)."""
    if type(request) is not PublishRequest:
        raise ValidationError("request must be a minipub.request.PublishRequest, made by build_publish_request()")
    if retry_config is not None:
        check_retry_config(retry_config, "retry_config")


def _both(first: Optional[RetryObserver], second: Optional[RetryObserver]) -> Optional[RetryObserver]:
    """One retry-decision callback calling both (either may be None)."""
    if first is None or second is None:
        return first or second

    def both(number: int, error: MinipubError, delay: Optional[float]) -> None:
        first(number, error, delay)
        second(number, error, delay)

    return both


class Publish:
    """``sdk.publish``: the Outpost SDK's publish namespace (its fields: ``minipub/fields.py``)."""

    def __init__(self, sdk: SDK) -> None:
        self._sdk = sdk

    def event(self, **fields: Unpack[EventCall]) -> PublishResponse:
        """Publish one event. The event id (yours or generated) is the same on every retry."""
        request, retries, timeout_ms = build(fields)
        return self._sdk._publish(request, retries, timeout_ms)

    async def event_async(self, **fields: Unpack[EventCall]) -> PublishResponse:
        """:meth:`event`, awaitable: same arguments, retries and errors; never blocks the event loop.

        Without a native async transport the sync path runs in a worker thread (``asyncio.to_thread``);
        a cancelled await does not stop a publish already on the wire (its id makes a resend safe).
        """
        request, retries, timeout_ms = build(fields)
        return await self._sdk._publish_async(request, retries, timeout_ms)
