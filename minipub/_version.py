"""The one version string of minipub."""

__version__ = "0.1.0"
