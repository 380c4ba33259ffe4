"""The plugin issue's acceptance scenario, run in an installed environment: ``python plugins/acceptance.py``.

The application code (``publish_twice``) is the same in every environment; what changes is what
is installed:

* minipub, pluggy and the three plugins (httpx, secretfile, otel) with their dependencies: the
  publishes go through httpx (HTTP/1.1 on the embedded server), the key comes from the file
  ``OUTPOST_API_KEY_FILE`` names, which is rewritten between the two publishes while the server
  switches to the new key (both succeed, the second with the new key), and the in-memory exporter
  holds a span per publish with the HTTP status and the number of attempts. A plugin that raises
  in a hook is named in the error.
* minipub and the plugins installed without their dependencies (no pluggy): the same code still
  publishes, through the standard library transport, with ``OUTPOST_API_KEY``.

Prints one line per check and ``N passed, 0 failed``; exits 1 on the first failure.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, List

from minipub import SDK, PublishResponse
from minipub.testing import OutpostServer

OLD_KEY = "sk_acceptance_" + "old0" * 5
NEW_KEY = "sk_acceptance_" + "new1" * 5
PLUGGY = importlib.util.find_spec("pluggy") is not None
PASSED: List[str] = []


def check(condition: bool, what: str) -> None:
    if not condition:
        print(f"FAILED: {what}")
        print(f"{len(PASSED)} passed, 1 failed")
        sys.exit(1)
    PASSED.append(what)
    print(f"ok: {what}")


def publish_twice(server_url: str, between: Callable[[], None]) -> List[PublishResponse]:
    """The application: one client from the environment, two publishes."""
    with SDK(server_url=server_url) as sdk:
        print(f"client: {sdk!r}, plugins: {sdk.plugins!r}")
        first = sdk.publish.event(tenant_id="acme", topic="acceptance", data={"n": 1})
        between()
        second = sdk.publish.event(tenant_id="acme", topic="acceptance", data={"n": 2})
        return [first, second, sdk._transport]  # type: ignore[list-item]


def in_memory_tracing() -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def with_plugins(server: OutpostServer, key_file: Path) -> None:
    exporter = in_memory_tracing()

    def rotate() -> None:
        server.api_key = NEW_KEY
        key_file.write_text(NEW_KEY + "\n")

    first, second, transport = publish_twice(server.url, rotate)
    check(type(transport).__name__ == "HttpxTransport", "the publishes went through httpx")
    check([e["id"] for e in server.events] == [first.id, second.id], "both publishes succeeded")
    check(server.api_key == NEW_KEY and server.requests[-1].json["id"] == second.id,
          f"the second was accepted with the new key ({len(server.requests)} requests: a change seen "
          "before sending, or one 401 and one refreshed repeat)")
    check(len(server.requests) in (2, 3), "at most one repeat")
    spans = [s for s in exporter.get_finished_spans() if s.name == "publish acceptance"]
    check(len(spans) == 2, "a span per publish in the in-memory exporter")
    for span, response in zip(spans, (first, second)):
        attributes = dict(span.attributes or {})
        check(attributes.get("http.response.status_code") == 202 and attributes.get("minipub.attempts", 0) >= 1
              and attributes.get("minipub.event_id") == response.id,
              f"span {span.name!r}: HTTP status {attributes.get('http.response.status_code')}, "
              f"{attributes.get('minipub.attempts')} attempt(s)")
    http_versions = {r.headers.get("traceparent", "")[:3] for r in server.requests}
    check(http_versions == {"00-"}, "every request carried a W3C traceparent")

    from minipub.errors import PluginError
    from minipub.hookspecs import hookimpl

    class Broken:
        @hookimpl
        def minipub_auth(self) -> None:
            raise RuntimeError("the vault is sealed")

    try:
        SDK(server_url=server.url, plugins=[Broken()])
    except PluginError as error:
        check("Broken" in error.plugin and error.hook == "minipub_auth" and "Broken" in str(error),
              f"a plugin raising in a hook is named: {error}")
    else:
        check(False, "a plugin raising in a hook fails SDK()")


def without_pluggy(server: OutpostServer) -> None:
    first, second, transport = publish_twice(server.url, lambda: None)
    check(type(transport).__module__.startswith("minipub.transports."),
          f"the publishes went through a stdlib transport ({type(transport).__name__})")
    check([e["id"] for e in server.events] == [first.id, second.id], "both publishes succeeded")
    check("pluggy" not in sys.modules and "httpx" not in sys.modules, "neither pluggy nor a plugin was imported")
    from minipub.errors import ConfigurationError

    try:
        SDK(OLD_KEY, server_url=server.url, plugins=[object()])
    except ConfigurationError as error:
        check('pip install "minipub[plugins]"' in str(error), f"plugins= explains what to install: {error}")
    else:
        check(False, "plugins= without pluggy fails")


def main() -> None:
    print(f"pluggy installed: {PLUGGY}")
    os.environ.pop("MINIPUB_DISABLE_PLUGIN_AUTOLOAD", None)
    with OutpostServer(api_key=OLD_KEY) as server, tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "outpost-key"
        key_file.write_text(OLD_KEY + "\n")
        os.environ["OUTPOST_API_KEY_FILE"] = str(key_file)  # the secretfile plugin reads it
        os.environ["OUTPOST_API_KEY"] = OLD_KEY  # used when no auth plugin is there
        if PLUGGY:
            with_plugins(server, key_file)
        else:
            without_pluggy(server)
    print(f"{len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    main()
