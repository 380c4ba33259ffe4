"""Background publishing (``minipub.background``): the public names, where they always were."""

from __future__ import annotations

from .background.publisher import Publisher
from .background.pump import DEDUP_WINDOW_SECONDS
from .background.tracker import ErrorHandler, PublisherStats

__all__ = ["Publisher", "PublisherStats", "ErrorHandler", "DEDUP_WINDOW_SECONDS"]
