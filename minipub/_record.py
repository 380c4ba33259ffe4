"""The one base for minipub's value objects: each field written once, as an annotation.

A subclass lists its fields as annotations (with defaults where it has them); the metaclass
makes the slots and a positional-or-keyword ``__init__`` in that order (generated once, as
dataclasses do, without importing dataclasses). ``_check(self)``, if defined, runs after the
fields are set: it validates, and may normalise a field with ``object.__setattr__``.
Instances are immutable, compared and hashed by their values, with a readable repr.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # mypy reads the generated __init__ from the annotations (PEP 681)
    from typing import Any, Callable, ClassVar, Dict, Tuple

    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda cls: cls

__all__ = ["Record"]

_MISSING = object()


@dataclass_transform(frozen_default=True, eq_default=True)
class _RecordType(type):
    def __new__(mcs, name: str, bases: Tuple[type, ...], namespace: Dict[str, Any]) -> _RecordType:
        own = [field for field, kind in namespace.get("__annotations__", {}).items()
               if not field.startswith("_") and not str(kind).startswith("ClassVar")]
        defaults = {field: namespace.pop(field) for field in own if field in namespace}
        namespace["__slots__"] = tuple(own)
        cls = super().__new__(mcs, name, bases, namespace)
        fields = tuple(f for base in reversed(cls.__mro__) for f in getattr(base, "__slots__", ())
                       if isinstance(base, _RecordType))
        cls._fields = fields  # type: ignore[attr-defined]
        if own and "__init__" not in namespace:
            all_defaults = {**getattr(cls, "_defaults", {}), **defaults}
            cls._defaults = all_defaults  # type: ignore[attr-defined]
            cls.__init__ = _make_init(fields, all_defaults, hasattr(cls, "_check"))  # type: ignore[misc]
        return cls


def _make_init(fields: Tuple[str, ...], defaults: Dict[str, Any], check: bool) -> Callable[..., None]:
    """An ``__init__`` for these fields, written out (no loop or keyword dict on each construction)."""
    params = ", ".join(f"{f}=_d[{f!r}]" if f in defaults else f for f in fields)
    body = "".join(f"\n    _set(self, {f!r}, {f})" for f in fields)
    source = f"def __init__(self, {params}):{body}" + ("\n    self._check()" if check else "")
    scope: Dict[str, Any] = {"_d": defaults, "_set": object.__setattr__}
    exec(source, scope)  # our own field names only: identifiers from class annotations
    init: Callable[..., None] = scope["__init__"]
    return init


class Record(metaclass=_RecordType):
    """An immutable value object; see the module docstring."""

    _fields: ClassVar[Tuple[str, ...]] = ()

    def _values(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

