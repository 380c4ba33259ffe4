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
#: How each hook is called: "first" (first non-None result), "wrapper" (around the core), "each".
HOOK_KINDS = {
    "minipub_transport": "first",
    "minipub_auth": "first",
    "minipub_publish": "wrapper",
    "minipub_attempt": "wrapper",
    "minipub_retry_decision": "each",
}
OBSERVE_HOOKS = ("minipub_publish", "minipub_attempt", "minipub_retry_decision")

_autoload_lock = threading.Lock()
_autoloaded: Optional[List[Tuple[str, object]]] = None
_shared: Optional[Tuple[List[Tuple[str, object]], Plugins]] = None


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
    if chosen:
        return Plugins(automatic, chosen)
    global _shared
    with _autoload_lock:  # the entry points alone: one Plugins for every such client (registering costs ~1 ms)
        if _shared is None or _shared[0] is not automatic:
            _shared = (automatic, Plugins(automatic, ()))
        return _shared[1]


class Impl:
    """One plugin's implementation of one hook, called with the arguments it names."""

    __slots__ = ("argnames", "function", "kwargnames", "plugin")

    def __init__(self, plugin: str, function: Any, argnames: Sequence[str], kwargnames: Sequence[str]) -> None:
        self.plugin = plugin
        self.function = function
        self.argnames = tuple(argnames)
        self.kwargnames = tuple(kwargnames)

    def __call__(self, kwargs: Dict[str, Any]) -> Any:
        return self.function(*[kwargs[name] for name in self.argnames],
                             **{name: kwargs[name] for name in self.kwargnames if name in kwargs})

    def failed(self, hook_name: str, exc: BaseException) -> str:
        """The message naming this plugin, the hook and the error."""
        return f"minipub plugin {self.plugin!r} raised in hook {hook_name}: {type(exc).__name__}: {exc}"

    def warn(self, hook_name: str, exc: BaseException) -> None:
        """Report a failed observability hook; the publish goes on unchanged."""
        warnings.warn(PluginWarning(self.failed(hook_name, exc)), stacklevel=3)


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

    pluggy finds, validates and orders the hook implementations (``tryfirst``/``trylast``,
    the last registered first); minipub calls them itself, one at a time, so that each
    failure names its plugin and a failing observability hook never affects the others.
    ``observed`` holds the observability hooks some plugin implements: when it is empty
    the client calls no hook at all.
    """

    def __init__(self, automatic: Sequence[Tuple[str, object]], explicit: Sequence[object]) -> None:
        import pluggy

        from . import hookspecs

        self.manager: pluggy.PluginManager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
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
        self.impls: Dict[str, List[Impl]] = {
            hook: [Impl(impl.plugin_name, impl.function, impl.argnames, impl.kwargnames)
                   for impl in reversed(getattr(self.manager.hook, hook).get_hookimpls())]
            for hook in HOOK_KINDS
        }
        self.observed = frozenset(hook for hook in OBSERVE_HOOKS if self.impls[hook])

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
        for hook, kind in HOOK_KINDS.items():
            for impl in getattr(self.manager.hook, hook).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                if kind == "wrapper" and not impl.wrapper:
                    problem = "must be a wrapper: @hookimpl(wrapper=True) around a single yield"
                elif kind != "wrapper" and (impl.wrapper or impl.hookwrapper):
                    problem = "must be a plain @hookimpl, not a wrapper"
                else:
                    continue
                self.manager.unregister(plugin)
                raise PluginError(f"minipub plugin {name!r}: {hook} {problem}", plugin=name, hook=hook)

    @property
    def names(self) -> List[str]:
        """Registered plugin names, the first asked first."""
        return [name for name, _ in reversed(self.manager.list_name_plugin())]

    def __repr__(self) -> str:
        return f"Plugins({self.names!r})"

    # -- construction hooks ------------------------------------------------------------------

    def _first(self, hook_name: str, wanted: str, methods: Tuple[str, ...], **kwargs: Any) -> Any:
        for impl in self.impls[hook_name]:
            try:
                result = impl(kwargs)
            except Exception as exc:
                raise PluginError(impl.failed(hook_name, exc), plugin=impl.plugin, hook=hook_name) from exc
            if result is None:
                continue
            if not all(callable(getattr(result, method, None)) for method in methods):
                raise PluginError(f"minipub plugin {impl.plugin!r}: {hook_name} returned {type(result).__name__}, "
                                  f"not {wanted}", plugin=impl.plugin, hook=hook_name)
            return result
        return None

    def transport(self, name: Optional[str], options: Dict[str, Any]) -> Optional[Transport]:
        """The first transport a plugin builds for this name (None: the caller chose none)."""
        result: Optional[Transport] = self._first("minipub_transport", "a transport with send() and close()",
                                                  ("send", "close"), name=name, options=dict(options))
        return result

    def auth(self, server_url: str) -> Optional[AuthProvider]:
        """The first key provider a plugin supplies, or None."""
        result: Optional[AuthProvider] = self._first("minipub_auth", "an auth provider with api_key() and refresh()",
                                                     ("api_key", "refresh"), server_url=server_url)
        return result
