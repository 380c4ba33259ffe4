"""``minipub demo``: publish one event and print Outpost's answer (the README's first command)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..auth import API_KEY_ENV
from ..client import SDK
from ..errors import ConfigurationError
from .common import EXIT_OK

NAME = "demo"
SUMMARY = "Publish one event (to an embedded server when no key is set)."
EXAMPLE = "  python -m minipub demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """None besides ``--help``."""


def _demo(sdk: SDK) -> int:
    with sdk:
        response = sdk.publish.event(
            tenant_id="demo-tenant",
            topic="user.created",
            data={"user_id": "usr_123", "plan": "pro"},
            metadata={"source": "minipub-demo"},
        )
    print(json.dumps({"id": response.id, "duplicate": response.duplicate,
                      "destination_ids": list(response.destination_ids or ())}))
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Publish where the SDK's configuration points (a key from ``OUTPOST_API_KEY`` or an auth plugin),
    else, when no key is configured, to an embedded server."""
    try:
        sdk = SDK()
    except ConfigurationError:
        if os.environ.get(API_KEY_ENV):
            raise
    else:
        print(f"publishing to {sdk.server_url}", file=sys.stderr)
        return _demo(sdk)
    from ..testing import OutpostServer

    with OutpostServer(api_key="demo-key") as server:
        print(f"no key configured ({API_KEY_ENV}, or an auth plugin): publishing to the embedded server "
              f"at {server.url}", file=sys.stderr)
        code = _demo(SDK("demo-key", server_url=server.url))
        print(f"the server accepted {len(server.events)} event(s)", file=sys.stderr)
        return code
