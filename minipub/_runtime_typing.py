"""What ``typing`` would give at run time, for the four names the first publish's modules execute:
``Generic``, ``TypeVar``, ``Protocol`` and ``runtime_checkable``. A fresh process's first publish
never imports ``typing`` (1-2 ms of its start; ``tests/test_startup_imports.py``). Type checkers
read ``typing``'s own: each importer takes these in the ``else`` of its ``if TYPE_CHECKING:``.

* ``class Pool(Generic[T])``: subscripting gives the class itself (``Pool[Conn]`` is ``Pool``).
* ``class Transport(Protocol)``: ``isinstance``/``issubclass`` are structural, as with
  ``@runtime_checkable``: every public name the protocol declares is present (and a method is not
  None). A class that names the protocol among its bases is an ordinary subclass of it, and a
  protocol mixes with abstract base classes (its metaclass is an ``ABCMeta``).
"""

from __future__ import annotations

from abc import ABCMeta  # loaded with io at every start

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, FrozenSet, Tuple, Type

__all__ = ["Generic", "TypeVar", "Protocol", "runtime_checkable"]


class Generic:
    __slots__ = ()

    def __class_getitem__(cls, params: object) -> type:
        return cls


def TypeVar(name: str, *constraints: object, **options: object) -> str:
    return name


class _ProtocolMeta(ABCMeta):  # as typing's: a protocol mixes with abstract base classes
    _members: FrozenSet[str]
    _is_protocol: bool

    def __new__(mcs, name: str, bases: Tuple[type, ...], namespace: dict[str, Any]) -> _ProtocolMeta:
        cls = super().__new__(mcs, name, bases, namespace)
        cls._is_protocol = any(base is Protocol for base in bases) or not bases
        own = frozenset(name for name in namespace if not name.startswith("_"))
        parents = [base for base in bases if isinstance(base, _ProtocolMeta) and base._is_protocol]
        cls._members = own.union(*(base._members for base in parents))
        return cls

    def __instancecheck__(cls, obj: object) -> bool:
        if super().__instancecheck__(obj):
            return True
        return cls._is_protocol and _conforms(cls, obj)

    def __subclasscheck__(cls, other: Type[Any]) -> bool:
        if super().__subclasscheck__(other):
            return True
        return cls._is_protocol and isinstance(other, type) and _conforms(cls, other)


def _conforms(protocol: _ProtocolMeta, obj: object) -> bool:
    return all(getattr(obj, name, None) is not None for name in protocol._members)


class Protocol(metaclass=_ProtocolMeta):
    __slots__ = ()


def runtime_checkable(cls: Type[Any]) -> Type[Any]:
    """Every stand-in protocol is checkable already."""
    return cls
