"""Faults the embedded server injects, as a proxy in front of Outpost would produce them."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["_Fault", "_random_faults", "_fault_name", "_check_header"]


@dataclass(frozen=True)
class _Fault:
    """A queued fault, consumed by one publish request."""

    kind: str  # "fail", "delay" or "drop"
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    seconds: float = 0.0
    accepted: bool = False


def _random_faults(retry_after: float) -> tuple[_Fault, ...]:
    """The mix ``fail_rate`` draws from: retryable failures a client must survive, equally likely."""
    hint = (("Retry-After", str(math.ceil(retry_after))), ("retry-after-ms", str(round(retry_after * 1000))))
    return (
        _Fault("fail", status=503),
        _Fault("fail", status=429, headers=hint),
        _Fault("drop"),
        _Fault("drop", accepted=True),
    )


def _fault_name(fault: _Fault) -> str:
    if fault.kind == "fail":
        return str(fault.status)
    return "drop-after-accept" if fault.accepted else fault.kind


def _check_header(name: str, value: str) -> None:
    for text in (name, value):
        if "\r" in text or "\n" in text:
            raise ValueError("header names and values must not contain CR or LF")
