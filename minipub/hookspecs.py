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

How plugins are found (``minipub/plugins.py``):

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

The hook families:

=========  ==========================  ===================================================
transport  :func:`minipub_transport`   build the client's transport (first non-None wins)
auth       :func:`minipub_auth`        supply the client's key provider (first non-None)
observe    :func:`minipub_publish`     wrapper around one publish, all attempts included
observe    :func:`minipub_attempt`     wrapper around one HTTP request of a publish
observe    :func:`minipub_retry_decision`  each decision of the retry loop
=========  ==========================  ===================================================

Order: implementations marked ``tryfirst=True`` first, ``trylast=True`` last, otherwise the
last registered first (so ``SDK(plugins=...)`` before entry points). minipub calls each
implementation itself, one at a time.

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

from typing import TYPE_CHECKING, Any, Dict, Optional

import pluggy

if TYPE_CHECKING:
    from .auth import AuthProvider
    from .errors import MinipubError
    from .models import PublishResponse
    from .observe import AttemptInfo, PublishInfo
    from .transports.base import HTTPRequest, HTTPResponse, Transport

__all__ = [
    "PROJECT",
    "hookspec",
    "hookimpl",
    "minipub_transport",
    "minipub_auth",
    "minipub_publish",
    "minipub_attempt",
    "minipub_retry_decision",
]

#: The pluggy project name, and the entry-point group plugins are found in.
PROJECT = "minipub"
hookspec = pluggy.HookspecMarker(PROJECT)
#: Mark a plugin's hook functions: ``@hookimpl``, ``@hookimpl(wrapper=True)``, ``@hookimpl(tryfirst=True)``.
hookimpl = pluggy.HookimplMarker(PROJECT)

# -- transport ---------------------------------------------------------------------------------


@hookspec(firstresult=True)
def minipub_transport(name: Optional[str], options: Dict[str, Any]) -> Optional[Transport]:
    """Build the transport of a new ``SDK``, or return None to let the next plugin (then the built-ins) decide.

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
    It receives the real request, credentials included. The ``SDK`` closes it.
    """


# -- auth --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def minipub_auth(server_url: str) -> Optional[AuthProvider]:
    """Supply the key provider of a new ``SDK``, or None when this plugin is not configured.

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


@hookspec(firstresult=True)
def minipub_publish(publish: PublishInfo) -> Optional[PublishResponse]:
    """Around one publish call (every attempt, retry and wait): implement it as a wrapper.

    ::

        @hookimpl(wrapper=True)
        def minipub_publish(publish):
            ...                      # before: publish.event_id, .tenant_id, .topic, .url
            try:
                return (yield)       # the PublishResponse, or the publish's error is raised here
            finally:
                ...                  # after: publish.response or publish.error, .attempts,
                                     # .retries, .status (last HTTP status), .duration (s)

    Only new-style wrappers (``wrapper=True``) are accepted: a plain implementation, or an
    old-style ``hookwrapper=True``, is refused when the plugin is registered. Each wrapper
    sees the publish's own result or error, whatever the other wrappers do, and what a
    wrapper returns or raises is ignored: the caller always gets the publish's outcome.
    """


@hookspec(firstresult=True)
def minipub_attempt(request: HTTPRequest, attempt: AttemptInfo, publish: PublishInfo) -> Optional[HTTPResponse]:
    """Around one HTTP request of a publish: implement it as a wrapper.

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
        credential headers, cannot be changed.
    :param attempt: ``number`` (1 for the first HTTP request of the publish, counting every
        request sent), ``refreshed`` (True when this request repeats the previous one after a
        401 and a key refresh); after the yield ``response`` (``HTTPResponse``, the key
        redacted from it) or ``error`` (``TransportError``), and ``duration`` in seconds.
    :param publish: the publish this request belongs to (see :func:`minipub_publish`).

    A response of any status is a response here (a 503 is retried later by the loop); the
    outcome of the publish is seen in :func:`minipub_publish`. Only wrappers are accepted.
    """


@hookspec
def minipub_retry_decision(publish: PublishInfo, error: MinipubError, delay: Optional[float]) -> None:
    """The retry loop decided what to do after a failed attempt.

    :param publish: the publish; ``publish.attempts`` requests were sent so far.
    :param error: the attempt's error (an ``APIError`` for an HTTP status, else a ``TransportError``).
    :param delay: seconds the loop will wait before the next attempt, or None when it gives
        up and raises ``error`` (not retryable, attempts, deadline or retry budget exhausted).
    """
