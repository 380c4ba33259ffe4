"""pytest fixtures for testing code that publishes with minipub (registered as a ``pytest11`` plugin).

- ``outpost_server``: a running :class:`~minipub.testing.OutpostServer` on 127.0.0.1 (events
  inspectable, faults programmable), fresh for each test. Its simple default: one tenant-agnostic
  destination (``des_embedded``) that matches every event of every tenant, so every accepted
  publish is deduplicated by id; tenants with their own destinations can be added on top
  (``add_destination``). A repeat of an id still being processed waits 1 s (Outpost: 5 s).
- ``minipub_sdk``: an ``SDK`` pointed at it, with short retry waits.
- ``minipub_env``: ``OUTPOST_API_KEY`` / ``OUTPOST_API_BASE_URL`` pointed at it, for code that
  calls ``minipub.publish(...)`` or builds ``SDK()`` from the environment.
- ``outpost_shared_server``: one server for the whole session (``outpost_session_server``), reset
  for each test (no events, requests, tenants or queued faults; its key back to the configured
  one): a server per test costs a port and threads each. ``outpost_server_options`` (session
  scope) are the ``OutpostServer`` arguments; a ``conftest.py`` redefines it to choose them.

Loaded by pytest only; ``import minipub`` never imports this module.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator

import pytest

from ..auth import API_KEY_ENV
from ..client import BASE_URL_ENV, SDK
from ..retry import BackoffStrategy, RetryConfig
from .server import OutpostServer

__all__ = ["outpost_server", "minipub_sdk", "minipub_env", "outpost_server_options", "outpost_session_server",
           "outpost_shared_server", "TEST_API_KEY", "FAST_RETRIES"]

#: The key ``outpost_server`` accepts (``outpost_server.api_key`` is settable, for rotation tests).
TEST_API_KEY = "sk_test_minipub_fixture"
#: Retries as by default (3 attempts, 408/409/429/5XX/connection failures) with waits of a few ms.
FAST_RETRIES = RetryConfig("backoff", BackoffStrategy(5, 20, 2.0, 5_000), True, max_attempts=3)


@pytest.fixture
def outpost_server() -> Iterator[OutpostServer]:
    """A running embedded Outpost; ``.events``, ``.requests``, ``fail_next``, ``drop_next``, ``fail_rate``.

    One tenant-agnostic destination matching everything (see the module docstring)."""
    with OutpostServer(api_key=TEST_API_KEY, processing_wait=1.0) as server:
        yield server


@pytest.fixture
def minipub_sdk(outpost_server: OutpostServer) -> Iterator[SDK]:
    """An ``SDK`` publishing to ``outpost_server`` (no proxy, fast retries), closed after the test."""
    with SDK(outpost_server.api_key, server_url=outpost_server.url, retry_config=FAST_RETRIES, proxy=None,
             timeout_ms=5_000) as sdk:
        yield sdk


@pytest.fixture
def minipub_env(outpost_server: OutpostServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[OutpostServer]:
    """Point the environment (and ``minipub.publish``'s shared client) at ``outpost_server``."""
    from .. import reset_default_client

    monkeypatch.setenv(API_KEY_ENV, outpost_server.api_key)
    monkeypatch.setenv(BASE_URL_ENV, outpost_server.url)
    for name in ("no_proxy", "NO_PROXY"):  # the loopback server, never through a proxy
        monkeypatch.setenv(name, ",".join(filter(None, [os.environ.get(name), "127.0.0.1", "localhost", "::1"])))
    reset_default_client()
    yield outpost_server
    reset_default_client()


@pytest.fixture(scope="session")
def outpost_server_options() -> Dict[str, Any]:
    """The ``OutpostServer`` arguments of ``outpost_session_server`` (redefine it, session-scoped, in a conftest)."""
    return {"api_key": TEST_API_KEY, "processing_wait": 1.0}


@pytest.fixture(scope="session")
def outpost_session_server(outpost_server_options: Dict[str, Any]) -> Iterator[OutpostServer]:
    """One running embedded Outpost for the whole session; tests take it through ``outpost_shared_server``."""
    with OutpostServer(**outpost_server_options) as server:
        yield server


@pytest.fixture
def outpost_shared_server(outpost_session_server: OutpostServer,
                          outpost_server_options: Dict[str, Any]) -> Iterator[OutpostServer]:
    """The session's server, reset for this test: no events, requests, tenants or queued faults, the configured key."""
    server = outpost_session_server
    server.clear()
    server.reset_faults()
    server.api_key = outpost_server_options.get("api_key", "test-key")
    yield server
    server.reset_faults()
