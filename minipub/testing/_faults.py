"""Faults the embedded server injects, as a proxy in front of Outpost would produce them: queued
(``fail_next``, ``delay_next``, ``drop_next``) or drawn at random for a share of publishes
(``fail_rate``), and the answer a ``fail`` fault gives.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, Mapping, Optional, Tuple, Union

from ._routes import JSON_CT, TEXT_CT, Result, error_result

__all__ = ["Fault", "FaultInjector", "fault_result"]


@dataclass(frozen=True)
class Fault:
    """A queued fault, consumed by one publish request."""

    kind: str  # "fail", "delay" or "drop"
    status: int = 0
    headers: Tuple[Tuple[str, str], ...] = ()
    body: Optional[bytes] = None
    seconds: float = 0.0
    accepted: bool = False

    @property
    def name(self) -> str:
        """How ``injected_faults`` counts it: "503", "429", "drop", "drop-after-accept"."""
        if self.kind == "fail":
            return str(self.status)
        return "drop-after-accept" if self.accepted else self.kind


def _random_faults(retry_after: float) -> Tuple[Fault, ...]:
    """The mix ``fail_rate`` draws from: retryable failures a client must survive, equally likely."""
    hint = (("Retry-After", str(math.ceil(retry_after))), ("retry-after-ms", str(round(retry_after * 1000))))
    return (Fault("fail", status=503), Fault("fail", status=429, headers=hint), Fault("drop"),
            Fault("drop", accepted=True))


def _rate(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError("fail_rate must be between 0 and 1")
    return float(value)


def _no_crlf(name: str, value: str) -> None:
    for text in (name, value):
        if "\r" in text or "\n" in text:
            raise ValueError("header names and values must not contain CR or LF")


class FaultInjector:
    """The queue of programmed faults and the random draws; thread-safe."""

    def __init__(self, fail_rate: float = 0.0, retry_after: float = 1.0, seed: Optional[int] = None) -> None:
        self._fail_rate = _rate(fail_rate)
        if not 0.0 <= retry_after <= 3600.0:
            raise ValueError("retry_after must be between 0 and 3600 seconds")
        self._lock = threading.Lock()
        self._queue: Deque[Fault] = deque()
        self._mix = _random_faults(retry_after)
        self._random = random.Random(seed)
        self._injected: Dict[str, int] = {}

    @property
    def fail_rate(self) -> float:
        with self._lock:
            return self._fail_rate

    @fail_rate.setter
    def fail_rate(self, value: float) -> None:
        rate = _rate(value)
        with self._lock:
            self._fail_rate = rate

    @property
    def injected(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._injected)

    def fail(self, status: int, times: int, headers: Optional[Mapping[str, str]],
             body: Union[bytes, str, None]) -> None:
        if not 100 <= status <= 599:
            raise ValueError("status must be between 100 and 599")
        pairs = tuple((str(k), str(v)) for k, v in (headers or {}).items())
        for name, value in pairs:
            _no_crlf(name, value)
        raw = body.encode("utf-8") if isinstance(body, str) else body
        self.queue(Fault("fail", status=status, headers=pairs, body=raw), times)

    def delay(self, seconds: float, times: int) -> None:
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self.queue(Fault("delay", seconds=float(seconds)), times)

    def queue(self, fault: Fault, times: int) -> None:
        if times < 0:
            raise ValueError("times must be >= 0")
        with self._lock:
            self._queue.extend([fault] * times)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()

    def pop(self) -> Optional[Fault]:
        """The fault for the next publish: a queued one, else one drawn at ``fail_rate``, else None."""
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self._fail_rate and self._random.random() < self._fail_rate:
                fault = self._random.choice(self._mix)
                self._injected[fault.name] = self._injected.get(fault.name, 0) + 1
                return fault
            return None


def fault_result(fault: Fault) -> Result:
    """The answer of a ``fail`` fault: the default JSON body, or the given one (text unless said)."""
    headers = list(fault.headers)
    if fault.body is None:
        body, content_type = error_result(fault.status, "injected failure")[1], JSON_CT
    else:
        body, content_type = fault.body, TEXT_CT
    if not any(n.lower() == "content-type" for n, _ in headers):
        headers.append(content_type)
    if 100 <= fault.status < 200 or fault.status in (204, 304):
        headers = [(n, v) for n, v in headers if n.lower() != "content-type"]
    return fault.status, body, headers
