"""Each hook implementation wrapped when it is registered: pluggy orders and calls it, the guard names it.

* A construction hook (kind ``first``): anything it raises becomes a :class:`PluginError` naming
  the plugin and the hook, and so does a result that is not what the hook returns.
* An observability hook: whatever the implementation does (raise before or after its yield,
  yield twice or never, swallow the error, return or force another outcome), the call goes on
  with the core's own outcome, every other implementation is still called, and a
  :class:`PluginWarning` names the plugin and the hook.

pluggy keeps the wrapper kind it read from the marker (plain, ``wrapper=True``,
``hookwrapper=True``), so each guard is of the same kind as what it guards.
"""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING, Any, Callable, Generator, Optional, Tuple

from ..errors import PluginError, PluginWarning

if TYPE_CHECKING:
    import pluggy

__all__ = ["guard"]

_Gen = Generator[None, Any, Any]
_Returns = Tuple[str, Tuple[str, ...]]
_NO_YIELD = "the wrapper returned without yielding"
_TWO_YIELDS = "the wrapper yielded more than once"


class _Rule:
    """What happens when one plugin's implementation of one hook fails or returns."""

    __slots__ = ("hook", "observing", "plugin", "returns")

    def __init__(self, plugin: str, hook: str, observing: bool, returns: Optional[_Returns]) -> None:
        self.plugin = plugin
        self.hook = hook
        self.observing = observing
        self.returns = returns

    def failed(self, exc: BaseException) -> None:
        """Warn (observability: the call goes on), or raise the PluginError naming the plugin."""
        message = f"minipub plugin {self.plugin!r} raised in hook {self.hook}: {type(exc).__name__}: {exc}"
        if self.observing:
            warnings.warn(PluginWarning(message), stacklevel=3)
            return
        raise PluginError(message, plugin=self.plugin, hook=self.hook) from exc

    def checked(self, result: Any) -> Any:
        """A construction hook's result, if it is None or what the hook returns."""
        if result is None or self.returns is None:
            return result
        wanted, methods = self.returns
        if not all(callable(getattr(result, method, None)) for method in methods):
            raise PluginError(f"minipub plugin {self.plugin!r}: {self.hook} returned {type(result).__name__}, not "
                              f"{wanted} with {' and '.join(m + '()' for m in methods)}", plugin=self.plugin,
                              hook=self.hook)
        return result

    def enter(self, wrapper: _Gen) -> Optional[_Gen]:
        """Run a wrapper to its yield; None when it failed to get there (reported)."""
        try:
            next(wrapper)
            return wrapper
        except StopIteration:
            self.failed(RuntimeError(_NO_YIELD))
        except Exception as exc:
            self.failed(exc)
        return None

    def leave(self, wrapper: Optional[_Gen], send: Any, error: Optional[BaseException],
              passed_on: Optional[BaseException] = None) -> Tuple[bool, Any]:
        """Resume a wrapper with the result (``send``) or ``error``: (it ended well, what it returned).
        The error it is given (or ``passed_on``, an old-style outcome's), raised again, is not its own failure."""
        if wrapper is None:
            return False, None
        try:
            if error is not None:
                wrapper.throw(error)
            else:
                wrapper.send(send)
        except StopIteration as stop:
            return True, stop.value
        except Exception as exc:
            if exc is not (error or passed_on):
                self.failed(exc)
            elif not self.observing:
                raise
            return False, None
        wrapper.close()
        self.failed(RuntimeError(_TWO_YIELDS))
        return False, None


def guard(impl: pluggy.HookImpl, hook: str, kind: str, returns: Optional[_Returns]) -> Callable[..., Any]:
    """The function pluggy calls for ``impl`` (same arguments, same wrapper kind)."""
    function: Callable[..., Any] = impl.function
    rule = _Rule(impl.plugin_name, hook, kind != "first", returns)
    make = _old_style if impl.hookwrapper else _new_style if impl.wrapper else _plain
    return functools.wraps(function)(make(function, rule))  # ``__wrapped__``: what the plugin wrote


def _plain(function: Callable[..., Any], rule: _Rule) -> Callable[..., Any]:
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            result = function(*args, **kwargs)
        except Exception as exc:
            rule.failed(exc)
            return None
        return None if rule.observing else rule.checked(result)

    return plain


def _new_style(function: Callable[..., _Gen], rule: _Rule) -> Callable[..., _Gen]:
    def new_style(*args: Any, **kwargs: Any) -> _Gen:
        wrapper = rule.enter(function(*args, **kwargs))
        try:
            result = yield
        except BaseException as error:
            ended, value = rule.leave(wrapper, None, error)
            if rule.observing or not ended:
                raise
            return rule.checked(value)  # a construction hook's wrapper may turn an error into a result
        ended, value = rule.leave(wrapper, result, None)
        if rule.observing or not ended:
            return result
        return rule.checked(value)

    return new_style


def _old_style(function: Callable[..., _Gen], rule: _Rule) -> Callable[..., _Gen]:
    import pluggy

    def old_style(*args: Any, **kwargs: Any) -> _Gen:
        wrapper = rule.enter(function(*args, **kwargs))
        outcome = yield
        if rule.observing:  # a copy: what the wrapper forces on it changes nothing
            rule.leave(wrapper, pluggy.Result.from_call(outcome.get_result), None, outcome.exception)
            return
        try:
            rule.leave(wrapper, outcome, None, outcome.exception)
            if outcome.exception is None:
                rule.checked(outcome.get_result())
        except PluginError as exc:
            outcome.force_exception(exc)

    return old_style
