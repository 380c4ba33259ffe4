"""Running the one publish path synchronously: it is written once, as coroutines.

The sync path hands it callables wrapped by :func:`ready` (their awaits finish at once), and
:func:`run_sync` steps the coroutine to its end in the calling thread: no event loop, no thread.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Awaitable, Callable, Coroutine, TypeVar

    T = TypeVar("T")

__all__ = ["run_sync", "ready"]


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """The coroutine's result (or its exception), run to the end here."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("the sync publish path awaited something that suspends (an async transport or sleep?)")


def ready(call: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``call`` as a coroutine function that never suspends."""

    async def awaited(*args: Any, **kwargs: Any) -> T:
        return call(*args, **kwargs)

    return awaited
