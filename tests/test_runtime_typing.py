"""The run-time stand-ins for typing (``minipub/_runtime_typing.py``) answer as typing does.

The same protocols are written twice, once on each ``Protocol``, and every candidate gets the same
``isinstance``/``issubclass`` answer from both; a generic class subscripts to itself.
"""

from __future__ import annotations

import abc
import typing
from typing import Any, List, Tuple

from minipub import _runtime_typing as stand_in
from minipub.auth import AuthProvider, StaticKey
from minipub.transports.base import AsyncTransport, Transport
from minipub.transports.common import IdlePool, PooledTransport
from minipub.transports.lean import LeanTransport


def _protocols(base: Any, checkable: Any) -> Tuple[type, type, type]:
    @checkable
    class Sends(base):  # type: ignore[misc,valid-type]
        def send(self, request: object) -> object: ...

        def close(self) -> None: ...

    @checkable
    class Keyed(base):  # type: ignore[misc,valid-type]
        def api_key(self) -> str: ...

    @checkable
    class Both(Sends, Keyed, base):  # type: ignore[misc,valid-type]
        def extra(self) -> None: ...

    return Sends, Keyed, Both


class Full:
    def send(self, request: object) -> object:
        return request

    def close(self) -> None:
        pass

    def api_key(self) -> str:
        return "k"

    def extra(self) -> None:
        pass


class SendOnly:
    def send(self, request: object) -> object:
        return request


class CloseIsNone(Full):
    close = None  # type: ignore[assignment]


class Private:
    def _send(self) -> None:
        pass


def _candidates(sends: type) -> List[Any]:
    class Explicit(sends):  # type: ignore[misc,valid-type]
        pass  # names the protocol as a base: an ordinary subclass, methods or not

    return [Full(), SendOnly(), CloseIsNone(), Private(), object(), 3, Full, SendOnly, Explicit(), Explicit]


def test_protocols_answer_isinstance_and_issubclass_as_typing_does() -> None:
    theirs = _protocols(typing.Protocol, typing.runtime_checkable)
    ours = _protocols(stand_in.Protocol, stand_in.runtime_checkable)
    for their, our in zip(theirs, ours):
        for candidate, same in zip(_candidates(theirs[0]), _candidates(ours[0])):
            assert isinstance(same, our) == isinstance(candidate, their), (our.__name__, candidate)
            if isinstance(candidate, type):
                assert issubclass(same, our) == issubclass(candidate, their), (our.__name__, candidate)
    # A class that names a protocol as its base is no protocol: nothing conforms to it by shape.
    for sends in (theirs[0], ours[0]):
        assert not isinstance(Full(), _candidates(sends)[-1])


def test_minipubs_protocols_recognise_what_implements_them() -> None:
    transport = LeanTransport()
    try:
        assert isinstance(transport, Transport) and isinstance(transport, AsyncTransport)
        assert issubclass(LeanTransport, Transport)
    finally:
        transport.close()
    assert isinstance(StaticKey("k" * 32), AuthProvider)
    assert not isinstance(SendOnly(), Transport) and not isinstance(object(), AuthProvider)


def test_a_protocol_mixes_with_an_abstract_base_class_as_typings_does() -> None:
    class Closer(abc.ABC):
        @abc.abstractmethod
        def close(self) -> None: ...

    class Both(Transport, Closer):  # a metaclass conflict unless the protocol's is an ABCMeta
        def send(self, request: object) -> object:
            return request

        def close(self) -> None:
            pass

    assert isinstance(Both(), Transport) and isinstance(Both(), Closer)
    assert not isinstance(object(), Both)  # a concrete subclass: no structural check


def test_the_stand_ins_are_what_runs() -> None:
    assert type(Transport) is stand_in._ProtocolMeta
    assert IdlePool[int] is IdlePool and PooledTransport[Any] is PooledTransport
    assert LeanTransport.__mro__[1] is PooledTransport
    assert stand_in.TypeVar("T", bound="X") == "T"
