"""The ``minipub`` command, run as an installed console script in subprocesses: publish, serve, ping,
exit codes, help. (``bulk`` and ``outbox``: test_cli_bulk.py.)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from minipub.cli import build_parser
from minipub.cli.common import (
    EXIT_AUTH,
    EXIT_CLIENT,
    EXIT_NETWORK,
    EXIT_SERVER,
    EXIT_USAGE,
    exit_code_for,
)
from minipub.errors import STATUS_CLASSES, ConnectError, TLSError, TransportTimeout, error_class_for
from minipub.testing import OutpostServer

from .cli_support import ROOT, ServeProcess, cli_env, run_cli
from .conftest import API_KEY

FAST = ["--backoff", "0.01", "--backoff-max", "0.02"]


@pytest.fixture
def server() -> Iterator[OutpostServer]:
    """A server of its own for each test (not conftest's shared one): a late request from another
    test (e.g. one that timed out on the client's side) cannot land here."""
    with OutpostServer(API_KEY, processing_wait=0.5) as srv:
        yield srv


@pytest.fixture
def env(server: OutpostServer) -> dict[str, str]:
    return {"OUTPOST_API_KEY": API_KEY, "OUTPOST_API_BASE_URL": server.url}


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that nothing listens on (bound, never listening, so no one else takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- publish ---------------------------------------------------------------------------------


def test_publish_inline_data_with_every_option(server: OutpostServer, env: dict[str, str]) -> None:
    result = run_cli(["publish", "order.shipped", "--tenant", "acme", "--data", '{"order": 42}',
                      "--metadata", "source=crm", "--metadata", "query=a=b", "--id", "evt-1",
                      "--destination", "des_embedded", "--no-retry-eligible", "--time", "2024-01-15T10:30:00Z"],
                     **env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "evt-1\n", "")
    assert len(server.events) == 1, server.events
    [event] = server.events
    assert event == {"id": "evt-1", "tenant_id": "acme", "topic": "order.shipped", "eligible_for_retry": False,
                     "destination_id": "des_embedded", "time": "2024-01-15T10:30:00Z",
                     "metadata": {"source": "crm", "query": "a=b"}, "data": {"order": 42}}


def test_publish_data_from_a_file_and_from_stdin(server: OutpostServer, env: dict[str, str],
                                                 tmp_path: Path) -> None:
    (tmp_path / "event.json").write_text('{"from": "file", "n": [1, 2]}')
    from_file = run_cli(["publish", "t", "--tenant", "acme", "--data", "@event.json"], cwd=tmp_path, **env)
    from_stdin = run_cli(["publish", "t", "--tenant", "acme", "--data", "-", "--json"],
                         input='{"from": "stdin"}\n', **env)
    assert from_file.returncode == 0 and from_stdin.returncode == 0, from_file.stderr + from_stdin.stderr
    answer = json.loads(from_stdin.stdout)
    assert answer == {"id": answer["id"], "duplicate": False, "destination_ids": ["des_embedded"]}
    assert [(e["id"], e["data"]) for e in server.events] == [
        (from_file.stdout.strip(), {"from": "file", "n": [1, 2]}), (answer["id"], {"from": "stdin"})]


def test_publish_the_same_id_twice_says_duplicate(server: OutpostServer, env: dict[str, str]) -> None:
    for _ in range(2):
        result = run_cli(["publish", "t", "--tenant", "acme", "--data", "{}", "--id", "same", "--json"], **env)
    assert json.loads(result.stdout)["duplicate"] is True
    assert len(server.events) == 1


def test_publish_retries_then_succeeds(server: OutpostServer, env: dict[str, str]) -> None:
    server.fail_next(503)
    server.drop_next()
    result = run_cli(["publish", "t", "--tenant", "acme", "--data", "{}", *FAST], **env)
    assert result.returncode == 0, result.stderr
    assert len(server.requests) == 3 and [e["id"] for e in server.events] == [result.stdout.strip()], server.events


# -- exit codes ------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["publish", "t", "--tenant", "acme"], "the following arguments are required: --data"),
    (["publish", "t", "--tenant", "acme", "--data", "{nope"], "is not valid JSON"),
    (["publish", "t", "--tenant", "acme", "--data", "[1]"], "must be a JSON object"),
    (["publish", "t", "--tenant", "acme", "--data", '{"x": NaN}'], 'data["x"]: nan is not valid JSON'),
    (["publish", "t", "--tenant", "acme", "--data", "@missing.json"], "cannot read --data file"),
    (["publish", "t", "--tenant", "acme", "--data", "{}", "--metadata", "novalue"], "is not KEY=VALUE"),
    (["publish", "t", "--tenant", "acme", "--data", "{}", "--time", "yesterday"], "is not an RFC 3339"),
    (["publish", "t", "--tenant", " ", "--data", "{}"], "tenant_id must be a non-empty str"),
    (["publish", "t", "--tenant", "acme", "--data", "{}", "--timeout", "0"], "must be greater than 0"),
    (["frobnicate"], "invalid choice"),
])
def test_usage_and_validation_errors_exit_2_before_sending(
    server: OutpostServer, env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_cli(args, cwd=tmp_path, **env)
    assert result.returncode == EXIT_USAGE and message in result.stderr, result.stderr
    assert server.requests == []


def test_wrong_key_exits_3_and_no_key_is_ever_printed(server: OutpostServer, env: dict[str, str]) -> None:
    secret = "sk_wrong_" + "x" * 20
    server.fail_next(400, body=f"you sent {API_KEY}")  # a server that echoes the key
    echoed = run_cli(["publish", "t", "--tenant", "a", "--data", "{}"], **env)
    wrong = run_cli(["publish", "t", "--tenant", "a", "--data", "{}", "--api-key", secret], **env)
    assert (echoed.returncode, wrong.returncode) == (EXIT_CLIENT, EXIT_AUTH)
    assert "UnauthorizedError" in wrong.stderr and "you sent ***" in echoed.stderr
    for result in (echoed, wrong):
        assert API_KEY not in result.stdout + result.stderr and secret not in result.stdout + result.stderr


@pytest.mark.parametrize("status, times, code", [(422, 1, EXIT_CLIENT), (404, 1, EXIT_CLIENT),
                                                 (503, 3, EXIT_SERVER), (500, 3, EXIT_SERVER)])
def test_status_errors_exit_4_or_5(server: OutpostServer, env: dict[str, str], status: int, times: int,
                                   code: int) -> None:
    server.fail_next(status, times=times)
    result = run_cli(["publish", "t", "--tenant", "a", "--data", "{}", *FAST], **env)
    assert result.returncode == code, result.stderr
    assert f"(HTTP {status})" in result.stderr and len(server.requests) == times


def test_network_errors_exit_6(closed_port: int) -> None:
    result = run_cli(["publish", "t", "--tenant", "a", "--data", "{}", *FAST, "--max-attempts", "2"],
                     OUTPOST_API_KEY=API_KEY, OUTPOST_API_BASE_URL=f"http://127.0.0.1:{closed_port}/api/v1")
    assert result.returncode == EXIT_NETWORK and "ConnectError" in result.stderr


def test_the_exit_code_table_covers_every_status_and_network_failure() -> None:
    for status in range(100, 600):
        if 200 <= status < 300:
            continue
        error = error_class_for(status)("x", status_code=status)
        expected = EXIT_AUTH if status in (401, 403, 407, 511) else EXIT_SERVER if status >= 500 else EXIT_CLIENT
        assert exit_code_for(error) == expected, status
    assert {401, 403, 407, 511} == {s for s, c in STATUS_CLASSES.items() if exit_code_for(c("x", status_code=s)) == 3}
    for error in (ConnectError("x"), TLSError("x"), TransportTimeout("x")):
        assert exit_code_for(error) == EXIT_NETWORK
    assert exit_code_for(RuntimeError("a bug")) is None


def test_every_command_has_help_with_an_example() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(commands) == {"publish", "bulk", "serve", "ping", "outbox", "demo"}
    for name in commands:
        result = run_cli([name, "--help"])
        assert result.returncode == 0 and "example:\n  " in result.stdout, name
    top = run_cli(["--help"])
    assert "exit codes:" in top.stdout and "example:" in top.stdout


# -- serve -----------------------------------------------------------------------------------


def test_serve_accepts_prints_and_stops_on_sigint(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path, "--topic", "user.created")
    try:
        env = {"OUTPOST_API_KEY": serve.key, "OUTPOST_API_BASE_URL": serve.url}
        ok = run_cli(["publish", "user.created", "--tenant", "acme", "--data", '{"a": 1}'], **env)
        unknown_topic = run_cli(["publish", "user.deleted", "--tenant", "acme", "--data", "{}"], **env)
        assert ok.returncode == 0 and unknown_topic.returncode == EXIT_CLIENT
        assert "topic is invalid (HTTP 422)" in unknown_topic.stderr  # Outpost's message names no topic
    finally:
        assert serve.stop() == 0
    assert serve.accepted() == [ok.stdout.strip()]
    assert "tenant=acme topic=user.created" in serve.stdout
    assert "stopped; 1 event(s) accepted, 2 publish request(s)" in serve.stderr
    assert serve.key not in serve.stdout + serve.stderr


def test_serve_fail_rate_publish_still_gets_through(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path, "--fail-rate", "0.5", "--retry-after", "0.01", "--seed", "3", "--quiet")
    try:
        env = {"OUTPOST_API_KEY": serve.key, "OUTPOST_API_BASE_URL": serve.url}
        ids = [run_cli(["publish", "t", "--tenant", "a", "--data", "{}", *FAST, "--max-attempts", "20"],
                       **env).stdout.strip() for _ in range(4)]
    finally:
        assert serve.stop() == 0
    assert all(ids) and serve.stdout == ""
    assert "injected failures: none" not in serve.stderr and "4 event(s) accepted" in serve.stderr


def test_serve_needs_a_key_and_a_free_port(tmp_path: Path) -> None:
    no_key = run_cli(["serve", "--port", "0"])
    assert no_key.returncode == EXIT_USAGE and "serve needs the key" in no_key.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run_cli(["serve", "--port", str(taken.getsockname()[1])], OUTPOST_API_KEY="k")
    assert busy.returncode == EXIT_USAGE and "cannot listen on" in busy.stderr
    bad_rate = run_cli(["serve", "--fail-rate", "2"], OUTPOST_API_KEY="k")
    assert bad_rate.returncode == EXIT_USAGE


# -- ping ------------------------------------------------------------------------------------


def test_ping_a_good_server(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path, "--topic", "a", "--topic", "b")
    try:
        result = run_cli(["ping", "--base-url", serve.url], OUTPOST_API_KEY=serve.key)
    finally:
        serve.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("dns     ok", "tcp     ok", "tls     -", "health  ok    GET /healthz: HTTP 200, healthy",
                 "auth    ok    GET /topics: key accepted, 2 topic(s) configured", "ok: reachable"):
        assert line in result.stdout
    assert serve.stdout == ""  # nothing published


def test_ping_a_wrong_key(server: OutpostServer, env: dict[str, str]) -> None:
    result = run_cli(["ping", "--api-key", "sk_not_the_key"], **env)
    assert result.returncode == EXIT_AUTH
    assert "(HTTP 401); the key was rejected: set OUTPOST_API_KEY" in result.stdout  # the real 401 has no body
    assert "HTTP 401" in result.stderr
    assert "sk_not_the_key" not in result.stdout + result.stderr


def test_ping_a_closed_port(closed_port: int) -> None:
    result = run_cli(["ping"], OUTPOST_API_KEY=API_KEY, OUTPOST_API_BASE_URL=f"http://127.0.0.1:{closed_port}/api/v1")
    assert result.returncode == EXIT_NETWORK
    assert "tcp     FAIL  could not connect" in result.stdout and "Connection refused" in result.stderr


def test_ping_a_wrong_base_path(server: OutpostServer) -> None:
    base = server.url.rsplit("/api/v1", 1)[0]
    result = run_cli(["ping"], OUTPOST_API_KEY=API_KEY, OUTPOST_API_BASE_URL=base)
    assert result.returncode == EXIT_CLIENT
    # Outpost serves /healthz at the root too: the wrong base shows at the auth step
    assert "auth    FAIL" in result.stdout and "health  ok" in result.stdout
    assert "no Outpost API at this base URL: it must include the version path" in result.stdout + result.stderr


class _Unhealthy(BaseHTTPRequestHandler):
    """Outpost with a failed worker: GET /healthz answers 503."""

    def do_GET(self) -> None:
        body = b'{"status":"failed","timestamp":"2025-01-01T00:00:00Z","workers":{"retrymq-consumer":{"status":"failed"}}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_ping_an_unhealthy_server_and_a_bad_url() -> None:
    bad = run_cli(["ping", "--base-url", "ftp://example"], OUTPOST_API_KEY=API_KEY)
    assert bad.returncode == EXIT_USAGE and "server_url must start with https://" in bad.stderr
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Unhealthy)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        result = run_cli(["ping"], OUTPOST_API_KEY=API_KEY,
                         OUTPOST_API_BASE_URL=f"http://127.0.0.1:{httpd.server_port}/api/v1")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    assert result.returncode == EXIT_SERVER
    assert "health  FAIL" in result.stdout and "HTTP 503" in result.stderr


# -- demo (the README's first command) -----------------------------------------------------


def test_demo_and_python_dash_m() -> None:
    result = subprocess.run([sys.executable, "-m", "minipub", "demo"], capture_output=True, text=True,
                            timeout=60, env=cli_env(), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["duplicate"] is False
    assert "the server accepted 1 event(s)" in result.stderr


def test_flags_beat_the_environment(server: OutpostServer, closed_port: int) -> None:
    result = run_cli(["publish", "t", "--tenant", "a", "--data", "{}", "--base-url", server.url, "--api-key", API_KEY],
                     OUTPOST_API_KEY="sk_wrong_from_env", OUTPOST_API_BASE_URL=f"http://127.0.0.1:{closed_port}/api/v1")
    assert result.returncode == 0, result.stderr
    assert [e["id"] for e in server.events] == [result.stdout.strip()]


def test_errors_name_the_fix_in_python_and_on_the_command_line(server: OutpostServer, closed_port: int) -> None:
    from minipub import SDK, RetryConfig
    from minipub.errors import NotFoundError, UnauthorizedError

    base = server.url.rsplit("/api/v1", 1)[0]
    with SDK("sk_wrong_key_123", server_url=server.url, retry_config=RetryConfig("none")) as sdk, \
            pytest.raises(UnauthorizedError) as wrong_key:
        sdk.publish.event(tenant_id="a", topic="t", data={})
    with SDK(API_KEY, server_url=base, retry_config=RetryConfig("none")) as sdk, \
            pytest.raises(NotFoundError) as no_version:
        sdk.publish.event(tenant_id="a", topic="t", data={})
    assert "set OUTPOST_API_KEY" in str(wrong_key.value) and "admin API key" in str(wrong_key.value)
    assert "must include the version path, e.g. http://localhost:3333/api/v1" in str(no_version.value)
    cli_key = run_cli(["publish", "t", "--tenant", "a", "--data", "{}", "--api-key", "sk_wrong_key_123"],
                      OUTPOST_API_BASE_URL=server.url)
    cli_path = run_cli(["publish", "t", "--tenant", "a", "--data", "{}"], OUTPOST_API_KEY=API_KEY,
                       OUTPOST_API_BASE_URL=base)
    refused = run_cli(["publish", "t", "--tenant", "a", "--data", "{}", *FAST, "--max-attempts", "1"],
                      OUTPOST_API_KEY=API_KEY, OUTPOST_API_BASE_URL=f"http://127.0.0.1:{closed_port}/api/v1")
    assert cli_key.returncode == EXIT_AUTH and str(wrong_key.value) in cli_key.stderr
    assert cli_path.returncode == EXIT_CLIENT and "must include the version path" in cli_path.stderr
    assert refused.returncode == EXIT_NETWORK
    assert f"(connecting to 127.0.0.1:{closed_port}); check the host and port" in refused.stderr
