"""Fixtures: the embedded Outpost server and a clean environment (entry points off unless a test turns them on)."""

from __future__ import annotations

from typing import Iterator

import pytest

from minipub.testing import OutpostServer

API_KEY = "sk_test_" + "f1le" * 6
ENV = ("OUTPOST_API_KEY", "OUTPOST_API_BASE_URL", "OUTPOST_API_KEY_FILE", "OUTPOST_API_KEY_COMMAND",
       "OUTPOST_API_KEY_COMMAND_TTL", "MINIPUB_LOG_JSON", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINIPUB_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture(scope="session")
def session_server() -> Iterator[OutpostServer]:
    with OutpostServer(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def server(session_server: OutpostServer) -> Iterator[OutpostServer]:
    session_server.clear()
    session_server.reset_faults()
    session_server.api_key = API_KEY
    yield session_server
