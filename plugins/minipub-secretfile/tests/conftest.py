"""Fixtures: the embedded Outpost server (from minipub's pytest plugin) and a clean environment (entry points off unless a test turns them on)."""

from __future__ import annotations

from typing import Any, Dict

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
def outpost_server_options() -> Dict[str, Any]:
    """The session's embedded server (minipub's pytest plugin, ``outpost_session_server``): this suite's key."""
    return {"api_key": API_KEY}


@pytest.fixture
def server(outpost_shared_server: OutpostServer) -> OutpostServer:
    """The session's embedded server, reset for this test (minipub's pytest plugin)."""
    return outpost_shared_server
