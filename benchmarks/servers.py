"""The benchmark's server: nginx when it is installed, else a small fast responder process.

Either way the server runs in another process on 127.0.0.1 and answers ``POST /api/v1/publish``
with a fixed 202 JSON body, keep-alive, so the client's CPU is measured on its own. The responder
reads requests with ``minipub.testing.wire``, the one reader of every hand-written test server.
``python benchmarks/servers.py PORT`` runs the fallback responder (what ``start_server`` does);
``python benchmarks/servers.py PORT 2`` answers each request 2 ms after it arrived, on any number of
connections at once (``start_latency_responder``: a server with a realistic latency).
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Deque, Dict, Iterator, List, Optional, Tuple

if TYPE_CHECKING:
    from minipub.testing.wire import MessageReader

ROOT = Path(__file__).resolve().parents[1]

# No "id": one canned answer serves every event, and minipub checks a named id against the one it sent.
BODY = b'{"duplicate":false,"destination_ids":["des_bench"]}'
PATH = "/api/v1/publish"
# outpost-sdk requires an "id" in the answer (pydantic) and checks nothing of it: its own base path
# (SDK_PREFIX + "/api/v1") gets the same answer with one fixed id.
SDK_PREFIX = "/sdk"
SDK_BODY = b'{"id":"bench","duplicate":false,"destination_ids":["des_bench"]}'

MAX_LIFETIME = 3600.0  # the responder stops by itself after an hour, or as soon as its parent is gone

NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = {path} {{
            default_type application/json;
            return 202 '{body}';
        }}
        location = {sdk_path} {{
            default_type application/json;
            return 202 '{sdk_body}';
        }}
    }}
}}
"""


def sdk_url(url: str) -> str:
    """The base URL at which the local server answers outpost-sdk (an answer with an id)."""
    scheme, _, host, path = url.split("/", 3)
    return f"{scheme}//{host}{SDK_PREFIX}/{path}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"the server did not listen on 127.0.0.1:{port} within {timeout} s")


def stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """Stop a server process by its PID: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def nginx_binary() -> Optional[str]:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)


@contextlib.contextmanager
def start_server(kind: str = "auto") -> Iterator[Tuple[str, str]]:
    """Yield ``(base_url, description)``; ``kind`` is ``"auto"``, ``"nginx"`` or ``"responder"``."""
    binary = nginx_binary() if kind in ("auto", "nginx") else None
    if kind == "nginx" and binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="minipub-bench-") as tmp:
        if binary is not None:
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, path=PATH, body=BODY.decode(),
                                              sdk_path=SDK_PREFIX + PATH, sdk_body=SDK_BODY.decode()))
            version = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10).stderr.strip()
            command = [binary, "-e", f"{tmp}/error.log", "-p", tmp, "-c", str(conf), "-g", "daemon off;"]
            description = f"{version.replace('nginx version: ', '')} (1 worker)"
        else:
            command = [sys.executable, __file__, str(port)]
            description = "python responder (selectors, 1 process; nginx not installed)"
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_listening(port, proc)
            yield f"http://127.0.0.1:{port}/api/v1", description
        finally:
            stop(proc)


@contextlib.contextmanager
def start_latency_responder(latency_ms: float = 2.0) -> Iterator[Tuple[str, str, int]]:
    """Yield ``(base_url, description, pid)`` of a responder answering ``latency_ms`` after each request."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, str(port), str(latency_ms)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_listening(port, proc)
        yield (f"http://127.0.0.1:{port}/api/v1",
               f"python responder, {latency_ms:g} ms before each answer (selectors, 1 process)", proc.pid)
    finally:
        stop(proc)


def process_cpu_seconds(pid: int) -> float:
    """user+sys CPU seconds of a live process (Linux /proc), its waited-for children included; 0 elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the ")" that ends the command name: field 3 (state) is fields[0]; utime..cstime are 14..17.
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


# -- the fallback responder ------------------------------------------------------------------

def _response(body: bytes = BODY) -> bytes:
    head = ("HTTP/1.1 202 Accepted\r\nServer: bench-responder\r\nDate: {date}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    return head.format(date=date).encode() + body


_SDK_LINE = "POST " + SDK_PREFIX + "/"


def _requests_in(reader: MessageReader, data: bytes) -> List[bool]:
    """For each request ``data`` completes, whether it is outpost-sdk's (its path); the rest stays in ``reader``."""
    reader.feed(data)
    count: List[bool] = []
    message = reader.next()
    while message is not None:
        count.append(message.start.startswith(_SDK_LINE))
        message = reader.next()
    return count


def serve(port: int, latency: float = 0.0) -> None:
    """A single-threaded keep-alive responder (selectors); exits with its parent.

    With ``latency`` > 0 each answer is sent ``latency`` seconds after its request arrived, for any
    number of connections at once (a FIFO of due times: the delay is the same for every request).
    """
    import selectors

    from minipub.testing.wire import MessageReader  # requests read as every hand-written test server reads them

    parent = os.getppid()
    started = time.monotonic()
    # select() waits to the microsecond; epoll and poll round a timeout up to the next millisecond.
    selector = selectors.SelectSelector() if latency > 0 else selectors.DefaultSelector()
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ)
    readers: Dict[socket.socket, MessageReader] = {}
    due: Deque[Tuple[float, socket.socket, List[bool]]] = collections.deque()
    response, sdk_response, minted = _response(), _response(SDK_BODY), time.monotonic()

    def answer(sock: socket.socket, count: List[bool]) -> None:
        if sock.fileno() < 0:
            return
        sock.setblocking(True)
        try:
            sock.sendall(response * len(count) if not any(count) else
                         b"".join(sdk_response if sdk else response for sdk in count))
        except OSError:
            pass
        sock.setblocking(False)

    while os.getppid() == parent and time.monotonic() - started < MAX_LIFETIME:
        now = time.monotonic()
        if now - minted > 1:
            response, sdk_response, minted = _response(), _response(SDK_BODY), now
        timeout = 1.0 if not due else max(0.0, due[0][0] - now)
        for key, _ in selector.select(timeout=timeout):
            sock = key.fileobj
            if sock is listener:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.setblocking(False)
                selector.register(conn, selectors.EVENT_READ)
                readers[conn] = MessageReader()
                continue
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                readers.pop(sock, None)
                sock.close()
                continue
            try:
                count = _requests_in(readers[sock], data)
            except ValueError:  # not HTTP as minipub.testing reads it: drop the connection
                selector.unregister(sock)
                readers.pop(sock, None)
                sock.close()
                continue
            if count and latency > 0:
                due.append((time.monotonic() + latency, sock, count))
            elif count:
                answer(sock, count)
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, sock, count = due.popleft()
            answer(sock, count)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # the responder process: minipub from this checkout, as run.py uses it
    serve(int(sys.argv[1]), float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0)
