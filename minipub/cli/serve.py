"""``minipub serve``: the embedded Outpost-compatible server, with failures on demand."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Optional, TextIO, cast

from ..auth import API_KEY_ENV
from ..errors import ConfigurationError
from .common import EXIT_OK, UsageError, between, check_flags, printable

NAME = "serve"
SUMMARY = "Run an Outpost-compatible API (POST /publish, GET /healthz, GET /topics) and print each accepted event."
EXAMPLE = """\
  OUTPOST_API_KEY=dev-key minipub serve --port 3333 --fail-rate 0.2
  # elsewhere:
  OUTPOST_API_KEY=dev-key OUTPOST_API_BASE_URL=http://127.0.0.1:3333/api/v1 \\
      minipub publish user.created --tenant acme --data '{"user_id": "usr_123"}'"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3333, help="port (default: 3333; 0 picks a free one)")
    parser.add_argument("--prefix", default="/api/v1", help="the base path (default: /api/v1)")
    parser.add_argument("--api-key", metavar="KEY",
                        help=f"the admin key to accept (default: an auth plugin's, else ${API_KEY_ENV})")
    parser.add_argument("--topic", action="append", dest="topics", metavar="TOPIC",
                        help="a configured topic (repeatable); then other topics are rejected with 422")
    rate = between(0.0, 1.0, "a number between 0 and 1")
    seconds = between(0.0, 3600.0, "a number of seconds between 0 and 3600")
    parser.add_argument("--fail-rate", type=rate, default=0.0, metavar="RATE",
                        help="share of publish requests answered by a random retryable failure: 503, 429 "
                             "with Retry-After, a dropped connection (before or after accepting the event)")
    parser.add_argument("--retry-after", type=seconds, default=1.0, metavar="SECONDS",
                        help="the wait an injected 429 asks for (Retry-After rounded up, and retry-after-ms; "
                             "default: 1)")
    parser.add_argument("--seed", type=int, help="seed for the failure draws (repeatable runs)")
    parser.add_argument("--quiet", action="store_true", help="do not print accepted events")


class _Escaped:
    """The server's output stream: each line it writes (``text`` + newline) has the text escaped
    (``printable``): a topic or id a client sent can neither forge a line nor drive the terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        body, newline = (text[:-1], "\n") if text.endswith("\n") else (text, "")
        return self._stream.write(printable(body) + newline)

    def flush(self) -> None:
        self._stream.flush()


def _key_to_accept(args: argparse.Namespace) -> str:
    """The key a client would send: resolved by ``SDK``'s one rule (``--api-key``, an auth plugin,
    then ``OUTPOST_API_KEY``), read once."""
    from ..client import SDK

    check_flags(args)
    try:
        with SDK(args.api_key, server_url="http://127.0.0.1") as sdk:
            if sdk.auth is None:  # the default transport always needs a key; this is for the type checker
                raise ConfigurationError("no Outpost API key")
            return sdk.auth.api_key()
    except ConfigurationError as error:
        raise ConfigurationError(f"serve needs the key to accept: {error}") from None


def run(args: argparse.Namespace) -> int:
    from ..testing.server import OutpostServer

    key = _key_to_accept(args)
    server = OutpostServer(
        key, host=args.host, port=args.port, prefix=args.prefix, topics=args.topics, verbose=not args.quiet,
        stream=cast(TextIO, _Escaped(sys.stdout)), fail_rate=args.fail_rate, retry_after=args.retry_after,
        seed=args.seed,
    )
    try:
        server.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    faults = f"failing {args.fail_rate:.0%} of publishes at random; " if args.fail_rate else ""
    print(f"minipub serve: listening on {server.url} ({faults}Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    injected = server.injected_faults
    mix = ", ".join(f"{kind} x{count}" for kind, count in sorted(injected.items())) or "none"
    print(f"minipub serve: stopped; {len(server.events)} event(s) accepted, "
          f"{len(server.requests)} publish request(s), injected failures: {mix}", file=sys.stderr, flush=True)
    return EXIT_OK
