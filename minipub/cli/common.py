"""What every command shares: exit codes, the one error → exit code table, configuration flags."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Protocol, Tuple, Type
from urllib.parse import urlsplit

from ..auth import API_KEY_ENV, AuthProvider, check_key
from ..client import BASE_URL_ENV, DEFAULT_SERVER_URL, SDK
from ..errors import (
    CONFIGURATION_HINTS,
    CONNECT_HINT,
    APIError,
    ConnectError,
    MinipubError,
    OutboxError,
    PluginError,
    TLSError,
    TransportError,
    UnauthorizedError,
    ValidationError,
)
from ..retry import BackoffStrategy, RetryConfig

__all__ = [
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "EXIT_AUTH",
    "EXIT_CLIENT",
    "EXIT_SERVER",
    "EXIT_NETWORK",
    "EXIT_INTERRUPTED",
    "EXIT_CODES",
    "UsageError",
    "exit_code_for",
    "undelivered_exit_code",
    "describe",
    "configuration_wrong",
    "printable",
    "command_parser",
    "Command",
    "add_connection_flags",
    "add_retry_flags",
    "check_flags",
    "add_transport_flag",
    "add_sending_flags",
    "make_sdk",
    "retry_config",
    "read_source",
    "json_object",
    "positive",
    "between",
]

EXIT_OK = 0
#: ``bulk`` only: some lines failed for good (see the rejects file).
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_CLIENT = 4
EXIT_SERVER = 5
EXIT_NETWORK = 6
#: Ctrl-C (128 + SIGINT), the shell's convention.
EXIT_INTERRUPTED = 130


class UsageError(MinipubError):
    """A command line that cannot work: a bad flag value, an unreadable file, invalid JSON."""


Row = Tuple[int, Tuple[Type[BaseException], ...]]


def _table(*rows: Row) -> Dict[Type[BaseException], int]:
    return {cls: code for code, classes in rows for cls in classes}


#: The one exception → exit code table, like ``errors.STATUS_CLASSES``: the most specific class
#: of an error wins (its MRO is walked). An ``APIError`` other than ``UnauthorizedError`` follows
#: its status family: 4XX (and 1XX/3XX) exit ``EXIT_CLIENT``, 5XX ``EXIT_SERVER`` (retries, when
#: the status is retryable, are over by then).
EXIT_CODES: Mapping[Type[BaseException], int] = _table(
    # ConfigurationError is a ValidationError; OutboxError: the outbox file cannot be used;
    # PluginError: an installed plugin failed to load or raised
    (EXIT_USAGE, (UsageError, ValidationError, OutboxError, PluginError)),
    (EXIT_AUTH, (UnauthorizedError,)),  # 401, 403, 407, 511
    (EXIT_CLIENT, (APIError,)),  # EXIT_SERVER for a 5XX status
    (EXIT_NETWORK, (TransportError,)),  # DNS, connect, TLS, timeout, connection lost, not HTTP
    (EXIT_INTERRUPTED, (KeyboardInterrupt,)),
)


def exit_code_for(error: BaseException) -> Optional[int]:
    """The exit code for an error, or None when the table does not know it (a bug: let it raise)."""
    for cls in type(error).__mro__:
        code = EXIT_CODES.get(cls)
        if code is not None:
            if code == EXIT_CLIENT and isinstance(error, APIError) and error.status_code >= 500:
                return EXIT_SERVER
            return code
    return None


def undelivered_exit_code(errors: Iterable[BaseException]) -> int:
    """For events given up on (retries or time ran out): the most frequent code among their last
    errors (``EXIT_SERVER`` or ``EXIT_NETWORK``), ``EXIT_SERVER`` when none is known."""
    codes = [code for code in map(exit_code_for, errors) if code is not None]
    return max(sorted(set(codes)), key=codes.count) if codes else EXIT_SERVER


def describe(error: BaseException, server_url: Optional[str] = None) -> str:
    """One line for stderr: the error's class and message (messages never hold the key), escaped.

    A connection that could not be opened names the host and port it tried (from ``server_url``)."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, UsageError):
        return printable(str(error))
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, APIError) and error.data is None and error.body.strip():
        body = " ".join(error.body.split())  # a proxy's text or HTML answer, key already redacted
        text += f": {body[:200]}{'...' if len(body) > 200 else ''}"
    if isinstance(error, ConnectError) and not isinstance(error, TLSError) and server_url:
        parts = urlsplit(server_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        text += f" (connecting to {parts.hostname}:{port}); {CONNECT_HINT}"
    return printable(text)


def configuration_wrong(error: BaseException) -> bool:
    """A status that says the configuration is wrong, not the event: every request would fail alike."""
    return isinstance(error, APIError) and error.status_code in CONFIGURATION_HINTS


def printable(text: str) -> str:
    """Untrusted text (a server's id or message, a topic, an input line) made safe to print: each
    character that is not printable (control characters, ANSI escapes, line breaks, lone surrogates)
    becomes its Python escape, so it can neither forge an output line nor drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# -- parsers -----------------------------------------------------------------------------


class Command(Protocol):
    """A command module: its name, one-line summary and ``--help`` example, its arguments, ``run``."""

    NAME: str
    SUMMARY: str
    EXAMPLE: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def command_parser(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    command: Command,
) -> argparse.ArgumentParser:
    """A sub-command whose ``--help`` ends with its example; ``command.run(args)`` returns the exit code."""
    parser: argparse.ArgumentParser = commands.add_parser(
        command.NAME, help=command.SUMMARY, description=command.SUMMARY, epilog="example:\n" + command.EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=command.run)
    command.add_arguments(parser)
    return parser


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """``--base-url``, ``--api-key`` and ``--timeout``: flags first, then auth plugins, then the environment."""
    group = parser.add_argument_group("connection")
    group.add_argument("--base-url", metavar="URL",
                       help=f"Outpost API base URL, version path included (default: ${BASE_URL_ENV}, "
                            f"else {DEFAULT_SERVER_URL})")
    group.add_argument("--api-key", metavar="KEY",
                       help=f"admin API key (default: an auth plugin's, e.g. $OUTPOST_API_KEY_FILE with "
                            f"minipub-secretfile, else ${API_KEY_ENV}; prefer those: "
                            "flags are visible to other users in the process list)")
    group.add_argument("--timeout", metavar="SECONDS", type=positive(float), default=10.0,
                       help="per-attempt timeout (default: 10)")


def add_transport_flag(parser: argparse.ArgumentParser) -> None:
    """``--transport NAME``: a built-in or plugin transport (``rabbitmq`` publishes into Outpost's queue)."""
    parser.add_argument("--transport", metavar="NAME",
                        help="a built-in (lean, http.client, urllib) or plugin transport, e.g. httpx, or rabbitmq "
                             "(Outpost's publish queue: no API key needed) (default: the default transport)")


def add_retry_flags(parser: argparse.ArgumentParser, *, max_time: Optional[float], attempts: Optional[int],
                    max_time_help: str = "start no retry after this long") -> None:
    """``--max-time``, ``--max-attempts``, ``--backoff``, ``--backoff-max``."""
    group = parser.add_argument_group("retries (of 408, 409, 429, 500, 502, 503, 504 and connection failures)")
    group.add_argument("--max-time", metavar="SECONDS", type=positive(float), default=max_time,
                       help=f"{max_time_help} (default: {max_time or 'no limit'})")
    group.add_argument("--max-attempts", metavar="N", type=positive(int), default=attempts,
                       help=f"attempts per event, the first included (default: {attempts or 'no limit'})")
    group.add_argument("--backoff", metavar="SECONDS", type=positive(float), default=0.5,
                       help="longest wait before the first retry, doubling after each (default: 0.5)")
    group.add_argument("--backoff-max", metavar="SECONDS", type=positive(float), default=8.0,
                       help="longest wait between two attempts (default: 8)")


def add_sending_flags(parser: argparse.ArgumentParser, *, max_time: Optional[float], attempts: Optional[int],
                      max_time_help: str = "start no retry after this long") -> None:
    """What a command that publishes takes: the connection flags, ``--transport`` and the retry flags."""
    add_connection_flags(parser)
    add_transport_flag(parser)
    add_retry_flags(parser, max_time=max_time, attempts=attempts, max_time_help=max_time_help)


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse ``type=``: ``kind(text)``, which must be greater than 0."""
    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    convert.__name__ = kind.__name__
    return convert


def between(low: float, high: float, what: str) -> Callable[[str], float]:
    """An argparse ``type=``: a float from ``low`` to ``high``; else "'TEXT' is not WHAT"."""
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")  # out of every range
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return convert


# -- configuration -----------------------------------------------------------------------


def check_flags(args: argparse.Namespace) -> None:
    """``--api-key``'s check, naming the flag; everything else (resolving, the URL) is the SDK's."""
    if getattr(args, "api_key", None) is not None:
        check_key(args.api_key, "--api-key")


def retry_config(args: argparse.Namespace) -> RetryConfig:
    """The retry policy the retry flags describe (no ``--max-time``: no deadline)."""
    deadline_ms = None if args.max_time is None else args.max_time * 1000
    backoff = BackoffStrategy(args.backoff * 1000, max(args.backoff, args.backoff_max) * 1000, 2.0, deadline_ms)
    return RetryConfig("backoff", backoff, True, max_attempts=args.max_attempts)


def make_sdk(
    args: argparse.Namespace,
    *,
    wrap_auth: Optional[Callable[[AuthProvider], AuthProvider]] = None,
    sleep: Optional[Callable[[float], None]] = None,
    **options: Any,
) -> SDK:
    """A client configured by the connection flags (and the retry flags when the command has them);
    ``options`` are more ``SDK`` arguments (``retry_budget=None``: no budget).

    The key, the base URL and the transport are resolved once, by ``SDK`` itself (the library's one
    rule: ``--api-key``, then an auth plugin such as minipub-secretfile's ``OUTPOST_API_KEY_FILE``,
    then ``OUTPOST_API_KEY``; ``--base-url``, then ``OUTPOST_API_BASE_URL``, then managed Outpost).
    ``wrap_auth`` puts an object between the client and the provider so resolved (``bulk`` stops its
    attempts there) and ``sleep`` replaces the retry loop's waits: a client on the same parts, read
    back through ``SDK.auth``, ``server_url``, ``transport``, ``timeout_ms``, ``retry_config``, ``retry_budget``.
    """
    check_flags(args)
    if hasattr(args, "max_time"):
        options["retry_config"] = retry_config(args)
    # A named transport (``--transport``) decides whether it needs the key (a queue transport does not).
    sdk = SDK(args.api_key, server_url=args.base_url, timeout_ms=args.timeout * 1000,
              transport=getattr(args, "transport", None), **options)
    args.server_url = sdk.server_url  # for the error line (describe)
    if wrap_auth is None and sleep is None:
        return sdk
    auth = sdk.auth  # the transport passes to the new client, which closes it
    return SDK(auth=None if auth is None else (wrap_auth or _same)(auth), server_url=sdk.server_url,
               transport=sdk.transport, timeout_ms=sdk.timeout_ms, retry_config=sdk.retry_config,
               retry_budget=sdk.retry_budget, sleep=sleep or time.sleep)


def _same(provider: AuthProvider) -> AuthProvider:
    return provider


def read_source(source: str, what: str) -> str:
    """Text from ``-`` (stdin) or a file path; a clear UsageError when it cannot be read."""
    if source == "-":
        return sys.stdin.read()
    try:
        with open(source, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read {what} {source!r}: {reason}") from None


def json_object(text: str, error: Type[MinipubError], invalid: str, not_an_object: str) -> Dict[str, Any]:
    """``text`` parsed as a JSON object; else ``error("INVALID (why)")`` or ``error("NOT_AN_OBJECT, got TYPE")``."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise error(f"{invalid} ({exc})") from None
    if not isinstance(value, dict):
        raise error(f"{not_an_object}, got {type(value).__name__}")
    return value
