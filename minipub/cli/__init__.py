"""The ``minipub`` command: ``publish``, ``bulk``, ``serve``, ``ping``, ``outbox``, ``demo``.

One module per command (``add_parser`` and ``run``); ``common`` holds the exit codes, the one
error → exit code table, and the configuration flags. argparse only.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Tuple

from .. import __version__
from . import bulk, demo, outbox, ping, publish, serve
from .common import EXIT_CODES, Command, command_parser, describe, exit_code_for

__all__ = ["main", "build_parser", "EXIT_CODES"]

COMMANDS: Tuple[Command, ...] = (publish, bulk, serve, ping, outbox, demo)

EPILOG = """\
configuration, resolved as the SDK does: --api-key, then an auth plugin (minipub-secretfile:
  OUTPOST_API_KEY_FILE or OUTPOST_API_KEY_COMMAND), then OUTPOST_API_KEY; --base-url, then
  OUTPOST_API_BASE_URL (it includes the version path, e.g. http://localhost:3333/api/v1).
exit codes: 0 ok, 1 some bulk lines failed for good, 2 usage or validation, 3 authentication,
  4 other client errors (4XX), 5 server errors after retries, 6 network (DNS, connect, TLS, timeout),
  130 interrupted.

example:
  minipub publish user.created --tenant acme --data '{"user_id": "usr_123"}'"""


def build_parser() -> argparse.ArgumentParser:
    """The parser with every command; ``minipub COMMAND --help`` shows each one's example."""
    parser = argparse.ArgumentParser(
        prog="minipub", description="Publish events to Hookdeck Outpost, and test against a local one.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"minipub {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log each retry (the minipub logger at INFO) on stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command_parser(commands, command)
    return parser


def _log_to_stderr(verbose: bool) -> None:
    """The minipub logger's warnings (and, verbose, each retry) on stderr, one plain line each."""
    import logging

    logger = logging.getLogger("minipub")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("minipub: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; returns its exit code (argparse exits with 2 on a bad command line)."""
    args = build_parser().parse_args(argv)
    _log_to_stderr(args.verbose)
    try:
        code: int = args.run(args)
        return code
    except BrokenPipeError:
        # The reader went away (`minipub outbox PATH | head`): stop quietly, as the shell's tools do,
        # and keep the interpreter's last flush of stdout from raising again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # SIGPIPE
    except (Exception, KeyboardInterrupt) as error:
        code_for = exit_code_for(error)
        if code_for is None:
            raise
        print(f"minipub {args.command}: {describe(error, getattr(args, 'server_url', None))}", file=sys.stderr)
        return code_for
