"""The ``minipub`` logger, imported only when something may be logged."""

from __future__ import annotations

from ._modules import loaded_module

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

NAME = "minipub"
_LEVELS: Dict[str, int] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_logger: Optional[Any] = None  # the minipub logger, looked up once logging is loaded


def enabled(level_name: str) -> bool:
    """Whether the minipub logger would emit at this level; False while logging is unused."""
    global _logger
    logger = _logger
    if logger is None:
        logging = loaded_module("logging")
        if logging is None:
            return False
        logger = _logger = logging.getLogger(NAME)
    return bool(logger.isEnabledFor(_LEVELS[level_name]))


def log(level_name: str, message: str, *args: Any) -> None:
    """Log on the minipub logger (imports logging on first use)."""
    import logging

    logging.getLogger(NAME).log(getattr(logging, level_name), message, *args)
