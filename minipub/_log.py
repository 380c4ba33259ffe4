"""The ``minipub`` logger, imported only when something may be logged."""

from __future__ import annotations

import sys
from typing import Any

NAME = "minipub"


def enabled(level_name: str) -> bool:
    """Whether the minipub logger would emit at this level; False while logging is unused."""
    logging = sys.modules.get("logging")
    if logging is None:
        return False
    return bool(logging.getLogger(NAME).isEnabledFor(getattr(logging, level_name)))


def log(level_name: str, message: str, *args: Any) -> None:
    """Log on the minipub logger (imports logging on first use)."""
    import logging

    logging.getLogger(NAME).log(getattr(logging, level_name), message, *args)
