"""The plugin system against the embedded server: selection, auth precedence, observability, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minipub import SDK, BackoffStrategy, RetryConfig
from minipub.auth import StaticKey
from minipub.errors import (
    APIError,
    ConfigurationError,
    InternalServerError,
    PluginError,
    PluginWarning,
    TransportError,
    UnauthorizedError,
)
from minipub.hookspecs import hookimpl
from minipub.plugins import reset_autoload
from minipub.testing import OutpostServer
from minipub.transports import create_transport
from minipub.transports.base import HTTPRequest, HTTPResponse
from minipub.transports.httpclient import HTTPClientTransport
from minipub.transports.lean import LeanTransport

from .conftest import API_KEY, NO_RETRY, Sleeps

ROOT = Path(__file__).resolve().parents[1]
RETRY = RetryConfig("backoff", BackoffStrategy(1, 5, 2.0, 10_000), True, max_attempts=4)


def publish(sdk: SDK, **overrides: Any) -> Any:
    args: Dict[str, Any] = {"tenant_id": "acme", "topic": "user.created", "data": {"user_id": "u1"}}
    args.update(overrides)
    return sdk.publish.event(**args)


class CountingTransport:
    """A test double: the built-in transport, counting what it sends and keeping its options."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.sent: List[HTTPRequest] = []
        self.closed = False
        self._inner = create_transport("http.client", **options)

    def send(self, request: HTTPRequest) -> HTTPResponse:
        self.sent.append(request)
        return self._inner.send(request)

    def close(self) -> None:
        self.closed = True
        self._inner.close()


class TransportPlugin:
    def __init__(self, name: str = "counting", claim_default: bool = False) -> None:
        self.name = name
        self.claim_default = claim_default
        self.built: List[CountingTransport] = []

    @hookimpl
    def minipub_transport(self, name: Optional[str], options: Dict[str, Any]) -> Optional[CountingTransport]:
        if name == self.name or (name is None and self.claim_default):
            self.built.append(CountingTransport(**options))
            return self.built[-1]
        return None


# -- transport selection ------------------------------------------------------------------------


def test_transport_selected_by_name(server: OutpostServer) -> None:
    plugin = TransportPlugin()
    with SDK(API_KEY, server_url=server.url, transport="counting", plugins=[plugin], proxy=None,
             max_response_bytes=4096) as sdk:
        publish(sdk)
    (transport,) = plugin.built
    assert len(transport.sent) == 1 and transport.closed and len(server.events) == 1
    assert transport.options == {"ca_file": None, "client_cert": None, "client_key": None, "ssl_context": None,
                                 "proxy": None, "max_body": 4096}
    assert transport.sent[0].headers["Authorization"] == "Bearer " + API_KEY  # transports get the real request


def test_a_plugin_can_claim_the_default_and_builtins_stay_selectable(server: OutpostServer) -> None:
    claiming = TransportPlugin(claim_default=True)
    with SDK(API_KEY, server_url=server.url, plugins=[claiming]) as sdk:
        assert isinstance(sdk.transport, CountingTransport)
    with SDK(API_KEY, server_url=server.url, plugins=[claiming], transport="http.client") as sdk:
        assert isinstance(sdk.transport, HTTPClientTransport)
    with SDK(API_KEY, server_url=server.url, plugins=[TransportPlugin()]) as sdk:  # claims nothing
        assert isinstance(sdk.transport, LeanTransport)  # the built-in default


def test_explicit_plugins_are_asked_first() -> None:
    first, second = TransportPlugin(claim_default=True), TransportPlugin(claim_default=True)
    with SDK(API_KEY, plugins=[first, second]) as sdk:
        assert sdk.transport is (second.built + first.built)[0]
        assert sdk.plugins is not None and len(sdk.plugins.names) == 2


def test_unknown_transport_name_lists_the_builtins() -> None:
    with pytest.raises(ConfigurationError, match="use one of: http\\.client, lean, lean-async, urllib") as info:
        SDK(API_KEY, transport="carrier-pigeon", plugins=[TransportPlugin()])
    assert 'pip install "minipub[plugins]"' in str(info.value)


def test_a_transport_hook_must_return_a_transport() -> None:
    class Wrong:
        @hookimpl
        def minipub_transport(self) -> object:
            return "not a transport"

    with pytest.raises(PluginError, match=r"test_plugins.*Wrong.*minipub_transport returned str") as info:
        SDK(API_KEY, plugins=[Wrong()])
    assert info.value.hook == "minipub_transport"


# -- auth ---------------------------------------------------------------------------------------


class Rotating:
    """An auth provider whose key changes when ``refresh()`` is called."""

    def __init__(self, keys: List[str]) -> None:
        self.keys = keys
        self.asked = 0
        self.refreshes = 0

    def api_key(self) -> str:
        self.asked += 1
        return self.keys[0]

    def refresh(self) -> bool:
        self.refreshes += 1
        if len(self.keys) > 1:
            self.keys.pop(0)
            return True
        return False


class AuthPlugin:
    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.asked: List[str] = []

    @hookimpl
    def minipub_auth(self, server_url: str) -> Any:
        self.asked.append(server_url)
        return self.provider


def test_auth_precedence(server: OutpostServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_API_KEY", "env-key")
    plugin = AuthPlugin(StaticKey("plugin-key"))
    explicit = StaticKey("auth-key")
    with SDK("arg-key", plugins=[plugin], auth=explicit, server_url=server.url) as sdk:
        assert sdk.auth.api_key() == "arg-key"
    with SDK(plugins=[plugin], auth=explicit, server_url=server.url) as sdk:
        assert sdk.auth is explicit
    assert plugin.asked == []  # not asked when the caller chose
    with SDK(plugins=[plugin], server_url=server.url) as sdk:
        assert sdk.auth.api_key() == "plugin-key"
    assert plugin.asked == [server.url]
    with SDK(plugins=[AuthPlugin(None)], server_url=server.url) as sdk:  # not configured: the environment
        assert sdk.auth.api_key() == "env-key"


def test_auth_plugin_key_is_asked_every_attempt_and_refreshed_once_on_401(server: OutpostServer) -> None:
    provider = Rotating(["old-key", API_KEY])
    with SDK(server_url=server.url, plugins=[AuthPlugin(provider)], retry_config=NO_RETRY) as sdk:
        publish(sdk)
        publish(sdk)
    assert provider.refreshes == 1 and provider.asked == 3 and len(server.requests) == 3
    stuck = Rotating(["old-key", "older-key", API_KEY])
    with SDK(server_url=server.url, plugins=[AuthPlugin(stuck)], retry_config=RETRY) as sdk, \
            pytest.raises(UnauthorizedError):
        publish(sdk)
    assert stuck.refreshes == 1  # once per publish call, never more


# -- observability ------------------------------------------------------------------------------


class Recorder:
    """Records everything the observability hooks see."""

    def __init__(self) -> None:
        self.events: List[Tuple[Any, ...]] = []
        self.texts: List[str] = []

    @hookimpl(wrapper=True)
    def minipub_publish(self, publish: Any) -> Any:
        self.events.append(("publish-start", publish.event_id, publish.topic, publish.tenant_id, publish.attempts))
        try:
            return (yield)
        finally:
            self.events.append(("publish-end", publish.attempts, publish.retries, publish.status,
                                type(publish.error).__name__ if publish.error else publish.response.id))
            self.texts.append(repr(publish))

    @hookimpl(wrapper=True)
    def minipub_attempt(self, request: HTTPRequest, attempt: Any, publish: Any) -> Any:
        self.texts += [repr(request), json.dumps(request.headers)]
        request.headers["traceparent"] = f"00-{'1' * 32}-{'2' * 16}-01"
        request.headers["Content-Type"] = "text/evil"  # existing headers cannot be changed
        request.headers["Authorization"] = "Bearer hijacked"
        request.headers["Cookie"] = "session=planted"  # nor can credentials be added
        try:
            response = yield
            self.texts += [repr(response), response.body.decode(), json.dumps(response.headers)]
            return response
        finally:
            assert attempt.duration is not None and attempt.duration >= 0
            self.events.append(("attempt", attempt.number, attempt.refreshed,
                                attempt.response.status if attempt.response else type(attempt.error).__name__))

    @hookimpl
    def minipub_retry_decision(self, publish: Any, error: Any, delay: Optional[float]) -> None:
        self.events.append(("retry", publish.attempts, type(error).__name__, delay is not None))
        self.texts.append(str(error))


def test_observability_hooks_see_every_step_redacted(server: OutpostServer, sleeps: Sleeps) -> None:
    recorder = Recorder()
    server.fail_next(503, body=f"upstream echoed {API_KEY}")
    server.fail_next(401)
    provider = Rotating([API_KEY, API_KEY])
    with SDK(server_url=server.url, auth=provider, plugins=[recorder], retry_config=RETRY, sleep=sleeps) as sdk:
        response = publish(sdk)
    assert recorder.events == [
        ("publish-start", response.id, "user.created", "acme", 0),
        ("attempt", 1, False, 503),
        ("retry", 1, "InternalServerError", True),
        ("attempt", 2, False, 401),
        ("attempt", 3, True, 202),  # the same attempt repeated after the 401 refresh
        ("publish-end", 3, 1, 202, response.id),
    ]
    for request in server.requests:  # the wrapper's new header is sent; nothing else changed
        assert request.headers["traceparent"].startswith("00-111")
        assert request.headers["content-type"] == "application/json" and "cookie" not in request.headers
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer ***"] * 3  # the server redacts
    assert len(server.events) == 1 and provider.refreshes == 1
    for text in recorder.texts:
        assert API_KEY not in text
    assert any("upstream echoed ***" in text for text in recorder.texts)


def test_publish_hook_sees_the_final_error(server: OutpostServer, sleeps: Sleeps) -> None:
    recorder = Recorder()
    server.fail_next(503, times=4)
    with SDK(API_KEY, server_url=server.url, plugins=[recorder], retry_config=RETRY, sleep=sleeps) as sdk, \
            pytest.raises(InternalServerError):
        publish(sdk)
    assert recorder.events[-2:] == [("retry", 4, "InternalServerError", False),
                                    ("publish-end", 4, 3, 503, "InternalServerError")]


def test_attempt_hook_sees_transport_errors(sleeps: Sleeps) -> None:
    recorder = Recorder()
    with SDK(API_KEY, server_url="http://127.0.0.1:9/api", plugins=[recorder], retry_config=NO_RETRY) as sdk, \
            pytest.raises(TransportError):
        publish(sdk)
    assert ("attempt", 1, False, "ConnectError") in recorder.events
    assert recorder.events[-1] == ("publish-end", 1, 0, None, "ConnectError")


def test_no_hook_is_called_without_an_observability_plugin(server: OutpostServer) -> None:
    with SDK(API_KEY, server_url=server.url) as sdk:
        assert sdk.plugins is None  # nothing registered: pluggy is not even involved
        publish(sdk)
    with SDK(API_KEY, server_url=server.url, plugins=[TransportPlugin(claim_default=True)]) as sdk:
        assert sdk.plugins is not None and sdk.plugins.observed == frozenset()  # the plain path
        publish(sdk)
    assert len(server.events) == 2


# -- failing plugins ----------------------------------------------------------------------------


class Exploding:
    """Raises in the hook and at the moment named by ``where``."""

    def __init__(self, where: str) -> None:
        self.where = where

    @hookimpl(wrapper=True)
    def minipub_attempt(self) -> Any:
        if self.where == "attempt-before":
            raise RuntimeError("boom before")
        try:
            response = yield
        except TransportError:
            if self.where == "attempt-swallow":
                return None  # tries to turn a failure into a success
            raise
        if self.where == "attempt-after":
            raise RuntimeError("boom after")
        if self.where == "attempt-replace":
            return HTTPResponse(500, {}, b"")
        return response

    @hookimpl(wrapper=True)
    def minipub_publish(self, publish: Any) -> Any:
        if self.where == "publish-before":
            raise ValueError("boom before")
        result = yield
        if self.where == "publish-after":
            raise ValueError("boom after")
        return result

    @hookimpl
    def minipub_retry_decision(self) -> None:
        if self.where == "retry":
            raise KeyError("boom")


@pytest.mark.parametrize("where", ["attempt-before", "attempt-after", "publish-before", "publish-after", "retry",
                                   "attempt-replace"])
def test_a_failing_observability_hook_never_loses_or_duplicates_a_publish(
    server: OutpostServer, sleeps: Sleeps, where: str
) -> None:
    outer, inner = Recorder(), Recorder()
    server.fail_next(503)
    with SDK(API_KEY, server_url=server.url, plugins=[inner, Exploding(where), outer], retry_config=RETRY,
             sleep=sleeps) as sdk, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = publish(sdk)
    assert len(server.requests) == 2 and len(sleeps.calls) == 1  # the 503, then one retry
    assert [e["id"] for e in server.events] == [response.id]
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    if where == "attempt-replace":  # what a wrapper returns is ignored, quietly
        assert messages == []
    else:
        hook = {"attempt": "minipub_attempt", "publish": "minipub_publish", "retry": "minipub_retry_decision"}
        assert messages and all(m.startswith("minipub plugin 'tests.test_plugins.Exploding' raised in hook "
                                             + hook[where.split("-")[0]]) for m in messages)
    for recorder in (outer, inner):  # the other plugins saw everything, on either side of it
        assert [e[:2] for e in recorder.events if e[0] == "attempt"] == [("attempt", 1), ("attempt", 2)]
        assert recorder.events[-1] == ("publish-end", 2, 1, 202, response.id)


def test_a_hook_cannot_turn_an_error_into_success() -> None:
    with SDK(API_KEY, server_url="http://127.0.0.1:9/api", plugins=[Exploding("attempt-swallow")],
             retry_config=NO_RETRY) as sdk, pytest.raises(TransportError):
        publish(sdk)


class NoYield:
    @hookimpl(wrapper=True)
    def minipub_attempt(self) -> Any:
        if False:
            yield
        return None


class TwoYields:
    @hookimpl(wrapper=True)
    def minipub_publish(self) -> Any:
        yield
        yield


def test_wrappers_that_do_not_yield_once_are_reported(server: OutpostServer) -> None:
    with SDK(API_KEY, server_url=server.url, plugins=[NoYield(), TwoYields()]) as sdk, \
            pytest.warns(PluginWarning) as caught:
        publish(sdk)
    assert sorted(str(w.message) for w in caught) == [
        "minipub plugin 'tests.test_plugins.NoYield' raised in hook minipub_attempt: "
        "RuntimeError: the wrapper returned without yielding",
        "minipub plugin 'tests.test_plugins.TwoYields' raised in hook minipub_publish: "
        "RuntimeError: the wrapper yielded more than once",
    ]
    assert len(server.events) == 1


class BrokenTransportPlugin:
    @hookimpl
    def minipub_transport(self, name: Optional[str]) -> None:
        raise OSError("cannot open the gateway socket")


class BrokenAuthPlugin:
    minipub_plugin_name = "vault-agent"

    @hookimpl
    def minipub_auth(self) -> None:
        raise PermissionError("secret file is not readable")


def test_a_plugin_raising_in_a_construction_hook_is_named() -> None:
    with pytest.raises(PluginError) as info:
        SDK(API_KEY, plugins=[TransportPlugin(), BrokenTransportPlugin()])
    assert (info.value.plugin, info.value.hook) == ("tests.test_plugins.BrokenTransportPlugin", "minipub_transport")
    assert "BrokenTransportPlugin' raised in hook minipub_transport: OSError: cannot open" in str(info.value)
    with pytest.raises(PluginError, match="'vault-agent' raised in hook minipub_auth: PermissionError"):
        SDK(plugins=[BrokenAuthPlugin()])


def test_badly_written_plugins_are_refused_with_their_name() -> None:
    class Plain:
        @hookimpl
        def minipub_attempt(self, attempt: Any) -> None:
            return None

    class Typo:
        @hookimpl
        def minipub_atempt(self) -> None:
            return None

    class BadArgument:
        @hookimpl
        def minipub_transport(self, transport_name: str) -> None:
            return None

    with pytest.raises(PluginError, match=r"Plain'.*minipub_attempt must be a wrapper"):
        SDK(API_KEY, plugins=[Plain()])
    with pytest.raises(PluginError, match=r"Typo' cannot be registered.*minipub_atempt"):
        SDK(API_KEY, plugins=[Typo()])
    with pytest.raises(PluginError, match=r"(?s)BadArgument. cannot be registered.*transport_name"):
        SDK(API_KEY, plugins=[BadArgument()])
    with pytest.raises(ConfigurationError, match="list of plugin objects"):
        SDK(API_KEY, plugins="minipub_httpx")  # type: ignore[arg-type]


# -- pluggy calls the hooks ---------------------------------------------------------------------


class Canned:
    """A test double transport: a fixed answer, counting what it sends."""

    def __init__(self, response: Optional[HTTPResponse] = None) -> None:
        self.response = response or HTTPResponse(202, {"content-type": "application/json"}, b'{"duplicate":false}')
        self.sent: List[HTTPRequest] = []

    def send(self, request: HTTPRequest) -> HTTPResponse:
        self.sent.append(request)
        return self.response

    def close(self) -> None:
        pass


def asking(label: str, asked: List[str], answer: bool, **marks: Any) -> object:
    """A transport plugin marked with ``marks`` (tryfirst, trylast) that records being asked."""

    class Asked:
        def __repr__(self) -> str:
            return label

        @hookimpl(**marks)
        def minipub_transport(self, name: Optional[str]) -> Optional[Canned]:
            asked.append(label)
            return Canned() if answer and name is None else None

    return Asked()


def test_pluggy_orders_the_transport_hook_and_stops_at_the_first_result() -> None:
    asked: List[str] = []
    plugins = [asking("last", asked, True, trylast=True), asking("first", asked, False, tryfirst=True),
               asking("early", asked, True), asking("late", asked, False)]
    with SDK(API_KEY, plugins=plugins) as sdk:
        assert isinstance(sdk.transport, Canned)
    # tryfirst, then the last registered first; "early" answers, so "last" (trylast) is never asked
    assert asked == ["first", "late", "early"]


def test_every_hook_call_goes_through_pluggy(server: OutpostServer, sleeps: Sleeps) -> None:
    """pluggy's own hook-call monitoring sees each call: minipub does not call the implementations itself."""
    calls: List[str] = []
    server.fail_next(503)
    with SDK(API_KEY, server_url=server.url, plugins=[Recorder()], retry_config=RETRY, sleep=sleeps) as sdk:
        assert sdk.plugins is not None
        undo = sdk.plugins.manager.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append(name),
                                                           lambda outcome, name, impls, kwargs: None)
        publish(sdk)
        undo()
    assert calls == ["minipub_publish", "minipub_attempt", "minipub_retry_decision", "minipub_attempt"]


def test_old_and_new_style_wrappers_nest_as_pluggy_orders_them(server: OutpostServer) -> None:
    order: List[Any] = []

    class Outer:
        @hookimpl(wrapper=True, tryfirst=True)
        def minipub_publish(self) -> Any:
            order.append("outer in")
            try:
                return (yield)
            finally:
                order.append("outer out")

    class Old:
        @hookimpl(hookwrapper=True)
        def minipub_publish(self, publish: Any) -> Any:
            order.append("old in")
            outcome = yield
            order.append(("old out", outcome.get_result().id == publish.response.id))
            outcome.force_result(None)  # what a wrapper forces is ignored: the caller gets the publish's outcome

    class Inner:
        @hookimpl(wrapper=True, trylast=True)
        def minipub_publish(self) -> Any:
            order.append("inner in")
            response = yield
            order.append("inner out")
            return response

    with SDK(API_KEY, server_url=server.url, plugins=[Inner(), Outer(), Old()]) as sdk, warnings.catch_warnings():
        warnings.simplefilter("error")
        response = publish(sdk)
    assert response.id == server.events[0]["id"]
    assert order == ["outer in", "old in", "inner in", "inner out", ("old out", True), "outer out"]


class ExplodingOld:
    """An old-style wrapper that raises, or forces another outcome, at the moment named by ``where``."""

    def __init__(self, where: str) -> None:
        self.where = where

    @hookimpl(hookwrapper=True)
    def minipub_attempt(self) -> Any:
        if self.where == "before":
            raise RuntimeError("boom before")
        outcome = yield
        if self.where == "force":
            outcome.force_exception(TransportError("forced"))
        if self.where == "after":
            outcome.get_result()
            raise RuntimeError("boom after")


@pytest.mark.parametrize("where", ["before", "after", "force"])
def test_a_failing_old_style_wrapper_never_changes_a_publish(server: OutpostServer, where: str) -> None:
    outer, inner = Recorder(), Recorder()
    with SDK(API_KEY, server_url=server.url, plugins=[inner, ExplodingOld(where), outer]) as sdk, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = publish(sdk)
    assert [e["id"] for e in server.events] == [response.id]
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    assert messages == ([] if where == "force" else
                        [f"minipub plugin 'tests.test_plugins.ExplodingOld' raised in hook minipub_attempt: "
                         f"RuntimeError: boom {where}"])
    for recorder in (outer, inner):
        assert [e[:4] for e in recorder.events if e[0] == "attempt"] == [("attempt", 1, False, 202)]


class Wrapped:
    """A transport around another one (what a wrapper of the transport hook may return)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def send(self, request: HTTPRequest) -> HTTPResponse:
        response: HTTPResponse = self.inner.send(request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_wrapper_of_the_transport_hook_may_wrap_the_transport_and_is_named_when_it_fails(
    server: OutpostServer,
) -> None:
    class Wrapping:
        @hookimpl(wrapper=True)
        def minipub_transport(self) -> Any:
            transport = yield
            return Wrapped(transport)

    class OldWrapping:
        @hookimpl(hookwrapper=True)
        def minipub_transport(self) -> Any:
            outcome = yield
            outcome.force_result(Wrapped(outcome.get_result()))

    with SDK(API_KEY, server_url=server.url, plugins=[TransportPlugin(claim_default=True), Wrapping(),
                                                      OldWrapping()]) as sdk:
        transport = sdk.transport
        assert isinstance(transport, Wrapped) and isinstance(transport.inner, Wrapped)
        assert isinstance(transport.inner.inner, CountingTransport)
        publish(sdk)
    assert len(server.events) == 1

    class Breaking:
        @hookimpl(wrapper=True)
        def minipub_transport(self) -> Any:
            yield
            raise OSError("no gateway")

    class Forcing:
        @hookimpl(hookwrapper=True)
        def minipub_transport(self) -> Any:
            outcome = yield
            outcome.force_result("not a transport")

    with pytest.raises(PluginError, match=r"Breaking' raised in hook minipub_transport: OSError: no gateway") as info:
        SDK(API_KEY, plugins=[TransportPlugin(claim_default=True), Breaking()])
    assert info.value.plugin.endswith("<locals>.Breaking") and info.value.hook == "minipub_transport"
    with pytest.raises(PluginError, match=r"Forcing'.*minipub_transport returned str, not a transport") as info:
        SDK(API_KEY, plugins=[Forcing()])
    assert info.value.plugin.endswith("<locals>.Forcing")

    class Reading:
        @hookimpl(hookwrapper=True)
        def minipub_transport(self) -> Any:
            outcome = yield
            outcome.get_result()  # raises the inner plugin's error: still the inner plugin's

    for wrapper in (Reading(), Wrapping(), OldWrapping()):
        with pytest.raises(PluginError) as info:
            SDK(API_KEY, plugins=[BrokenTransportPlugin(), wrapper])
        assert info.value.plugin == "tests.test_plugins.BrokenTransportPlugin", wrapper


def test_attempt_hooks_see_the_key_redacted_from_headers_and_a_capped_body(server: OutpostServer) -> None:
    """The adversary: a server echoing the key in a header and at the cut end of a body capped mid-key."""
    seen: List[str] = []

    class Reading:
        @hookimpl(wrapper=True)
        def minipub_attempt(self) -> Any:
            response = yield
            seen.append(repr(response.headers) + response.body.decode("utf-8", "replace"))
            return response

    cap = 200
    body = "x" * (cap - len(API_KEY) // 2) + API_KEY
    for echo in ({"x-echo": API_KEY}, {"x-echo": f"Bearer {API_KEY}"}):
        server.fail_next(400, headers={**echo, "content-type": "text/plain"}, body=body)
        with SDK(API_KEY, server_url=server.url, plugins=[Reading()], retry_config=NO_RETRY,
                 max_response_bytes=cap) as sdk, pytest.raises(APIError):
            publish(sdk)
        server.fail_next(400, headers=echo, body=f"whole {API_KEY} echo")
        with SDK(API_KEY, server_url=server.url, plugins=[Reading()], retry_config=NO_RETRY) as sdk, \
                pytest.raises(APIError):
            publish(sdk)
    assert len(seen) == 4
    for text in seen:
        assert API_KEY not in text and API_KEY[: len(API_KEY) // 2] not in text and "***" in text


def test_the_hook_table_is_read_from_the_specifications() -> None:
    import pluggy

    from minipub import hookspecs
    from minipub.hooks import specs

    manager = pluggy.PluginManager(specs.PROJECT)
    manager.add_hookspecs(hookspecs)  # the old import path still holds every specification
    for name, kind in specs.HOOK_KINDS.items():
        assert getattr(manager.hook, name).spec.opts["firstresult"] == (kind != "each")
        assert f":func:`{name}`" in str(specs.__doc__) and kind in specs.KINDS
    assert set(specs.HOOK_KINDS) == {name for name in vars(specs) if name.startswith("minipub_")}


# -- entry points -------------------------------------------------------------------------------


@pytest.fixture
def distributions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Install fake distributions with ``minipub`` entry points on sys.path, autoload enabled."""
    monkeypatch.delenv("MINIPUB_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.syspath_prepend(str(tmp_path))
    reset_autoload()
    modules: List[str] = []

    def install(entry: str, source: str) -> str:
        module = f"minipub_test_plugin_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{module}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[minipub]\n{entry} = {module}{':plugin' if 'plugin =' in source else ''}\n")
        modules.append(module)
        return module

    yield install
    reset_autoload()
    for module in modules:
        sys.modules.pop(module, None)


GATEWAY = """
    from minipub.hookspecs import hookimpl
    from minipub.transports import create_transport

    class Gateway:
        minipub_plugin_name = "gateway"

        def __init__(self, label="automatic"):
            self.label = label

        @hookimpl
        def minipub_transport(self, name, options):
            if name in (None, "gateway"):
                transport = create_transport("http.client", **options)
                transport.label = self.label
                return transport
            return None

    plugin = Gateway()
"""


def test_entry_points_are_loaded_once_and_can_be_disabled(
    distributions: Any, server: OutpostServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    module = distributions("gateway", GATEWAY)
    with SDK(API_KEY, server_url=server.url) as sdk:
        assert sdk.plugins is not None and sdk.plugins.names == ["gateway"]
        assert sdk.transport.label == "automatic"  # type: ignore[attr-defined]
        publish(sdk)
    for path in tmp_path.glob("*.dist-info"):  # uninstalled: still loaded (once per process)
        (path / "entry_points.txt").unlink()
    with SDK(API_KEY, server_url=server.url) as sdk:
        assert sdk.transport.label == "automatic"  # type: ignore[attr-defined]
    explicit = sys.modules[module].Gateway("explicit")  # same name: replaces the entry point's
    with SDK(API_KEY, server_url=server.url, plugins=[explicit]) as sdk:
        assert sdk.plugins is not None and sdk.plugins.names == ["gateway"]
        assert sdk.transport.label == "explicit"  # type: ignore[attr-defined]
    monkeypatch.setenv("MINIPUB_DISABLE_PLUGIN_AUTOLOAD", "1")
    with SDK(API_KEY, server_url=server.url) as sdk:
        assert sdk.plugins is None and isinstance(sdk.transport, LeanTransport)  # the built-in default
    assert len(server.events) == 1


def test_a_broken_entry_point_is_named(distributions: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    module = distributions("broken", "import minipub_no_such_dependency\n")
    with pytest.raises(PluginError, match=f"'broken = {module} from {module} 1.0' failed to load: "
                                          "ModuleNotFoundError.*MINIPUB_DISABLE_PLUGIN_AUTOLOAD") as info:
        SDK(API_KEY)
    assert (info.value.plugin, info.value.hook) == ("broken", "load")
    monkeypatch.setenv("MINIPUB_DISABLE_PLUGIN_AUTOLOAD", "1")
    SDK(API_KEY).close()


# The distributions a sys.path can hold, several of whose names normalise alike (``g.w``, ``G-w``), with
# entry_points.txt files every Python reads alike (3.9 reads them with configparser: no section or name twice).
DIST_NAMES = st.sampled_from(["gw", "Gw", "g.w", "g_w", "G__w", "other"])
ENTRY_VALUES = st.sampled_from(["mod", "mod:obj", "pkg.mod:obj.attr", "mod [extra]", " mod : obj "])
ENTRIES = st.lists(st.tuples(st.sampled_from(["a", "b", "c "]), ENTRY_VALUES), max_size=3,
                   unique_by=lambda entry: entry[0].strip())
SECTIONS = st.lists(st.tuples(st.sampled_from(["minipub", "minipub.x", "console_scripts", " minipub "]), ENTRIES),
                    max_size=3, unique_by=lambda section: section[0])
DISTS = st.lists(st.tuples(st.integers(0, 1), DIST_NAMES, st.sampled_from(["1.0", "2"]),
                           st.sampled_from([".dist-info", ".egg-info"]), SECTIONS, st.booleans(), st.booleans()),
                 max_size=6)


@settings(max_examples=60, deadline=None)
@given(dists=DISTS)
def test_entry_points_read_from_the_directories_are_the_ones_importlib_metadata_reads(dists: List[Any]) -> None:
    from minipub.hooks.entrypoints import from_directories, from_metadata

    with tempfile.TemporaryDirectory() as root:
        folders = [Path(root, "first"), Path(root, "second")]
        for folder in folders:
            folder.mkdir()
        for number, (folder, name, version, suffix, sections, commented, has_file) in enumerate(dists):
            info = folders[folder] / f"{name}-{version}{suffix}"
            if info.exists():
                continue
            info.mkdir()
            (info / ("METADATA" if suffix == ".dist-info" else "PKG-INFO")).write_text(
                f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
            lines = [f"# dist {number}"] if commented else []
            for section, entries in sections:
                lines += [f"[{section}]", *(f"{key} = {value}" for key, value in entries), ""]
            if has_file:
                (info / "entry_points.txt").write_text("\n".join(lines))
        saved = sys.path[:]
        sys.path[:] = [str(folder) for folder in folders]
        try:
            direct = from_directories()
            assert direct is not None
            assert [(e.name, e.value) for e in direct] == [(e.name, e.value) for e in from_metadata()]
        finally:
            sys.path[:] = saved


def test_a_zip_on_sys_path_is_read_through_importlib_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from minipub.hooks.entrypoints import entry_points, from_directories

    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("zipped_plugin-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: zipped-plugin\n"
                                                                "Version: 1.0\n")
        zipped.writestr("zipped_plugin-1.0.dist-info/entry_points.txt", "[minipub]\nzipped = zipped_plugin\n")
    monkeypatch.setattr(sys, "path", [str(archive), *sys.path])
    assert from_directories() is None  # not a directory: importlib.metadata reads it
    (found,) = entry_points()
    assert (found.name, found.value) == ("zipped", "zipped_plugin")
    # importlib.metadata names the distribution from Python 3.10 on
    assert found.describe() == "zipped = zipped_plugin" + (" from zipped-plugin 1.0" if sys.version_info >= (3, 10)
                                                           else "")


FIRST_SDK = r"""
import sys
sys.path[:0] = sys.argv[3:]
import minipub
with minipub.SDK(sys.argv[1], server_url=sys.argv[2]) as sdk:
    assert sdk.plugins is not None and sdk.plugins.names == ["gateway"], sdk.plugins
    assert sdk.transport.label == "automatic"
    print(sdk.publish.event(tenant_id="acme", topic="t", data={}).id)
print(sorted(m for m in sys.modules if m.startswith("importlib.metadata")))
"""


def test_the_first_sdk_finds_installed_plugins_without_importlib_metadata(server: OutpostServer, tmp_path: Path) -> None:
    import pluggy

    (tmp_path / "pluggy").symlink_to(Path(pluggy.__file__).parent)
    (tmp_path / "gateway_plugin.py").write_text(textwrap.dedent(GATEWAY))
    info = tmp_path / "gateway_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gateway-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[console_scripts]\ngw = gateway_plugin:main\n\n"
                                           "[minipub]\ngateway = gateway_plugin:plugin\n")
    env = {k: v for k, v in os.environ.items() if k != "MINIPUB_DISABLE_PLUGIN_AUTOLOAD"}
    result = subprocess.run([sys.executable, "-I", "-S", "-c", FIRST_SDK, API_KEY, server.url, str(ROOT),
                             str(tmp_path)], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    event_id, modules = result.stdout.strip().splitlines()
    assert [e["id"] for e in server.events] == [event_id] and modules == "[]"


# -- without pluggy -----------------------------------------------------------------------------

NO_PLUGGY = r"""
import sys
sys.path[:0] = [sys.argv[3], sys.argv[4]]  # the package, and a plugin distribution pluggy would load
try:
    import pluggy
except ImportError:
    pass
else:
    raise SystemExit("pluggy is importable")
import minipub
from minipub.errors import ConfigurationError
from minipub.transports.lean import LeanTransport

with minipub.SDK(sys.argv[1], server_url=sys.argv[2]) as sdk:
    assert sdk.plugins is None and isinstance(sdk.transport, LeanTransport)
    print(sdk.publish.event(tenant_id="acme", topic="no.pluggy", data={}).id)
try:
    minipub.SDK(sys.argv[1], plugins=[object()])
except ConfigurationError as error:
    assert 'pip install "minipub[plugins]"' in str(error), error
else:
    raise SystemExit("plugins= without pluggy must fail")
assert "pluggy" not in sys.modules
"""


def test_without_pluggy_the_core_publishes_and_explains(server: OutpostServer, tmp_path: Path) -> None:
    info = tmp_path / "some_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: some-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[minipub]\nsome = some_plugin_that_needs_pluggy\n")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", NO_PLUGGY, API_KEY, server.url, str(ROOT),
                             str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [e["id"] for e in server.events] == [result.stdout.strip()]


def test_pluggy_is_not_imported_when_no_plugin_is_installed(server: OutpostServer, tmp_path: Path) -> None:
    import pluggy

    (tmp_path / "pluggy").symlink_to(Path(pluggy.__file__).parent)  # pluggy installed, no minipub plugin
    script = (
        "import sys; sys.path[:0] = sys.argv[3:]; import minipub;"
        "sdk = minipub.SDK(sys.argv[1], server_url=sys.argv[2]); sdk.publish.event(tenant_id='a', topic='t', data={});"
        "import importlib.util; assert importlib.util.find_spec('pluggy'), 'pluggy is installed here';"
        "assert sdk.plugins is None; print(sorted(m for m in sys.modules if m.startswith('pluggy')))"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-c", script, API_KEY, server.url, str(ROOT), str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_hookspec_has_a_calling_convention() -> None:
    from minipub import hookspecs
    from minipub.plugins import HOOK_KINDS, OBSERVE_HOOKS

    specs = {name for name in vars(hookspecs) if name.startswith("minipub_")}
    assert set(HOOK_KINDS) == specs and set(OBSERVE_HOOKS) <= specs


def test_observed_publishes_from_many_threads(server: OutpostServer) -> None:
    import threading

    recorder = Recorder()
    failures: List[BaseException] = []

    def work(sdk: SDK) -> None:
        try:
            for _ in range(10):
                publish(sdk)
        except BaseException as exc:  # reported in the test's thread
            failures.append(exc)

    with SDK(API_KEY, server_url=server.url, plugins=[recorder]) as sdk:
        threads = [threading.Thread(target=work, args=(sdk,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert failures == [] and len(server.events) == 80
    ends = [e for e in recorder.events if e[0] == "publish-end"]
    assert len(ends) == 80 and {e[1:4] for e in ends} == {(1, 0, 202)}
    assert len({e[4] for e in ends}) == 80  # each publish saw its own response
