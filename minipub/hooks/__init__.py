"""Plugins: the hook specifications, the plugin manager and the observed publish path.

``specs`` (the hooks, their kinds, what they see; imports pluggy), ``entrypoints`` (the installed
plugins, found without importing pluggy or importlib.metadata), ``manager`` (a client's plugins,
registered and called through pluggy), ``guard`` (each implementation held to its hook's rule),
``core`` (the core's call as the innermost implementation), ``observed`` (a publish under the
observability hooks). Importing this package imports none of them.
"""
