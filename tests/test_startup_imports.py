"""A fresh process's first publish (http://, the default transport) imports only what it uses.

Start to first event is a figure users feel (issue 14): each stdlib module below costs a fresh
interpreter 0.1 to 1 ms, and none of them is needed to send one event over plain HTTP. Each is
imported when a value needs it (a datetime, a proxy URL with credentials, a redaction, ...).
"""

from __future__ import annotations

import subprocess
import sys
from typing import List

from minipub.testing import OutpostServer

from .children import ROOT
from .conftest import API_KEY

#: Not needed by an http:// publish of plain JSON; the floor (http.client) imports most of them.
UNNEEDED = ("datetime", "_datetime", "base64", "bisect", "difflib", "ssl", "email", "http.client",
            "random", "hashlib", "platform", "uuid", "logging", "decimal", "dataclasses", "asyncio",
            "typing", "minipub._fieldtypes", "minipub.hooks.manager", "minipub.protocols")

# What the first publish imports: the modules loaded since the interpreter started (site's are
# the environment's, e.g. a .pth file that imports typing).
_CHILD = """
import sys
before = set(sys.modules)
sys.path[:] = [p for p in sys.path if not p.endswith(("site-packages", "dist-packages"))]
sys.path.insert(0, {root!r})
import minipub
sdk = minipub.SDK({key!r}, server_url={url!r}, proxy=None)
sdk.publish.event(tenant_id="acme", topic="user.created", data={{"n": 1, "x": 1.5, "s": "t"}})
print(" ".join(sorted(set(sys.modules) - before)))
"""


def test_a_first_http_publish_imports_none_of_the_unneeded_modules(server: OutpostServer) -> None:
    code = _CHILD.format(root=str(ROOT), key=API_KEY, url=server.url)
    attempts: List[int] = []
    # A retry needs random (for its jitter): on a loaded machine a first attempt may fail, so the
    # rule is judged on a child whose publish took one attempt, and at most 3 children are started.
    for _ in range(3):
        server.clear()
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env={"MINIPUB_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr[-2000:]
        attempts.append(sum(1 for r in server.requests if r.path.endswith("/publish")))
        if attempts[-1] == 1:
            break
    assert attempts[-1] == 1, f"no child published in one attempt: attempts {attempts}"
    loaded = set(done.stdout.split())
    assert "minipub.transports.lean" in loaded
    assert sorted(loaded.intersection(UNNEEDED)) == []


def test_the_modules_left_out_still_load_when_a_value_needs_them(server: OutpostServer) -> None:
    code = _LATER.format(root=str(ROOT), key=API_KEY, url=server.url)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"MINIPUB_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


_LATER = """
import sys
sys.path.insert(0, {root!r})
import minipub
from minipub import fields
sdk = minipub.SDK({key!r}, server_url={url!r}, proxy=None)
import datetime
sent = sdk.publish.event(tenant_id="acme", topic="t", time=datetime.datetime(2024, 1, 15, tzinfo=datetime.timezone.utc),
                         data={{"day": datetime.date(2024, 1, 15)}})
assert sent.id
assert "topic" in fields.EventCall.__required_keys__ and "minipub._fieldtypes" in sys.modules
try:
    sdk.publish.event(tenant_id="acme", topic="t", data={{"x": float("nan")}})
except minipub.ValidationError as exc:
    assert "finite" in str(exc)
else:
    raise AssertionError("NaN was sent")
# The type aliases load typing when asked for; the protocols check structurally without it.
from minipub.auth import AuthProvider
from minipub.retry import RetryObserver
from minipub.secret import SecretLike
from minipub.transports import Transport as Reexported
from minipub.transports.base import AsyncTransport, Transport
from minipub.transports.lean import LeanTransport
assert "typing" in sys.modules and Reexported is Transport  # the aliases built it
assert isinstance(sdk.transport, Transport) and isinstance(sdk.transport, AsyncTransport)
assert isinstance(minipub.auth.StaticKey("k" * 32), AuthProvider) and not isinstance(object(), Transport)
assert str(RetryObserver).startswith("typing.Callable") and type(None) in SecretLike.__args__
assert LeanTransport.__mro__[1].__name__ == "PooledTransport"
print("ok")
"""
