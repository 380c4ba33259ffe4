"""Retry settings under the Outpost SDK's import path: ``from minipub.utils import RetryConfig``."""

from .retry import BackoffStrategy, RetryConfig

__all__ = ["BackoffStrategy", "RetryConfig"]
