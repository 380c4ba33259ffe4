"""Every hook a minipub plugin can implement: the one page a plugin author reads.

A plugin is any object (a module, a class instance) whose hook functions are marked with
:data:`hookimpl` and named after the specifications below. It implements any subset of
them, and each implementation takes any subset of its hook's arguments, by name::

    from minipub.hookspecs import hookimpl

    @hookimpl
    def minipub_transport(name, options):
        if name == "mine":
            return MyTransport(**options)
        return None

How plugins are found (``minipub/hooks/entrypoints.py``, ``minipub/hooks/manager.py``):

* Installed distributions that declare an entry point in the ``minipub`` group are loaded
  once per process, on the first ``SDK()``, when pluggy is installed::

      [project.entry-points.minipub]
      mine = "my_package.plugin"        # a module, or "my_package:plugin_object"

  ``MINIPUB_DISABLE_PLUGIN_AUTOLOAD=1`` turns this off. An entry point that fails to load
  raises :class:`~minipub.errors.PluginError` naming it.
* Objects passed as ``SDK(plugins=[...])``, for that client only. They are asked before the
  entry points; one whose ``minipub_plugin_name`` attribute equals an entry point's name
  replaces that entry point's plugin for the client (to configure it explicitly).

With no plugin at all, minipub never imports pluggy and the publish path calls no hook.

The hooks, and how the core calls each kind (this table is built from the specifications'
marks; the *first* hooks are asked while an ``SDK`` is built, the others observe publishes):

{hooks}

pluggy calls every hook (``manager.hook.minipub_transport(...)``), so its rules hold as it
documents them: implementations marked ``tryfirst=True`` run first, ``trylast=True`` last,
otherwise the last registered first (so ``SDK(plugins=...)`` before entry points); wrappers,
new style (``wrapper=True``) or old style (``hookwrapper=True``), run around the plain
implementations, the tryfirst wrapper outermost. A *wrapper* hook has no plain
implementation but the core's own call (the publish, the HTTP request), innermost.

Errors: a plugin that cannot be registered (unknown hook name, argument not in the spec, a
plain function where a wrapper is required) or whose transport or auth hook raises makes
``SDK()`` raise :class:`~minipub.errors.PluginError` with ``plugin`` and ``hook`` set. An
observability hook that raises never changes a publish: the event is sent exactly as
without the plugin, every other plugin still sees it, the caller gets its result or error
as usual, and a :class:`~minipub.errors.PluginWarning` names the plugin and the hook.
Observability hooks see requests with credentials redacted (``Authorization: ***``) and
responses with any echo of the key replaced by ``***``.

This module imports pluggy: only the plugin manager and plugins import it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, TypeVar

import pluggy

if TYPE_CHECKING:
    from ..auth import AuthProvider
    from ..errors import MinipubError
    from ..models import PublishResponse
    from ..transports.base import HTTPRequest, HTTPResponse, Transport

#: What plugins import (``minipub.hookspecs`` re-exports it); the rest serves the manager.
__all__ = ["PROJECT", "hookspec", "hookimpl", "minipub_transport", "minipub_auth", "minipub_publish",
           "minipub_attempt", "minipub_retry_decision"]

#: The pluggy project name, and the entry-point group plugins are found in.
PROJECT = "minipub"
hookspec = pluggy.HookspecMarker(PROJECT)
#: Mark a plugin's hook functions: ``@hookimpl``, ``@hookimpl(wrapper=True)``, ``@hookimpl(tryfirst=True)``.
hookimpl = pluggy.HookimplMarker(PROJECT)

#: How the core calls each kind of hook. pluggy's ``firstresult`` follows from it.
KINDS = {
    "first": "the first non-None result wins",
    "wrapper": "wrappers only, around the core's own call",
    "each": "every implementation is called",
}
#: What a *first* hook's result must be: (described as, the methods it must have).
RETURNS: Dict[str, Tuple[str, Tuple[str, ...]]] = {}
_F = TypeVar("_F", bound=Callable[..., Any])


def _spec(kind: str, returns: Optional[Tuple[str, Tuple[str, ...]]] = None) -> Callable[[_F], _F]:
    """Declare a hook of this kind (a key of :data:`KINDS`) to pluggy, and what it returns."""

    def mark(function: _F) -> _F:
        function.minipub_kind = kind  # type: ignore[attr-defined]
        if returns is not None:
            RETURNS[function.__name__] = returns
        return hookspec(firstresult=kind != "each")(function)

    return mark


# -- transport ---------------------------------------------------------------------------------


@_spec("first", returns=("a transport", ("send", "close")))
def minipub_transport(name: Optional[str], options: Dict[str, Any]) -> Optional[Transport]:
    """Build the client's transport, or return None to let the next plugin (then the built-ins) decide.

    :param name: the ``transport=`` name the caller chose (``"httpx"``), or ``None`` when the
        caller chose none: a plugin that returns a transport then becomes the default for
        every ``SDK()`` ("claims" it). Return None for names that are not yours, so that
        ``transport="http.client"`` still selects the built-in.
    :param options: the client's transport settings, to pass on as keyword arguments:
        ``ca_file``, ``client_cert``, ``client_key``, ``ssl_context``, ``proxy`` (``"env"``,
        ``None`` or a URL) and ``max_body`` (the response-body cap, bytes). Accept and ignore
        keys you do not know: new ones may be added.

    The transport returned must have ``send(request: HTTPRequest) -> HTTPResponse`` and
    ``close()``, and keep the contract of ``minipub.transports.base`` (send exactly what it
    is given, follow no redirects, cap the body, honour ``request.timeout``, raise only
    ``minipub.errors.TransportError`` subclasses); ``minipub.testing.contract`` checks it.
    It receives the real request, credentials included. The ``SDK`` closes it. A wrapper
    may return another transport (one wrapping the result, say); it is checked the same way.
    """


# -- auth --------------------------------------------------------------------------------------


@_spec("first", returns=("an auth provider", ("api_key", "refresh")))
def minipub_auth(server_url: str) -> Optional[AuthProvider]:
    """Supply the client's key provider, or None when this plugin is not configured.

    Asked only when the caller gave neither ``admin_api_key=`` nor ``auth=``. Precedence:
    an explicit ``admin_api_key`` argument, then ``auth=``, then this hook, then the
    ``OUTPOST_API_KEY`` environment variable.

    :param server_url: the client's base URL (without ``/publish``).

    The provider (``minipub.auth.AuthProvider``) is asked ``api_key()`` before every HTTP
    request, so a rotated key is used as soon as the provider sees it. After a 401 its
    ``refresh()`` is called at most once per publish call; when it returns True the same
    attempt is sent once more with the key ``api_key()`` then gives, never more. Keys must
    never be logged or put in exception messages.
    """


# -- observability -----------------------------------------------------------------------------


@_spec("wrapper")
def minipub_publish(publish: PublishInfo) -> Optional[PublishResponse]:
    """Around one publish call (every attempt, retry and wait).

    ::

        @hookimpl(wrapper=True)
        def minipub_publish(publish):
            ...                      # before: publish.event_id, .tenant_id, .topic, .url
            try:
                return (yield)       # the PublishResponse, or the publish's error is raised here
            finally:
                ...                  # after: publish.response or publish.error, .attempts,
                                     # .retries, .status (last HTTP status), .duration (s)

    Old-style wrappers (``hookwrapper=True``, ``outcome = yield``) are called too; a plain
    implementation is refused when the plugin is registered. Each wrapper sees the publish's
    own result or error, whatever the other wrappers do, and what a wrapper returns, raises
    or forces on its outcome is ignored: the caller always gets the publish's outcome.
    """


@_spec("wrapper")
def minipub_attempt(request: HTTPRequest, attempt: AttemptInfo, publish: PublishInfo) -> Optional[HTTPResponse]:
    """Around one HTTP request of a publish.

    ::

        @hookimpl(wrapper=True)
        def minipub_attempt(request, attempt, publish):
            request.headers["traceparent"] = ...   # headers added before the yield are sent
            try:
                return (yield)       # the HTTPResponse (any status), or the TransportError is raised
            finally:
                ...                  # attempt.response or attempt.error, attempt.duration (s)

    :param request: a copy of the request with credential headers shown as ``***``. Headers
        a wrapper *adds* before yielding are sent with the request; existing headers, and
        credential headers (``Authorization``, ``Cookie``, ``Proxy-Authorization``, any value
        given as a ``Secret``), cannot be changed or added.
    :param attempt: ``number`` (1 for the first HTTP request of the publish, counting every
        request sent), ``refreshed`` (True when this request repeats the previous one after a
        401 and a key refresh); after the yield ``response`` (``HTTPResponse``, the key
        redacted from it) or ``error`` (``TransportError``), and ``duration`` in seconds.
    :param publish: the publish this request belongs to (see :func:`minipub_publish`).

    A response of any status is a response here (a 503 is retried later by the loop); the
    outcome of the publish is seen in :func:`minipub_publish`. Only wrappers are accepted,
    and as there, what a wrapper returns or raises is ignored.
    """


@_spec("each")
def minipub_retry_decision(publish: PublishInfo, error: MinipubError, delay: Optional[float]) -> None:
    """The retry loop decided what to do after a failed attempt.

    :param publish: the publish; ``publish.attempts`` requests were sent so far.
    :param error: the attempt's error (an ``APIError`` for an HTTP status, else a ``TransportError``).
    :param delay: seconds the loop will wait before the next attempt, or None when it gives
        up and raises ``error`` (not retryable, attempts, deadline or retry budget exhausted).
    """


# -- what the hooks see ------------------------------------------------------------------------


def _nothing() -> Any:
    raise RuntimeError("minipub: the call a hook is around runs once")


class _Outcome:
    """A call's outcome: ``response`` or ``error``, and ``duration`` in seconds."""

    __slots__ = ("_run", "duration", "error", "response")

    def __init__(self) -> None:
        self.response: Any = None
        self.error: Optional[Exception] = None
        self.duration: Optional[float] = None
        self._run: Callable[[], Any] = _nothing

    def _execute(self) -> Any:
        """Run the call the hook is around (once), recording its outcome: the innermost implementation."""
        run, self._run = self._run, _nothing
        start = time.perf_counter()
        try:
            self.response = run()
            return self.response
        except Exception as error:
            self.error = error
            raise
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


#: Each hook's kind, read from its specification's mark.
HOOK_KINDS: Dict[str, str] = {name: value.minipub_kind for name, value in dict(globals()).items()
                              if name.startswith("minipub_") and hasattr(value, "minipub_kind")}


class _OwnNames(type):
    """A class whose ``dir()`` is its own names only: pluggy looks at each name ``dir()`` gives
    (~3 us each) when it adds the specifications, a module's imports and a class's dunders included."""

    def __dir__(cls) -> List[str]:
        return [name for name in vars(cls) if not name.startswith("__")]


#: The specifications alone, for ``PluginManager.add_hookspecs``.
SPECS = _OwnNames("minipub_hookspecs", (), {name: globals()[name] for name in HOOK_KINDS})
#: The hooks that observe publishes (the others are asked while an ``SDK`` is built).
OBSERVE_HOOKS = tuple(name for name, kind in HOOK_KINDS.items() if kind != "first")


def _table() -> str:
    rows = [(f":func:`{name}`", kind, KINDS[kind]) for name, kind in HOOK_KINDS.items()]
    widths = [max(len(row[i]) for row in [("hook", "kind", "called"), *rows]) for i in range(3)]
    rule = "  ".join("=" * width for width in widths)
    lines = [rule, "  ".join(t.ljust(w) for t, w in zip(("hook", "kind", "called"), widths)).rstrip(), rule]
    lines += ["  ".join(t.ljust(w) for t, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([*lines, rule])


if __doc__:  # None under python -OO
    __doc__ = __doc__.replace("{hooks}", _table())
