"""What the command line prints from untrusted sources (a server's answer, a topic, an input line) is
escaped by one function, ``minipub.cli.common.printable``: no control character, ANSI escape, line
break or lone surrogate reaches the terminal raw, so none can forge a line or crash the print."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minipub.cli.common import EXIT_CLIENT, EXIT_OK, EXIT_REJECTED, EXIT_USAGE, printable
from minipub.testing import OutpostServer

from .cli_support import ServeProcess, run_cli
from .conftest import API_KEY

HOSTILE = "evil\x1b[2J\x1b]0;pwned\x07\r\naccepted id=FORGED tenant=x topic=y destinations=- duplicate=false\u2028\ud800"


def assert_clean(text: str) -> None:
    """Printed text: every character printable, except the line ends the command wrote itself."""
    assert all(c.isprintable() or c == "\n" for c in text), repr(text)
    text.encode("utf-8")  # no lone surrogate


@given(st.text())
def test_printable_escapes_exactly_what_cannot_be_printed(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable()
    shown.encode("utf-8")
    if text.isprintable():
        assert shown == text
    else:
        assert len(shown) > len(text)


class _Hostile(BaseHTTPRequestHandler):
    """An Outpost impostor: a 202 whose id, or a 422 whose message, is made to attack a terminal."""

    protocol_version = "HTTP/1.1"
    status = 202

    def do_POST(self) -> None:
        sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = ({"id": HOSTILE, "duplicate": False, "destination_ids": [HOSTILE]} if self.status == 202 else
                {"status": 422, "message": HOSTILE, "data": [HOSTILE, sent["id"]]})
        raw = json.dumps(body).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_a_hostile_id_and_message_are_printed_escaped(hostile: ThreadingHTTPServer) -> None:
    env = {"OUTPOST_API_KEY": API_KEY, "OUTPOST_API_BASE_URL": f"http://127.0.0.1:{hostile.server_port}/api/v1"}
    _Hostile.status = 202
    accepted = run_cli(["publish", "t", "--tenant", "a", "--data", "{}"], **env)
    as_json = run_cli(["publish", "t", "--tenant", "a", "--data", "{}", "--json"], **env)
    _Hostile.status = 422
    refused = run_cli(["publish", "t", "--tenant", "a", "--data", "{}"], **env)
    for result in (accepted, as_json, refused):
        assert "Traceback" not in result.stderr, result.stderr
        assert_clean(result.stdout + result.stderr)
        assert "FORGED" not in "".join(line.split(" ", 1)[0] for line in result.stdout.splitlines())
    # an id that does not match the event sent may be refused (ProtocolError, exit 6); never printed raw
    if accepted.returncode == EXIT_OK:
        assert accepted.stdout.count("\n") == 1 and "\\x1b[2J" in accepted.stdout
        assert json.loads(as_json.stdout)["id"] == HOSTILE  # JSON output: escaped by JSON itself
    assert refused.returncode == EXIT_CLIENT and refused.stderr.count("\n") == 1
    assert "\\r\\naccepted id=FORGED" in refused.stderr


def test_serve_prints_a_hostile_topic_on_one_line(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path)
    try:
        env = {"OUTPOST_API_KEY": serve.key, "OUTPOST_API_BASE_URL": serve.url}
        topic = "t\naccepted id=FORGED tenant=x topic=y destinations=- duplicate=false\n\x1b[2J"
        published = run_cli(["publish", topic, "--tenant", "acme", "--data", "{}"], **env)
    finally:
        assert serve.stop() == 0
    assert published.returncode == EXIT_OK, published.stderr
    assert serve.accepted() == [published.stdout.strip()]  # one accepted line, the real one
    assert_clean(serve.stdout)
    assert "topic=t\\naccepted id=FORGED" in serve.stdout


def test_bulk_and_outbox_print_hostile_lines_escaped(tmp_path: Path) -> None:
    lines: List[str] = [json.dumps({"tenant_id": "acme", "topic": "bad\x1b[2J\ntopic", "data": {}}),
                        json.dumps({"tenant_id": "acme", "topic": "user.created", "data": {}, "x\x1b[31m": 1})]
    (tmp_path / "in.ndjson").write_text("\n".join(lines) + "\n")
    with OutpostServer(API_KEY, topics=["user.created"]) as srv:
        env = {"OUTPOST_API_KEY": API_KEY, "OUTPOST_API_BASE_URL": srv.url}
        bulk = run_cli(["bulk", "in.ndjson", "--outbox", "out.db"], cwd=tmp_path, **env)
    listing = run_cli(["outbox", "out.db"], cwd=tmp_path)
    assert bulk.returncode == EXIT_REJECTED, bulk.stderr
    assert "line 1: " in bulk.stderr and "line 2: unknown field(s) x\\x1b[31m" in bulk.stderr
    assert listing.returncode == EXIT_OK and "topic=bad\\x1b[2J\\ntopic" in listing.stdout
    for text in (bulk.stderr, listing.stdout):
        assert_clean(text)


def test_a_data_error_names_the_flag_once(tmp_path: Path) -> None:
    inline = run_cli(["publish", "t", "--tenant", "a", "--data", "{nope"], OUTPOST_API_KEY=API_KEY)
    (tmp_path / "e.json").write_text("[1]")
    from_file = run_cli(["publish", "t", "--tenant", "a", "--data", "@e.json"], cwd=tmp_path, OUTPOST_API_KEY=API_KEY)
    assert (inline.returncode, from_file.returncode) == (EXIT_USAGE, EXIT_USAGE)
    assert "minipub publish: --data is not valid JSON (" in inline.stderr and inline.stderr.count("--data") == 1
    assert "--data file 'e.json' must be a JSON object" in from_file.stderr


def test_a_reader_that_goes_away_ends_the_listing_quietly(tmp_path: Path) -> None:
    import subprocess

    from .cli_support import cli_env, minipub_command

    lines = [json.dumps({"tenant_id": "acme", "topic": "gone", "data": {"n": n}}) for n in range(3000)]
    (tmp_path / "in.ndjson").write_text("\n".join(lines) + "\n")
    with OutpostServer(API_KEY, topics=["user.created"]) as srv:  # every line: 422, a dead letter
        run_cli(["bulk", "in.ndjson", "--outbox", "out.db", "--outbox-sync", "OFF"], cwd=tmp_path,
                OUTPOST_API_KEY=API_KEY, OUTPOST_API_BASE_URL=srv.url)
    process = subprocess.Popen([*minipub_command(), "outbox", "out.db", "--limit", "3000"], cwd=tmp_path,
                               env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    stderr = process.stderr.read()
    assert process.wait(timeout=30) == 141 and "3,000 dead letter(s)" in first
    assert "Traceback" not in stderr and stderr == "", stderr
