"""The command line resolves the key and the base URL as the SDK does: ``--api-key``, then an auth
plugin (minipub-secretfile's ``OUTPOST_API_KEY_FILE`` / ``OUTPOST_API_KEY_COMMAND``), then
``OUTPOST_API_KEY``. A user with only a key file and the plugin can use every command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, Iterator

import pytest

from minipub.cli.common import EXIT_AUTH, EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from minipub.testing import OutpostServer

from .cli_support import ServeProcess, run_cli, secretfile_env
from .conftest import API_KEY


@pytest.fixture
def server() -> Iterator[OutpostServer]:
    with OutpostServer(API_KEY, processing_wait=0.5) as srv:
        yield srv


@pytest.fixture
def key_file_env(server: OutpostServer, tmp_path: Path) -> Dict[str, str]:
    """The secretfile plugin installed, the key only in a file, no OUTPOST_API_KEY."""
    (tmp_path / "key").write_text(API_KEY + "\n")
    return {**secretfile_env(tmp_path), "OUTPOST_API_KEY_FILE": str(tmp_path / "key"),
            "OUTPOST_API_BASE_URL": server.url}


def test_publish_with_only_a_key_file(server: OutpostServer, key_file_env: Dict[str, str]) -> None:
    result = run_cli(["publish", "t", "--tenant", "acme", "--data", "{}"], **key_file_env)
    assert result.returncode == EXIT_OK, result.stderr
    assert [e["id"] for e in server.events] == [result.stdout.strip()]


def test_publish_with_only_a_key_command(server: OutpostServer, tmp_path: Path) -> None:
    (tmp_path / "print_key.py").write_text(f"print({API_KEY!r})\n")
    command = f"{sys.executable} {tmp_path / 'print_key.py'}"
    env = {**secretfile_env(tmp_path), "OUTPOST_API_KEY_COMMAND": command, "OUTPOST_API_BASE_URL": server.url}
    result = run_cli(["publish", "t", "--tenant", "acme", "--data", "{}"], **env)
    assert result.returncode == EXIT_OK, result.stderr
    assert len(server.events) == 1


def test_the_plugin_beats_the_environment_and_the_flag_beats_both(server: OutpostServer,
                                                                   key_file_env: Dict[str, str]) -> None:
    plugin = run_cli(["publish", "t", "--tenant", "a", "--data", "{}"], OUTPOST_API_KEY="sk_wrong_env", **key_file_env)
    flag = run_cli(["publish", "t", "--tenant", "a", "--data", "{}", "--api-key", "sk_wrong_flag"], **key_file_env)
    assert (plugin.returncode, flag.returncode) == (EXIT_OK, EXIT_AUTH), plugin.stderr + flag.stderr


def test_ping_with_only_a_key_file(key_file_env: Dict[str, str]) -> None:
    result = run_cli(["ping"], **key_file_env)
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    assert "auth    ok    GET /topics: key accepted" in result.stdout


def test_bulk_and_outbox_replay_with_only_a_key_file(server: OutpostServer, key_file_env: Dict[str, str],
                                                     tmp_path: Path) -> None:
    lines = [json.dumps({"tenant_id": "acme", "topic": topic, "data": {"n": n}})
             for n, topic in enumerate(["user.created", "order.lost", "user.created"], 1)]
    (tmp_path / "in.ndjson").write_text("\n".join(lines) + "\n")
    server._topics = ["user.created"]
    bulk = run_cli(["bulk", "in.ndjson", "--outbox", "out.db"], cwd=tmp_path, **key_file_env)
    assert bulk.returncode == EXIT_REJECTED, bulk.stderr  # the 422 line; the others delivered
    assert len(server.events) == 2
    server._topics = ["user.created", "order.lost"]
    replay = run_cli(["outbox", "out.db", "replay"], cwd=tmp_path, **key_file_env)
    assert replay.returncode == EXIT_OK, replay.stderr
    assert len(server.events) == 3


def test_demo_and_serve_with_only_a_key_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("file-key")
    env = {**secretfile_env(tmp_path), "OUTPOST_API_KEY_FILE": str(tmp_path / "key")}
    serve = ServeProcess(tmp_path, env=env)  # the key to accept, from the file
    try:
        demo = run_cli(["demo"], OUTPOST_API_BASE_URL=serve.url, **env)
    finally:
        assert serve.stop() == 0
    assert demo.returncode == EXIT_OK, demo.stderr
    assert f"publishing to {serve.url}" in demo.stderr and len(serve.accepted()) == 1


def test_a_missing_key_names_every_way_to_set_one(server: OutpostServer, tmp_path: Path) -> None:
    result = run_cli(["publish", "t", "--tenant", "a", "--data", "{}"], OUTPOST_API_BASE_URL=server.url)
    assert result.returncode == EXIT_USAGE
    assert "OUTPOST_API_KEY" in result.stderr and "--api-key" in result.stderr
    missing = run_cli(["ping"], OUTPOST_API_KEY_FILE=str(tmp_path / "nope"), OUTPOST_API_BASE_URL=server.url,
                      **secretfile_env(tmp_path))
    assert missing.returncode == EXIT_USAGE and "cannot read the Outpost key file" in missing.stderr
    assert server.requests == []


def test_bulk_with_a_wrong_key_in_the_file_stops_at_once(server: OutpostServer, tmp_path: Path) -> None:
    lines = [json.dumps({"tenant_id": "acme", "topic": "t", "data": {"n": n}}) for n in range(2000)]
    (tmp_path / "in.ndjson").write_text("\n".join(lines) + "\n")
    (tmp_path / "key").write_text("sk_wrong_in_the_file")
    env = {**secretfile_env(tmp_path), "OUTPOST_API_KEY_FILE": str(tmp_path / "key"),
           "OUTPOST_API_BASE_URL": server.url}
    result = run_cli(["bulk", "in.ndjson", "--concurrency", "4"], cwd=tmp_path, **env)
    assert result.returncode == EXIT_AUTH, result.stderr
    # one request per worker, and the one repeat after the provider re-read the file on the 401
    assert 1 <= len(server.requests) <= 2 * 4
    assert not (tmp_path / "in.rejects.ndjson").exists()
