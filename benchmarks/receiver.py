"""A webhook receiver in its own process that counts Outpost's deliveries by ``x-outpost-event-id``.

    python benchmarks/receiver.py PORT

``POST /hook`` (any path but the two below) answers 200 and counts the delivery; ``GET /stats``
returns ``{"deliveries", "unique", "duplicates", "first", "last"}`` (``time.time()`` of the first and
last delivery since the last reset); ``POST /reset`` zeroes the counts. The process exits when its
parent is gone, or after an hour.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional

MAX_LIFETIME = 3600.0


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.by_id: Dict[str, int] = {}
        self.deliveries = 0
        self.first: Optional[float] = None
        self.last: Optional[float] = None

    def record(self, event_id: str) -> None:
        now = time.time()
        with self.lock:
            self.by_id[event_id] = self.by_id.get(event_id, 0) + 1
            self.deliveries += 1
            if self.first is None:
                self.first = now
            self.last = now

    def stats(self) -> Dict[str, object]:
        with self.lock:
            return {"deliveries": self.deliveries, "unique": len(self.by_id),
                    "duplicates": sum(1 for c in self.by_id.values() if c > 1),
                    "first": self.first, "last": self.last}


COUNTS = Counts()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/stats":
            self._answer(200, json.dumps(COUNTS.stats()).encode())
        else:
            self._answer(404)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/reset":
            with COUNTS.lock:
                COUNTS.reset()
        else:
            event_id = self.headers.get("x-outpost-event-id")
            if event_id:
                COUNTS.record(event_id)
        self._answer(200)

    def log_message(self, *args: object) -> None:
        pass


def main(port: int) -> None:
    parent, started = os.getppid(), time.monotonic()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    while os.getppid() == parent and time.monotonic() - started < MAX_LIFETIME:
        time.sleep(0.5)
    httpd.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]))
