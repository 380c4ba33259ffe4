"""``python -m minipub demo``: publish one event and print Outpost's answer."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from . import SDK, MinipubError
from .auth import API_KEY_ENV
from .client import BASE_URL_ENV


def _demo(sdk: SDK) -> int:
    with sdk:
        response = sdk.publish.event(
            tenant_id="demo-tenant",
            topic="user.created",
            data={"user_id": "usr_123", "plan": "pro"},
            metadata={"source": "minipub-demo"},
        )
    print(json.dumps({"id": response.id, "duplicate": response.duplicate,
                      "destination_ids": list(response.destination_ids)}))
    return 0


def demo() -> int:
    """Publish to OUTPOST_API_BASE_URL when a key is set, else to an embedded server."""
    if os.environ.get(API_KEY_ENV):
        print(f"publishing to {os.environ.get(BASE_URL_ENV) or 'the managed Outpost'}", file=sys.stderr)
        return _demo(SDK())
    from .testing import OutpostServer

    with OutpostServer(api_key="demo-key") as server:
        print(f"no {API_KEY_ENV} set: publishing to the embedded server at {server.url}", file=sys.stderr)
        code = _demo(SDK("demo-key", server_url=server.url))
        print(f"the server accepted {len(server.events)} event(s)", file=sys.stderr)
        return code


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="minipub", description="Publish events to Hookdeck Outpost.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="publish one event (to an embedded server when no key is set)",
                        description="Example: python -m minipub demo")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return demo()
    except MinipubError as error:
        print(f"minipub: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
