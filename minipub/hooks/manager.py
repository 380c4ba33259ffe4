"""The plugin manager: registering a client's plugins with pluggy, and naming the one that failed.

Plugins come from the ``minipub`` entry points (``entrypoints.py``) and from ``SDK(plugins=[...])``.
pluggy validates, orders and calls the implementations; each one is guarded at registration
(``guard.py``), and the core's own call is the innermost implementation of the wrapper hooks.
pluggy is imported only when there is a plugin to register.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from ..errors import ConfigurationError, PluginError
from .entrypoints import automatic as entry_point_plugins
from .entrypoints import pluggy_installed

if TYPE_CHECKING:
    import pluggy

    from ..auth import AuthProvider
    from ..transports.base import Transport

__all__ = ["Plugins", "Implementation", "load_plugins", "INSTALL_HINT"]

INSTALL_HINT = 'pip install "minipub[plugins]"'
_CORE_NAME = "minipub.core"  # the core's call (``core.py``), registered when a wrapper hook has a plugin

_lock = threading.Lock()
_shared: Optional[Tuple[List[Tuple[str, object]], Plugins]] = None


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
    automatic = entry_point_plugins()
    if not chosen and not automatic:
        return None
    if chosen:
        return Plugins(automatic, chosen)
    global _shared
    with _lock:  # the entry points alone: one Plugins for every such client (registering costs ~1 ms)
        if _shared is None or _shared[0] is not automatic:
            _shared = (automatic, Plugins(automatic, ()))
        return _shared[1]


class Implementation(NamedTuple):
    """One plugin's implementation of a hook."""

    plugin: str
    function: Callable[..., Any]


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
    """The plugins of one client: a pluggy ``PluginManager``, and the hooks the client calls through it.

    ``hook`` is the manager's hook relay (``plugins.hook.minipub_attempt(...)``); ``observed``
    holds the observability hooks some plugin implements: when it is empty the client calls
    no hook at all.
    """

    def __init__(self, automatic: Sequence[Tuple[str, object]], explicit: Sequence[object]) -> None:
        import pluggy

        from . import core, specs

        self._specs = specs
        self.manager: pluggy.PluginManager = pluggy.PluginManager(specs.PROJECT)
        self.manager.add_hookspecs(specs.SPECS)
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
        self.hook = self.manager.hook
        self.observed: FrozenSet[str] = frozenset(hook for hook in specs.OBSERVE_HOOKS if self._impls(hook))
        if any(specs.HOOK_KINDS[hook] == "wrapper" for hook in self.observed):  # else never called: not registered
            self.manager.register(core, name=_CORE_NAME)

    def _impls(self, hook: str) -> List[pluggy.HookImpl]:
        caller: pluggy.HookCaller = getattr(self.manager.hook, hook)
        return caller.get_hookimpls()

    def _register(self, plugin: object, name: str) -> None:
        import pluggy

        from .guard import guard

        try:
            if self.manager.is_registered(plugin):
                return
            self.manager.register(plugin, name=name)
            self.manager.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"minipub plugin {name!r} cannot be registered: {exc}", plugin=name,
                              hook="register") from exc
        mine = [(hook, kind, impl) for hook, kind in self._specs.HOOK_KINDS.items()
                for impl in self._impls(hook) if impl.plugin is plugin]
        for hook, kind, impl in mine:
            if kind == "wrapper" and not (impl.wrapper or impl.hookwrapper):
                self.manager.unregister(plugin)
                raise PluginError(f"minipub plugin {name!r}: {hook} must be a wrapper: @hookimpl(wrapper=True) "
                                  "around a single yield", plugin=name, hook=hook)
        for hook, kind, impl in mine:
            # pluggy keeps calling this HookImpl, in its place; only the function it calls is guarded.
            setattr(impl, "function", guard(impl, hook, kind, self._specs.RETURNS.get(hook)))  # noqa: B010

    @property
    def impls(self) -> Dict[str, List[Implementation]]:
        """Each hook's implementations (plugin name, function as written), the first called first."""
        return {hook: [Implementation(impl.plugin_name, getattr(impl.function, "__wrapped__", impl.function))
                       for impl in reversed(self._impls(hook)) if impl.plugin_name != _CORE_NAME]
                for hook in self._specs.HOOK_KINDS}

    @property
    def names(self) -> List[str]:
        """Registered plugin names, the first asked first."""
        return [name for name, _ in reversed(self.manager.list_name_plugin()) if name != _CORE_NAME]

    def __repr__(self) -> str:
        return f"Plugins({self.names!r})"

    def transport(self, name: Optional[str], options: Dict[str, Any]) -> Optional[Transport]:
        """The first transport a plugin builds for this name (None: the caller chose none)."""
        result: Optional[Transport] = self.hook.minipub_transport(name=name, options=dict(options))
        return result

    def auth(self, server_url: str) -> Optional[AuthProvider]:
        """The first key provider a plugin supplies, or None."""
        result: Optional[AuthProvider] = self.hook.minipub_auth(server_url=server_url)
        return result
