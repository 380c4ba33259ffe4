"""The command line on the core's public names: the client it makes, the fields it reads, ping's reads."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

import minipub
from minipub import SDK, RetryBudget
from minipub.cli import build_parser
from minipub.cli.common import make_sdk, retry_config
from minipub.cli.gate import Gate
from minipub.cli.publish import event_fields
from minipub.client import USER_AGENT
from minipub.errors import ConfigurationError, UnauthorizedError
from minipub.fields import LINE_FIELDS, REQUIRED_FIELDS
from minipub.reads import credentials, get
from minipub.secret import Secret
from minipub.testing import OutpostServer
from minipub.testing.rawserver import ContractRequest, Peer, RawServer

from .cli_support import run_cli
from .conftest import API_KEY
from .test_secrets import recorded_locals

CLI = Path(minipub.__file__).parent / "cli"
#: Public (no underscore, documented in minipub.fields) but not yet listed in its module's __all__.


def parse(*argv: str) -> Any:
    return build_parser().parse_args(list(argv))


# -- only public names of the core ----------------------------------------------------------------


def _imports_and_attributes(path: Path) -> List[str]:
    """What a cli module takes from the core that is not public: a name outside the module's
    ``__all__`` (or a private module), and ``obj._name`` on anything but ``self``."""
    found: List[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level >= 2 or (node.module or "").startswith("minipub")):
            dotted = (node.module or "") if node.level == 0 else ".".join(
                filter(None, ["minipub", node.module]))
            if any(part.startswith("_") for part in dotted.split(".")):
                found.append(f"{path.name}:{node.lineno} imports the private module {dotted}")
                continue
            public = getattr(importlib.import_module(dotted), "__all__", ())
            found += [f"{path.name}:{node.lineno} imports {dotted}.{alias.name}, not in its __all__"
                      for alias in node.names
                      if alias.name not in public]
        elif (isinstance(node, ast.Attribute) and node.attr[:1] == "_" and node.attr[1:2].islower()
              and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"{path.name}:{node.lineno} reads .{node.attr}")
    return found


def test_the_cli_uses_only_public_names_of_the_core() -> None:
    modules = sorted(CLI.glob("*.py"))
    assert len(modules) >= 10
    assert [problem for path in modules for problem in _imports_and_attributes(path)] == []


def test_the_check_catches_a_private_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from ..client import USER_AGENT\nfrom .._version import __version__\n"
                   "def f(sdk):\n    return sdk._transport, self._fine\n")
    assert len(_imports_and_attributes(bad)) == 3


# -- the client the commands make -----------------------------------------------------------------


def test_bulk_has_no_retry_budget_and_the_other_commands_the_clients_default() -> None:
    gate = Gate()
    bulk = make_sdk(parse("bulk", "in.ndjson", "--api-key", API_KEY), retry_budget=None, wrap_auth=gate.wrap,
                    sleep=gate.sleep)
    replay = make_sdk(parse("outbox", "x.db", "replay", "--api-key", API_KEY), wrap_auth=gate.wrap,
                      sleep=gate.sleep)
    with bulk, replay, make_sdk(parse("publish", "t", "--tenant", "a", "--data", "{}", "--api-key", API_KEY)) as one:
        assert bulk.retry_budget is None
        assert isinstance(replay.retry_budget, RetryBudget) and isinstance(one.retry_budget, RetryBudget)
        assert bulk.auth is gate and replay.auth is gate


def test_the_gated_client_keeps_what_the_first_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_API_BASE_URL", "http://127.0.0.1:9/api/v1")
    monkeypatch.setenv("OUTPOST_API_KEY", API_KEY)
    args = parse("bulk", "in.ndjson", "--timeout", "2.5", "--max-attempts", "7", "--transport", "http.client")
    gate = Gate()
    with make_sdk(args, retry_budget=None, wrap_auth=gate.wrap, sleep=gate.sleep) as sdk:
        assert (sdk.server_url, sdk.timeout_ms, sdk.retry_config.max_attempts) == ("http://127.0.0.1:9/api/v1",
                                                                                  2500.0, 7)
        assert type(sdk.transport).__name__ == "HTTPClientTransport"
        assert args.server_url == sdk.server_url
        assert gate.api_key() == API_KEY  # the provider the first client resolved, behind the gate


def test_no_max_time_is_no_deadline() -> None:
    unbounded = retry_config(parse("bulk", "in.ndjson"))
    bounded = retry_config(parse("bulk", "in.ndjson", "--max-time", "5", "--backoff", "0.2", "--backoff-max", "1"))
    assert unbounded.backoff.max_elapsed_time is None and unbounded.deadline is None
    assert (bounded.backoff.max_elapsed_time, bounded.deadline) == (5000.0, 5.0)
    assert (bounded.backoff.initial_interval, bounded.backoff.max_interval) == (200.0, 1000.0)


def test_bulk_retries_past_what_a_retry_budget_allows(server: OutpostServer, tmp_path: Path) -> None:
    server.fail_next(503, times=int(RetryBudget().capacity) + 5)  # more retries than a default budget holds
    (tmp_path / "in.ndjson").write_text(json.dumps({"tenant_id": "a", "topic": "t", "data": {}}) + "\n")
    result = run_cli(["bulk", "in.ndjson", "--progress", "none", "--backoff", "0.001", "--backoff-max", "0.001"],
                     cwd=tmp_path, OUTPOST_API_KEY=API_KEY, OUTPOST_API_BASE_URL=server.url)
    assert result.returncode == 0, result.stderr
    assert len(server.events) == 1 and len(server.requests) == int(RetryBudget().capacity) + 6


# -- the publish fields, declared once -------------------------------------------------------------


@pytest.mark.parametrize("left_out", [["--tenant", "a"], ["--data", "{}"], ["t"]])
def test_the_required_fields_are_required_on_the_command_line(left_out: List[str]) -> None:
    argv = ["publish", "t", "--tenant", "a", "--data", "{}"]
    start = argv.index(left_out[0])
    with pytest.raises(SystemExit):
        parse(*argv[:start], *argv[start + len(left_out):])
    assert len(REQUIRED_FIELDS) == 3


def test_publish_flags_become_the_events_fields() -> None:
    every = event_fields(parse("publish", "user.created", "--tenant", "acme", "--data", '{"k": 1}', "--metadata",
                               "a=b=c", "--id", "evt-1", "--destination", "des_1", "--time", "2024-01-15T10:30:00Z",
                               "--no-retry-eligible"))
    least = event_fields(parse("publish", "t", "--tenant", "a", "--data", "{}"))
    assert every == {"tenant_id": "acme", "topic": "user.created", "data": {"k": 1}, "metadata": {"a": "b=c"},
                     "id": "evt-1", "destination_id": "des_1", "time": "2024-01-15T10:30:00Z",
                     "eligible_for_retry": False}
    assert least == {"tenant_id": "a", "topic": "t", "data": {}, "metadata": None, "id": None,
                     "destination_id": None, "time": None, "eligible_for_retry": True}
    assert set(every) == set(LINE_FIELDS)


def test_bulk_lines_carry_the_event_fields() -> None:
    from minipub.cli.bulk import FIELDS

    assert FIELDS == LINE_FIELDS


# -- ping's reads: the client's transport and key --------------------------------------------------


class RecordingTransport:
    """A user's transport (``SDK(transport=...)``): the built-in one, its requests counted."""

    def __init__(self) -> None:
        from minipub.transports import create_transport

        self.inner = create_transport()
        self.sent: List[str] = []

    def send(self, request: Any) -> Any:
        self.sent.append(f"{request.method} {request.url}")
        return self.inner.send(request)

    def close(self) -> None:
        self.inner.close()


def _answers_reads(peer: Peer) -> None:
    def reply(request: ContractRequest, peer: Peer) -> None:
        peer.respond(200, b'{"status": "healthy"}' if request.target.endswith("/healthz") else b'["a"]',
                     [("Content-Type", "application/json")])

    peer.serve(reply)


def test_reads_go_through_the_clients_transport_with_its_key() -> None:
    transport = RecordingTransport()
    with RawServer(_answers_reads) as outpost, \
            SDK(API_KEY, server_url=outpost.url("/api/v1"), transport=transport) as sdk:
        health = get(sdk, "/healthz", authenticated=False)
        topics = get(sdk, "/topics")
        seen = {request.target: request for request in outpost.requests}
    assert (health.status, topics.body) == (200, b'["a"]')
    assert transport.sent == [f"GET {sdk.server_url}/healthz", f"GET {sdk.server_url}/topics"]
    assert seen["/api/v1/healthz"].header("authorization") is None
    assert seen["/api/v1/topics"].header("authorization") == "Bearer " + API_KEY
    assert seen["/api/v1/topics"].header("user-agent") == USER_AGENT


class Rotating:
    """A key provider (not a StaticKey), holding its key out of sight as providers should."""

    def __init__(self, key: str) -> None:
        self.key = Secret(key)

    def api_key(self) -> str:
        if self.key.reveal() == "boom":
            raise RuntimeError("the vault is down")
        return self.key.reveal()

    def refresh(self) -> bool:
        return False


def _echoes_the_key(peer: Peer) -> None:
    def reply(request: ContractRequest, peer: Peer) -> None:
        echoed = (request.header("authorization") or "").encode()
        peer.respond(401, b'{"message": "bad key ' + echoed + b'"}',
                     [("Content-Type", "application/json"), ("X-Echo", echoed.decode())])

    peer.serve(reply)


@pytest.mark.parametrize("provider", ["static", "provider"])
def test_a_read_refused_hides_the_key_everywhere(provider: str) -> None:
    with RawServer(_echoes_the_key) as hostile:
        options: Dict[str, Any] = ({"admin_api_key": API_KEY} if provider == "static"
                                   else {"auth": Rotating(API_KEY)})
        with SDK(server_url=hostile.url("/api/v1"), **options) as sdk, \
                pytest.raises(UnauthorizedError) as refused:
            get(sdk, "/topics")
    error = refused.value
    assert error.status_code == 401 and "set OUTPOST_API_KEY" in str(error)
    shown = [str(error), error.body, json.dumps(error.headers), json.dumps(error.data), *recorded_locals(error)]
    assert not [text for text in shown if API_KEY in text]


def test_a_provider_that_fails_or_gives_a_bad_key_is_a_configuration_error() -> None:
    for key, message in [("boom", "raised RuntimeError"), ("two words", "contains whitespace")]:
        with SDK(auth=Rotating(key), server_url="http://127.0.0.1:9") as sdk, \
                pytest.raises(ConfigurationError, match=message) as wrong:
            credentials(sdk)
        assert key not in str(wrong.value) or key == "boom"
