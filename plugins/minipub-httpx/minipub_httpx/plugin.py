"""The ``httpx`` entry point: ``SDK(transport="httpx")``, and the default transport once installed.

To keep a built-in transport while this plugin is installed, name it (``transport="lean"``)
(or set ``MINIPUB_HTTPX_DEFAULT=0`` to stop it claiming the default).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from minipub.hookspecs import hookimpl

from .transport import HttpxTransport

__all__ = ["minipub_transport", "NAME", "DEFAULT_ENV"]

NAME = "httpx"
DEFAULT_ENV = "MINIPUB_HTTPX_DEFAULT"
#: The client options this transport understands (others are ignored, as the hook asks).
OPTIONS = ("ssl_context", "ca_file", "client_cert", "client_key", "proxy", "max_body")


@hookimpl
def minipub_transport(name: Optional[str], options: Dict[str, Any]) -> Optional[HttpxTransport]:
    """An ``HttpxTransport`` for ``transport="httpx"``, or when no transport was chosen."""
    claims_default = os.environ.get(DEFAULT_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
    if name == NAME or (name is None and claims_default):
        return HttpxTransport(**{key: options[key] for key in OPTIONS if key in options})
    return None
