"""The plugin manager: finding plugins, registering them, and naming the one that failed.

Plugins come from the ``minipub`` entry-point group (loaded once per process, on the first
``SDK()``, only when pluggy is installed; ``MINIPUB_DISABLE_PLUGIN_AUTOLOAD=1`` turns it off)
and from ``SDK(plugins=[...])``. The hooks are specified in ``minipub/hookspecs.py``.
pluggy is imported only when there is a plugin to register.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import ConfigurationError, PluginError, PluginWarning

if TYPE_CHECKING:
    import pluggy

    from .auth import AuthProvider
    from .transports.base import Transport

__all__ = ["Plugins", "load_plugins", "ENTRY_POINT_GROUP", "AUTOLOAD_ENV", "INSTALL_HINT"]

ENTRY_POINT_GROUP = "minipub"
AUTOLOAD_ENV = "MINIPUB_DISABLE_PLUGIN_AUTOLOAD"
INSTALL_HINT = 'pip install "minipub[plugins]"'
#: Observability hooks: wrappers only, run so that a failure never changes a publish.
OBSERVE_HOOKS = ("minipub_publish", "minipub_attempt", "minipub_retry_decision")
_WRAPPER_ONLY = ("minipub_publish", "minipub_attempt")
_CORE = "minipub.core"

_autoload_lock = threading.Lock()
_autoloaded: Optional[List[Tuple[str, object]]] = None


def pluggy_installed() -> bool:
    """Whether pluggy can be imported (checked without importing it)."""
    import sys

    if "pluggy" in sys.modules:
        return True
    from importlib.util import find_spec

    return find_spec("pluggy") is not None


def _entry_points() -> List[Any]:
    from importlib.metadata import entry_points

    found = entry_points()
    group = found.select(group=ENTRY_POINT_GROUP) if hasattr(found, "select") else found.get(ENTRY_POINT_GROUP, ())
    unique: Dict[str, Any] = {}
    for entry_point in group:  # the same distribution can be on sys.path twice: first one wins
        unique.setdefault(entry_point.name, entry_point)
    return list(unique.values())


def _describe(entry_point: Any) -> str:
    dist = getattr(entry_point, "dist", None)
    origin = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"{entry_point.name} = {entry_point.value}{origin}"


def autoloaded() -> List[Tuple[str, object]]:
    """The plugins of the ``minipub`` entry points, as (name, object); loaded once per process.

    Empty without pluggy (nothing is scanned then). A plugin that fails to import raises
    :class:`PluginError` naming its entry point (and is tried again by the next ``SDK()``).
    """
    global _autoloaded
    loaded = _autoloaded
    if loaded is not None:
        return loaded
    with _autoload_lock:
        if _autoloaded is None:
            found: List[Tuple[str, object]] = []
            if pluggy_installed():
                for entry_point in _entry_points():
                    try:
                        found.append((entry_point.name, entry_point.load()))
                    except Exception as exc:
                        raise PluginError(
                            f"the minipub plugin entry point {_describe(entry_point)!r} failed to load: "
                            f"{type(exc).__name__}: {exc} (set {AUTOLOAD_ENV}=1 to skip entry points)",
                            plugin=entry_point.name, hook="load",
                        ) from exc
            _autoloaded = found
        return _autoloaded


def reset_autoload() -> None:
    """Forget the loaded entry points: the next ``SDK()`` scans them again (for tests)."""
    global _autoloaded
    with _autoload_lock:
        _autoloaded = None


def load_plugins(explicit: Optional[Iterable[object]]) -> Optional[Plugins]:
    """The plugins of a new client, or None when there are none (then pluggy is not imported)."""
    if explicit is None:
        chosen: List[object] = []
    elif isinstance(explicit, (str, bytes)) or not isinstance(explicit, Iterable):
        raise ConfigurationError("plugins must be a list of plugin objects (modules or instances)")
    else:
        chosen = list(explicit)
    if any(plugin is None for plugin in chosen):
        raise ConfigurationError("plugins must not contain None")
    if chosen and not pluggy_installed():
        raise ConfigurationError(f"SDK(plugins=...) needs pluggy, which is not installed: {INSTALL_HINT}")
    automatic = [] if os.environ.get(AUTOLOAD_ENV, "").strip() not in ("", "0") else autoloaded()
    if not chosen and not automatic:
        return None
    return Plugins(automatic, chosen)


class _Core:
    """The innermost implementations of the wrapper hooks: run the publish or the request."""

    def minipub_publish(self, publish: Any) -> Any:
        return publish._core()

    def minipub_attempt(self, attempt: Any) -> Any:
        return attempt._core()


def _plugin_name(plugin: object) -> Optional[str]:
    name = getattr(plugin, "minipub_plugin_name", None)
    return name if isinstance(name, str) and name else None


def _label(plugin: object) -> str:
    """A module's name, else the plugin's class (qualified by its module)."""
    name = getattr(plugin, "__name__", None)
    if isinstance(name, str) and name:
        return name
    cls = type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}"


class Plugins:
    """The plugins of one client: a pluggy ``PluginManager`` and how the client calls it.

    ``manager`` is the pluggy manager; ``names`` the registered plugins in call order;
    ``observed`` the observability hooks some plugin implements (the client calls no hook
    when it is empty).
    """

    def __init__(self, automatic: Sequence[Tuple[str, object]], explicit: Sequence[object]) -> None:
        import pluggy

        from . import hookspecs

        if not hasattr(_Core.minipub_attempt, hookspecs.PROJECT + "_impl"):
            for function in (_Core.minipub_publish, _Core.minipub_attempt):
                hookspecs.hookimpl(trylast=True)(function)
        self.manager: pluggy.PluginManager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self.manager.register(_Core(), name=_CORE)
        self.hook = self.manager.hook
        replaced = {_plugin_name(plugin) for plugin in explicit}
        for name, plugin in automatic:
            if name not in replaced:
                self._register(plugin, name)
        for plugin in explicit:
            name = _plugin_name(plugin) or _label(plugin)
            number = 1
            while self.manager.has_plugin(name) and not self.manager.is_registered(plugin):
                number += 1
                name = f"{_label(plugin)}#{number}"
            self._register(plugin, name)
        self.observed = frozenset(
            hook for hook in OBSERVE_HOOKS
            if any(impl.plugin_name != _CORE for impl in getattr(self.hook, hook).get_hookimpls())
        )

    def _register(self, plugin: object, name: str) -> None:
        import pluggy

        try:
            if self.manager.is_registered(plugin):
                return
            self.manager.register(plugin, name=name)
            self.manager.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"minipub plugin {name!r} cannot be registered: {exc}", plugin=name,
                              hook="register") from exc
        for hook in _WRAPPER_ONLY:
            for impl in getattr(self.hook, hook).get_hookimpls():
                if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                    self.manager.unregister(plugin)
                    raise PluginError(f"minipub plugin {name!r}: {hook} must be a wrapper, "
                                      "@hookimpl(wrapper=True) around a single yield", plugin=name, hook=hook)

    @property
    def names(self) -> List[str]:
        """Registered plugin names, the first asked first (the core's own excluded)."""
        return [name for name, _ in reversed(self.manager.list_name_plugin()) if name != _CORE]

    def __repr__(self) -> str:
        return f"Plugins({self.names!r})"

    # -- naming the culprit ----------------------------------------------------------------

    def culprit(self, hook_name: str, exc: BaseException) -> str:
        """The plugin whose hook function raised ``exc`` (the deepest one in its traceback)."""
        impls = {impl.function.__code__: impl.plugin_name for impl in getattr(self.hook, hook_name).get_hookimpls()
                 if impl.plugin_name != _CORE and hasattr(impl.function, "__code__")}
        found: Optional[str] = None
        tb = exc.__traceback__
        while tb is not None:
            found = impls.get(tb.tb_frame.f_code, found)
            tb = tb.tb_next
        if found is None:  # e.g. a wrapper that never yielded: name every candidate
            found = " or ".join(sorted(set(impls.values()))) or "unknown"
        return found

    def _failure(self, hook_name: str, exc: BaseException) -> Tuple[str, str]:
        plugin = self.culprit(hook_name, exc)
        return plugin, f"minipub plugin {plugin!r} raised in hook {hook_name}: {type(exc).__name__}: {exc}"

    def warn(self, hook_name: str, exc: BaseException) -> None:
        """Report a failed observability hook; the publish goes on unchanged."""
        _, message = self._failure(hook_name, exc)
        warnings.warn(PluginWarning(message), stacklevel=2)

    # -- construction hooks ------------------------------------------------------------------

    def _first(self, hook_name: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.hook, hook_name)(**kwargs)
        except Exception as exc:
            plugin, message = self._failure(hook_name, exc)
            raise PluginError(message, plugin=plugin, hook=hook_name) from exc

    def _wrong(self, hook_name: str, result: object, wanted: str) -> PluginError:
        impls = getattr(self.hook, hook_name).get_hookimpls()
        plugin = " or ".join(sorted({impl.plugin_name for impl in impls}))
        return PluginError(f"minipub plugin {plugin!r}: {hook_name} returned {type(result).__name__}, "
                           f"not {wanted}", plugin=plugin, hook=hook_name)

    def transport(self, name: Optional[str], options: Dict[str, Any]) -> Optional[Transport]:
        """The first transport a plugin builds for this name (None: the caller chose none)."""
        result = self._first("minipub_transport", name=name, options=dict(options))
        if result is not None and not (callable(getattr(result, "send", None))
                                       and callable(getattr(result, "close", None))):
            raise self._wrong("minipub_transport", result, "a transport with send() and close()")
        return result  # type: ignore[no-any-return]

    def auth(self, server_url: str) -> Optional[AuthProvider]:
        """The first key provider a plugin supplies, or None."""
        result = self._first("minipub_auth", server_url=server_url)
        if result is not None and not (callable(getattr(result, "api_key", None))
                                       and callable(getattr(result, "refresh", None))):
            raise self._wrong("minipub_auth", result, "an auth provider with api_key() and refresh()")
        return result  # type: ignore[no-any-return]
