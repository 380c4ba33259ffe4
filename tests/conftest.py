"""Shared fixtures: an embedded Outpost-compatible server and a client pointed at it."""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List

import pytest
from hypothesis import HealthCheck, settings

from minipub import SDK, RetryConfig
from minipub.testing import OutpostServer

# The plugin's fixtures (outpost_server, minipub_sdk, minipub_env, outpost_shared_server). When minipub is installed, its
# pytest11 entry point has already registered the plugin under this same name and pytest skips
# this line; from a plain checkout (not installed) this line is what loads it.
pytest_plugins = ["minipub.testing.pytest_plugin"]

settings.register_profile(
    "minipub", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
settings.load_profile("minipub")

API_KEY = "sk_test_" + "s3cr3t" * 4
NO_RETRY = RetryConfig("none")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OUTPOST_API_KEY", "OUTPOST_API_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
                 "http_proxy", "https_proxy", "all_proxy", "no_proxy", "OUTPOST_API_KEY_FILE",
                 "OUTPOST_API_KEY_COMMAND", "MINIPUB_LOG_JSON"):
        monkeypatch.delenv(name, raising=False)
    # The core suite tests the core: installed plugins (entry points) stay out of it, except in
    # the tests of autoloading, which remove this.
    monkeypatch.setenv("MINIPUB_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture(scope="session")
def outpost_server_options() -> Dict[str, Any]:
    """The session's embedded server (the plugin's ``outpost_session_server``): this suite's key."""
    return {"api_key": API_KEY, "processing_wait": 0.5}


@pytest.fixture
def server(outpost_shared_server: OutpostServer) -> OutpostServer:
    """The session's embedded server, reset for this test (the plugin's ``outpost_shared_server``)."""
    return outpost_shared_server


class Sleeps:
    """A recording sleep: tests never wait for real backoff."""

    def __init__(self) -> None:
        self.calls: List[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def sdk(server: OutpostServer, sleeps: Sleeps) -> Iterator[SDK]:
    with SDK(API_KEY, server_url=server.url, sleep=sleeps, timeout_ms=5000) as client:
        yield client


def pytest_report_header() -> str:
    return f"minipub tests (pid {os.getpid()})"
