"""The file and command key providers against the embedded server, and the entry point."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, List

import pytest
from conftest import API_KEY

from minipub import SDK, RetryConfig
from minipub.errors import ConfigurationError, UnauthorizedError
from minipub.plugins import reset_autoload
from minipub.testing import OutpostServer
from minipub_secretfile import SecretCommand, SecretFile, from_env
from minipub_secretfile.plugin import SecretFilePlugin

NEW_KEY = "sk_test_" + "n3wk" * 6  # same length as API_KEY
NO_RETRY = RetryConfig("none")


def publish(sdk: SDK) -> Any:
    return sdk.publish.event(tenant_id="acme", topic="key.rotated", data={"n": 1})


def authorizations(server: OutpostServer) -> List[str]:
    return [r.headers["authorization"] for r in server.requests]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "outpost-key"
    path.write_text(API_KEY + "\n")
    return path


def rewrite_keeping_stamp(path: Path, text: str) -> None:
    """Rewrite in place with the same size and modification time: invisible to a stat."""
    before = path.stat()
    with open(path, "r+", encoding="utf-8") as handle:
        handle.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_ino == before.st_ino


def test_a_rewritten_file_is_used_from_the_next_request(server: OutpostServer, key_file: Path) -> None:
    with SDK(server_url=server.url, auth=SecretFile(key_file), retry_config=NO_RETRY) as sdk:
        publish(sdk)
        server.api_key = NEW_KEY
        key_file.write_text(NEW_KEY + "\n")
        os.utime(key_file, ns=(0, key_file.stat().st_mtime_ns + 1_000_000))  # whatever the clock's granularity
        publish(sdk)
    assert len(server.requests) == 2 and len(server.events) == 2  # seen before sending: no 401


def test_a_change_stat_cannot_see_is_picked_up_by_the_401_refresh(server: OutpostServer, key_file: Path) -> None:
    with SDK(server_url=server.url, auth=SecretFile(key_file), retry_config=NO_RETRY) as sdk:
        publish(sdk)
        server.api_key = NEW_KEY
        rewrite_keeping_stamp(key_file, NEW_KEY + "\n")
        publish(sdk)
        server.api_key = API_KEY
        rewrite_keeping_stamp(key_file, API_KEY + "\n")
        publish(sdk)
    assert len(server.events) == 3 and len(server.requests) == 5  # each rotation: one 401, one repeat


def test_a_file_with_the_old_key_fails_after_one_refresh(server: OutpostServer, key_file: Path) -> None:
    server.api_key = NEW_KEY
    with SDK(server_url=server.url, auth=SecretFile(key_file)) as sdk, pytest.raises(UnauthorizedError):
        publish(sdk)
    assert len(server.requests) == 1  # the refresh read the same key: no pointless repeat


@pytest.mark.parametrize(("content", "problem"), [(None, "No such file"), ("", "non-empty"),
                                                  (f"{API_KEY} {API_KEY}", "whitespace")])
def test_unusable_files_are_named_never_shown(tmp_path: Path, content: Any, problem: str) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigurationError, match=problem) as info:
        SecretFile(path).api_key()
    assert str(path) in str(info.value) and API_KEY not in str(info.value)


def test_a_file_missing_for_a_moment_keeps_the_previous_key(
    key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = SecretFile(key_file)
    assert provider.api_key() == API_KEY
    key_file.unlink()
    with caplog.at_level(logging.DEBUG):
        assert provider.api_key() == API_KEY
        key_file.write_text("")  # mid-rewrite
        assert provider.api_key() == API_KEY
    key_file.write_text(NEW_KEY)
    assert provider.api_key() == NEW_KEY
    assert "keeping the previous key" in caplog.text and API_KEY not in caplog.text
    assert API_KEY not in repr(provider) and str(key_file) in repr(provider)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def printer(path: Path) -> List[str]:
    return [sys.executable, "-c", f"print(open({str(path)!r}).read())"]


def test_a_command_key_is_cached_for_its_ttl_and_rerun_on_401(server: OutpostServer, key_file: Path) -> None:
    clock = Clock()
    provider = SecretCommand(printer(key_file), ttl=60, clock=clock)
    with SDK(server_url=server.url, auth=provider, retry_config=NO_RETRY) as sdk:
        publish(sdk)
        publish(sdk)
        assert provider.runs == 1
        clock.now += 61
        publish(sdk)
        assert provider.runs == 2
        server.api_key = NEW_KEY
        key_file.write_text(NEW_KEY)
        publish(sdk)  # cached old key: 401, refresh runs the command, the repeat succeeds
        assert provider.runs == 3
    assert len(server.events) == 4 and len(server.requests) == 5


def test_a_failing_command_never_shows_its_output(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    leaky = [sys.executable, "-c", f"import sys; print({API_KEY!r}); print({API_KEY!r}, file=sys.stderr); sys.exit(3)"]
    with pytest.raises(ConfigurationError, match="exited with status 3") as info:
        SecretCommand(leaky).api_key()
    assert API_KEY not in str(info.value)
    with pytest.raises(ConfigurationError, match="was not found"):
        SecretCommand("/nonexistent/vault read secret").api_key()
    with pytest.raises(ConfigurationError, match="did not finish"):
        SecretCommand([sys.executable, "-c", "import time; time.sleep(5)"], ttl=1, timeout=0.2).api_key()
    with pytest.raises(ConfigurationError, match="output of the Outpost key command"):
        SecretCommand([sys.executable, "-c", "pass"]).api_key()
    # Expired, and the command now fails: the cached key is kept, and tried again later.
    flag = tmp_path / "fail"
    clock = Clock()
    provider = SecretCommand([sys.executable, "-c", f"import os, sys; sys.exit(os.path.exists({str(flag)!r}))"
                              f" if os.path.exists({str(flag)!r}) else print({API_KEY!r})"], ttl=5, clock=clock)
    assert provider.api_key() == API_KEY
    flag.write_text("")
    clock.now += 6
    with caplog.at_level(logging.WARNING):
        assert provider.api_key() == API_KEY and provider.runs == 2
        assert provider.api_key() == API_KEY and provider.runs == 2  # not rerun on every request
    assert "keeping the previous key" in caplog.text and API_KEY not in caplog.text


def test_configuration_from_the_environment(key_file: Path) -> None:
    assert from_env({}) is None
    assert isinstance(from_env({"OUTPOST_API_KEY_FILE": str(key_file)}), SecretFile)
    command = from_env({"OUTPOST_API_KEY_COMMAND": "cat /run/secrets/x", "OUTPOST_API_KEY_COMMAND_TTL": "30"})
    assert isinstance(command, SecretCommand) and command.argv == ["cat", "/run/secrets/x"] and command.ttl == 30
    with pytest.raises(ConfigurationError, match="not both"):
        from_env({"OUTPOST_API_KEY_FILE": "a", "OUTPOST_API_KEY_COMMAND": "b"})
    with pytest.raises(ConfigurationError, match="OUTPOST_API_KEY_COMMAND_TTL"):
        from_env({"OUTPOST_API_KEY_COMMAND": "b", "OUTPOST_API_KEY_COMMAND_TTL": "soon"})
    with pytest.raises(ConfigurationError, match="either path= or command="):
        SecretFilePlugin()


@pytest.fixture
def autoload(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("MINIPUB_DISABLE_PLUGIN_AUTOLOAD")
    reset_autoload()
    yield
    reset_autoload()


def test_the_entry_point_reads_the_environment_before_outpost_api_key(
    autoload: Any, server: OutpostServer, key_file: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OUTPOST_API_KEY", "sk_wrong_env_key")
    monkeypatch.setenv("OUTPOST_API_KEY_FILE", str(key_file))
    with SDK(server_url=server.url, transport="http.client") as sdk:
        assert sdk.plugins is not None and "secretfile" in sdk.plugins.names
        assert isinstance(sdk._auth, SecretFile)
        publish(sdk)
    monkeypatch.delenv("OUTPOST_API_KEY_FILE")
    with SDK(server_url=server.url) as sdk:  # not configured: OUTPOST_API_KEY applies
        assert sdk._auth.api_key() == "sk_wrong_env_key"
    explicit = SecretFilePlugin(command=printer(key_file))  # replaces the entry point's plugin
    with SDK(server_url=server.url, plugins=[explicit]) as sdk:
        assert sdk.plugins is not None and sdk.plugins.names.count("secretfile") == 1
        assert sdk._auth is explicit.provider
        publish(sdk)
    assert len(server.events) == 2 and API_KEY not in caplog.text
