"""``minipub bulk`` and ``minipub outbox``, run as the installed console script in subprocesses."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from minipub.cli.bulk import derived_id
from minipub.cli.common import (
    EXIT_AUTH,
    EXIT_CLIENT,
    EXIT_INTERRUPTED,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_SERVER,
    EXIT_USAGE,
)
from minipub.testing import OutpostServer

from .cli_support import ServeProcess, cli_env, minipub_command, run_cli, wait_for
from .conftest import API_KEY

FAST = ["--backoff", "0.01", "--backoff-max", "0.05"]


def write_events(path: Path, count: int, *, topic: str = "user.created", every_id: int = 0) -> List[str]:
    """``count`` NDJSON lines (every ``every_id``-th with its own id); returns the ids the server will see."""
    ids = []
    with open(path, "w") as out:
        for n in range(1, count + 1):
            line: Dict[str, Any] = {"tenant_id": f"t{n % 3}", "topic": topic, "data": {"n": n}}
            if every_id and n % every_id == 0:
                line["id"] = f"own-{n}"
            text = json.dumps(line)
            out.write(text + "\n")
            ids.append(line.get("id") or derived_id(n, text))
    return ids


@pytest.fixture
def server() -> Iterator[OutpostServer]:
    """A server of its own for each test (not conftest's shared one): a late request from another
    test (e.g. one that timed out on the client's side) cannot land here."""
    with OutpostServer(API_KEY, processing_wait=0.5) as srv:
        yield srv


@pytest.fixture
def env(server: OutpostServer) -> Dict[str, str]:
    return {"OUTPOST_API_KEY": API_KEY, "OUTPOST_API_BASE_URL": server.url}


def test_bulk_5000_lines_through_random_failures_delivers_each_event_once(tmp_path: Path) -> None:
    ids = write_events(tmp_path / "events.ndjson", 5000, every_id=7)
    serve = ServeProcess(tmp_path, "--fail-rate", "0.2", "--retry-after", "0.01", "--seed", "11")
    try:
        started = time.monotonic()
        result = run_cli(["bulk", "events.ndjson", *FAST, "--concurrency", "8"], cwd=tmp_path, timeout=120,
                         OUTPOST_API_KEY=serve.key, OUTPOST_API_BASE_URL=serve.url)
        elapsed = time.monotonic() - started
    finally:
        assert serve.stop() == 0
    assert result.returncode == EXIT_OK, result.stderr[-2000:]
    accepted = Counter(serve.accepted())
    assert set(accepted) == set(ids) and set(accepted.values()) == {1}  # each id once, none missing
    assert "5,000 delivered" in result.stderr
    faults = dict(re.findall(r"(\S+) x(\d+)", serve.stderr.splitlines()[-1]))
    assert set(faults) == {"503", "429", "drop", "drop-after-accept"} and sum(map(int, faults.values())) > 800
    # not a terminal: no bar, at most three plain progress lines
    assert "\r" not in result.stderr
    assert len(re.findall(r"^minipub: [\d,]+/5,000 events", result.stderr, re.M)) <= 3
    print(f"\nbulk: 5,000 events through {sum(map(int, faults.values()))} injected faults in {elapsed:.1f}s")


def test_bulk_reports_lines_that_fail_for_good_and_exits_1(tmp_path: Path) -> None:
    good = json.dumps({"tenant_id": "acme", "topic": "user.created", "data": {"ok": True}})
    lines = [
        good,
        "{not json",
        "[1, 2]",
        json.dumps({"tenant_id": "acme", "topic": "user.created", "data": {}, "colour": "red"}),
        json.dumps({"topic": "user.created", "data": {}}),
        json.dumps({"tenant_id": "acme", "topic": "user.created", "data": [1]}),
        "",
        json.dumps({"tenant_id": "acme", "topic": "order.lost", "data": {}, "id": "refused-by-server"}),
        json.dumps({"tenant_id": "acme", "topic": "user.created", "data": {}, "_note": "ignored"}),
    ]
    (tmp_path / "in.ndjson").write_text("\n".join(lines) + "\n")
    with OutpostServer(API_KEY, topics=["user.created"]) as srv:
        result = run_cli(["bulk", "in.ndjson"], cwd=tmp_path, OUTPOST_API_KEY=API_KEY, OUTPOST_API_BASE_URL=srv.url)
        delivered = sorted(e["id"] for e in srv.events)
    assert result.returncode == EXIT_REJECTED, result.stderr
    assert delivered == sorted([derived_id(1, good), derived_id(9, lines[8])])
    for number, message in [(2, "not valid JSON"), (3, "must be a JSON object"), (4, "unknown field(s) colour"),
                            (5, "tenant_id is required"), (6, "data must be a mapping"),
                            (8, "topic is invalid (HTTP 422)")]:
        assert f"minipub bulk: line {number}: " in result.stderr and message in result.stderr, (number, message)
    rejects = [json.loads(line) for line in (tmp_path / "in.rejects.ndjson").read_text().splitlines()]
    assert sorted(r["_line"] for r in rejects) == [2, 3, 4, 5, 6, 8]
    by_line = {r["_line"]: r for r in rejects}
    assert by_line[2]["_input"] == "{not json" and "BadRequestError" in by_line[8]["_error"]
    assert by_line[8]["id"] == "refused-by-server"  # the request itself, ready to fix and feed back
    assert "2 delivered" in result.stderr and "6 failed" in result.stderr


def test_bulk_from_stdin_rerun_sends_the_same_ids(server: OutpostServer, env: Dict[str, str],
                                                  tmp_path: Path) -> None:
    ids = write_events(tmp_path / "in.ndjson", 50)
    text = (tmp_path / "in.ndjson").read_text()
    first = run_cli(["bulk", "-", "--rejects", str(tmp_path / "r.ndjson")], input=text, **env)
    second = run_cli(["bulk", "-"], input=text, cwd=tmp_path, **env)
    assert (first.returncode, second.returncode) == (EXIT_OK, EXIT_OK), first.stderr + second.stderr
    assert sorted(e["id"] for e in server.events) == sorted(ids)
    assert "50 delivered (50 already known to Outpost)" in second.stderr
    assert not (tmp_path / "r.ndjson").exists() and not (tmp_path / "stdin.rejects.ndjson").exists()


def test_bulk_gives_up_at_max_time_without_losing_lines(server: OutpostServer, env: Dict[str, str],
                                                        tmp_path: Path) -> None:
    write_events(tmp_path / "in.ndjson", 30)
    server.fail_next(503, times=10_000)
    result = run_cli(["bulk", "in.ndjson", *FAST, "--max-time", "0.5", "--concurrency", "2"], cwd=tmp_path, **env)
    assert result.returncode == EXIT_SERVER, result.stderr
    rejected = (tmp_path / "in.rejects.ndjson").read_text().splitlines() if (
        tmp_path / "in.rejects.ndjson").exists() else []
    not_submitted = int(re.search(r"([\d,]+) line\(s\) not submitted", result.stderr).group(1)) if (
        "not submitted" in result.stderr) else 0
    assert len(rejected) + not_submitted == 30  # every line is accounted for
    assert "run it again to send the rest" in result.stderr and "not delivered (retries or time ran out)" in result.stderr


def test_bulk_against_a_closed_port_exits_6(tmp_path: Path) -> None:
    import socket

    write_events(tmp_path / "in.ndjson", 5)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
        result = run_cli(["bulk", "in.ndjson", *FAST, "--max-time", "0.3"], cwd=tmp_path,
                         OUTPOST_API_KEY=API_KEY, OUTPOST_API_BASE_URL=url)
    assert result.returncode == EXIT_NETWORK, result.stderr


def test_bulk_usage_errors(env: Dict[str, str], tmp_path: Path) -> None:
    missing = run_cli(["bulk", "nope.ndjson"], cwd=tmp_path, **env)
    assert missing.returncode == EXIT_USAGE and "cannot read input 'nope.ndjson'" in missing.stderr
    (tmp_path / "in.ndjson").write_text("{}\n")
    no_key = run_cli(["bulk", "in.ndjson"], cwd=tmp_path, OUTPOST_API_BASE_URL=env["OUTPOST_API_BASE_URL"])
    assert no_key.returncode == EXIT_USAGE


@pytest.mark.parametrize("stage", ["while reading the input", "while delivering"])
def test_bulk_interrupted_then_resumed_with_the_same_outbox(server: OutpostServer, env: Dict[str, str],
                                                            tmp_path: Path, stage: str) -> None:
    count, workers = 800, 4
    ids = write_events(tmp_path / "in.ndjson", count, every_id=10)
    args = ["bulk", "in.ndjson", "--outbox", "out.db", "--concurrency", str(workers)]
    if stage == "while delivering":
        # about 400 events/s with 4 workers, while the input is read faster: the outbox fills up
        server.delay_next(0.01, times=100_000)
        args += ["--outbox-sync", "NORMAL"]
    # else: Outpost answers at once and each line is committed to disk (FULL) before the next is
    # read, so the interrupt lands while the input is being read
    process = subprocess.Popen([*minipub_command(), *args], cwd=tmp_path, env=cli_env(**env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(server.events) >= 300, timeout=30, interval=0.005)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    first_run = {e["id"] for e in server.events}
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "interrupted" in stderr and "run the same command again to resume" in stderr
    assert 300 <= len(first_run) < count
    submitted = json.loads((tmp_path / "out.db.bulk.json").read_text())["submitted_through"]
    [through] = submitted.values()
    if stage == "while delivering":
        assert through == count and f"{count - len(first_run):,} event(s) wait in the outbox" in stderr
    else:
        assert len(first_run) <= through < count
    requests_before = len(server.requests)
    server.reset_faults()

    resumed = run_cli(args, cwd=tmp_path, **env)
    assert resumed.returncode == EXIT_OK, resumed.stderr
    assert f"resuming after line {through}" in resumed.stderr
    assert Counter(e["id"] for e in server.events) == Counter(ids)  # every event, each once
    sent_again = [r.json["id"] for r in server.requests[requests_before:] if r.json["id"] in first_run]
    assert len(sent_again) <= workers  # at most what was in flight at the interrupt
    assert not (tmp_path / "out.db.bulk.json").exists()  # finished: the checkpoint is gone
    listing = run_cli(["outbox", "out.db"], cwd=tmp_path)
    assert listing.returncode == 0 and "0 pending, 0 dead letter(s)" in listing.stdout


def test_outbox_list_replay_and_purge(tmp_path: Path) -> None:
    lines = [json.dumps({"tenant_id": "acme", "topic": topic, "data": {"n": n}})
             for n, topic in enumerate(["user.created", "order.lost", "order.lost", "order.gone"], 1)]
    (tmp_path / "in.ndjson").write_text("\n".join(lines) + "\n")
    with OutpostServer(API_KEY, topics=["user.created"]) as srv:
        env = {"OUTPOST_API_KEY": API_KEY, "OUTPOST_API_BASE_URL": srv.url}
        bulk = run_cli(["bulk", "in.ndjson", "--outbox", "out.db"], cwd=tmp_path, **env)
        assert bulk.returncode == EXIT_REJECTED
        listing = run_cli(["outbox", "out.db"], cwd=tmp_path)
        assert "0 pending, 3 dead letter(s)" in listing.stdout and "topic is invalid" in listing.stdout
        dead = [json.loads(line) for line in run_cli(["outbox", "out.db", "--json"], cwd=tmp_path).stdout.splitlines()]
        assert [d["kind"] for d in dead] == ["dead"] * 3 and {d["status"] for d in dead} == {422}
        srv._topics = ["user.created", "order.lost"]  # the operator fixed the server's topics
        lost = [str(d["row"]) for d in dead if d["topic"] == "order.lost"]
        replay = run_cli(["outbox", "out.db", "replay", "--id", lost[0], "--id", lost[1]], cwd=tmp_path, **env)
        assert replay.returncode == EXIT_OK, replay.stderr
        assert "2 dead letter(s) back in the outbox" in replay.stderr and "2 delivered" in replay.stderr
        assert sorted(e["topic"] for e in srv.events) == ["order.lost", "order.lost", "user.created"]
    remaining = json.loads(run_cli(["outbox", "out.db", "--json"], cwd=tmp_path).stdout)
    assert remaining["topic"] == "order.gone"
    purge = run_cli(["outbox", "out.db", "purge-dead"], cwd=tmp_path)
    assert purge.returncode == 0 and "1 dead letter(s) deleted" in purge.stderr
    assert "0 pending, 0 dead letter(s)" in run_cli(["outbox", "out.db"], cwd=tmp_path).stdout
    assert run_cli(["outbox", "missing.db"], cwd=tmp_path).returncode == EXIT_USAGE


def test_bulk_progress_bar_in_a_pseudo_terminal(server: OutpostServer, env: Dict[str, str],
                                                tmp_path: Path) -> None:
    write_events(tmp_path / "in.ndjson", 300)
    server.delay_next(0.002, times=300)
    primary, secondary = os.openpty()
    try:
        process = subprocess.Popen([*minipub_command(), "bulk", "in.ndjson", "--concurrency", "2"], cwd=tmp_path,
                                   env=cli_env(**env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=secondary)
        os.close(secondary)
        secondary = -1
        output = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        assert process.wait(timeout=10) == EXIT_OK
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    text = output.decode()
    bars = re.findall(r"\r\[[#.]{24}\] ([\d,]+)/300 events", text)
    assert bars and bars[-1] == "300", text
    assert "ETA" in text and "/s" in text and "failures 0" in text
    assert "minipub: " not in text.replace("minipub bulk:", "")  # no plain progress lines on a terminal


# -- a configuration that makes every line fail: stop at once -------------------------------


class _GinNotFound(BaseHTTPRequestHandler):
    """Outpost's router for a path it does not serve (a base URL without /api/v1): a text 404."""

    protocol_version = "HTTP/1.1"
    count = 0

    def do_POST(self) -> None:
        type(self).count += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "18")
        self.end_headers()
        self.wfile.write(b"404 page not found")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def not_found_url() -> Iterator[str]:
    _GinNotFound.count = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _GinNotFound)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.mark.parametrize("case", ["wrong key", "no version path"])
def test_bulk_stops_at_once_when_the_configuration_is_wrong(server: OutpostServer, not_found_url: str,
                                                            tmp_path: Path, case: str) -> None:
    count, workers = 100_000, 8
    write_events(tmp_path / "in.ndjson", count)
    if case == "wrong key":
        env = {"OUTPOST_API_KEY": "sk_wrong_" + "k" * 20, "OUTPOST_API_BASE_URL": server.url}
        code, fix = EXIT_AUTH, "set OUTPOST_API_KEY"
    else:
        env = {"OUTPOST_API_KEY": API_KEY, "OUTPOST_API_BASE_URL": not_found_url}
        code, fix = EXIT_CLIENT, "must include the version path"
    started = time.monotonic()
    result = run_cli(["bulk", "in.ndjson", "--concurrency", str(workers)], cwd=tmp_path, **env)
    elapsed = time.monotonic() - started
    sent = len(server.requests) if case == "wrong key" else _GinNotFound.count
    print(f"\nbulk, {count:,} lines, {case}: {sent} request(s), exit {result.returncode}, {elapsed:.2f} s")
    assert result.returncode == code, result.stderr[-2000:]
    assert 1 <= sent <= workers  # at most the one each worker had in flight
    assert not (tmp_path / "in.rejects.ndjson").exists()  # nothing is a reject: every line is fine
    assert fix in result.stderr and "stopped" in result.stderr
    assert env["OUTPOST_API_KEY"] not in result.stdout + result.stderr
    assert len(result.stderr.splitlines()) <= 6, result.stderr  # no line per event
    assert elapsed < 10  # "a second or two"; generous for a loaded machine


def test_bulk_with_an_outbox_keeps_the_events_pending_when_the_key_is_wrong(server: OutpostServer,
                                                                           tmp_path: Path) -> None:
    ids = write_events(tmp_path / "in.ndjson", 300)
    args = ["bulk", "in.ndjson", "--outbox", "out.db", "--outbox-sync", "OFF", "--concurrency", "4"]
    wrong = run_cli(args, cwd=tmp_path, OUTPOST_API_KEY="sk_wrong_" + "k" * 20, OUTPOST_API_BASE_URL=server.url)
    assert wrong.returncode == EXIT_AUTH, wrong.stderr
    assert 1 <= len(server.requests) <= 4 and server.events == []
    assert "run the same command again" in wrong.stderr
    listing = run_cli(["outbox", "out.db", "--json", "--limit", "1000"], cwd=tmp_path)
    kinds = Counter(json.loads(line)["kind"] for line in listing.stdout.splitlines())
    assert kinds["dead"] == 0 and kinds["pending"] >= 1, listing.stdout  # none a dead letter
    fixed = run_cli(args, cwd=tmp_path, OUTPOST_API_KEY=API_KEY, OUTPOST_API_BASE_URL=server.url)
    assert fixed.returncode == EXIT_OK, fixed.stderr
    assert Counter(e["id"] for e in server.events) == Counter(ids)  # every event, each once


# -- stopping: bounded by --max-time, honest about what was on the wire ----------------------


def test_bulk_max_time_bounds_the_run_against_a_closed_port(tmp_path: Path) -> None:
    import socket

    write_events(tmp_path / "in.ndjson", 50)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
        started = time.monotonic()
        result = run_cli(["bulk", "in.ndjson", "--max-time", "2"], cwd=tmp_path,  # default backoff: waits up to 8 s
                         OUTPOST_API_KEY=API_KEY, OUTPOST_API_BASE_URL=url)
        elapsed = time.monotonic() - started
    print(f"\nbulk --max-time 2 against a closed port: {elapsed:.2f} s")
    assert result.returncode == EXIT_NETWORK, result.stderr
    assert elapsed < 2 + 1.5  # was 2 + 2.1 s: a retry's wait and the stop ran past the limit
    assert "(connecting to 127.0.0.1:" in result.stderr  # the rejects listing names where it tried


def test_bulk_max_time_bounds_the_run_against_a_server_that_never_answers(server: OutpostServer,
                                                                          env: Dict[str, str], tmp_path: Path) -> None:
    write_events(tmp_path / "in.ndjson", 50)
    server.delay_next(30.0, times=100)  # longer than the run, and than --timeout
    started = time.monotonic()
    result = run_cli(["bulk", "in.ndjson", "--max-time", "1", "--timeout", "20", "--concurrency", "4"], cwd=tmp_path,
                     **env)
    elapsed = time.monotonic() - started
    print(f"\nbulk --max-time 1 against a server that never answers: {elapsed:.2f} s")
    assert elapsed < 1 + 1 + 1.5  # --max-time, then 1 s for what is on the wire
    assert "4 may or may not have been delivered (sent, no answer came)" in result.stderr, result.stderr
    assert "46 not sent (queued when the run stopped)" in result.stderr


def test_bulk_interrupted_without_an_outbox_says_what_may_have_been_delivered(
        server: OutpostServer, env: Dict[str, str], tmp_path: Path) -> None:
    write_events(tmp_path / "in.ndjson", 10)
    server.delay_next(5.0, times=100)  # every request is answered after 5 s: on the wire at Ctrl-C
    process = subprocess.Popen([*minipub_command(), "bulk", "in.ndjson", "--concurrency", "2"], cwd=tmp_path,
                               env=cli_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(server.requests) >= 2, timeout=30)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "2 may or may not have been delivered (sent, no answer came)" in stderr, stderr
    assert "8 not sent (queued when the run stopped)" in stderr
    assert "retries or time ran out" not in stderr  # none was retried
    rejects = [json.loads(line) for line in (tmp_path / "in.rejects.ndjson").read_text().splitlines()]
    assert sum("may or may not have been delivered" in r["_error"] for r in rejects) == 2 and len(rejects) == 10


def test_outbox_replay_with_a_wrong_key_stops_and_keeps_the_events_pending(server: OutpostServer,
                                                                         tmp_path: Path) -> None:
    ids = write_events(tmp_path / "in.ndjson", 200)
    wrong = {"OUTPOST_API_KEY": "sk_wrong_" + "k" * 20, "OUTPOST_API_BASE_URL": server.url}
    bulk = run_cli(["bulk", "in.ndjson", "--outbox", "out.db", "--outbox-sync", "OFF"], cwd=tmp_path, **wrong)
    assert bulk.returncode == EXIT_AUTH, bulk.stderr
    # finish reading the input into the outbox (the right key, but a server that is down: all stay pending)
    server.fail_next(503, times=100_000)
    run_cli(["bulk", "in.ndjson", "--outbox", "out.db", "--outbox-sync", "OFF", "--max-time", "1", *FAST],
            cwd=tmp_path, OUTPOST_API_KEY=API_KEY, OUTPOST_API_BASE_URL=server.url)
    server.reset_faults()
    before = len(server.requests)
    replay = run_cli(["outbox", "out.db", "replay", "--concurrency", "4"], cwd=tmp_path, **wrong)
    assert replay.returncode == EXIT_AUTH, replay.stderr
    assert 1 <= len(server.requests) - before <= 4
    assert "set OUTPOST_API_KEY" in replay.stderr and len(replay.stderr.splitlines()) <= 4, replay.stderr
    listing = run_cli(["outbox", "out.db"], cwd=tmp_path)
    assert f"{len(ids)} pending, 0 dead letter(s)" in listing.stdout, listing.stdout
    fixed = run_cli(["outbox", "out.db", "replay"], cwd=tmp_path, OUTPOST_API_KEY=API_KEY,
                    OUTPOST_API_BASE_URL=server.url)
    assert fixed.returncode == EXIT_OK, fixed.stderr
    assert Counter(e["id"] for e in server.events) == Counter(ids)
