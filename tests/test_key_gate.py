"""The key gate on its own: closed by a refusal, one probe per pause, opened by any server answer."""

from __future__ import annotations

import threading
import time
from typing import List, Optional, Tuple

from minipub.background.gate import KeyGate
from minipub.errors import ConnectError, InternalServerError, UnauthorizedError

REFUSED = UnauthorizedError("refused", status_code=401)


def test_a_refusal_closes_the_gate_until_the_pause_has_passed() -> None:
    pauses: List[int] = []
    gate = KeyGate(lambda n: pauses.append(n) or 0.2)
    assert gate.admit() is None
    gate.sent(None)  # accepted sends change nothing
    gate.sent(REFUSED)
    closed = gate.admit()
    assert closed is not None and closed[0] is REFUSED and closed[1] > time.time()
    time.sleep(0.25)
    assert gate.admit() is None  # the probe
    gate.sent(UnauthorizedError("again", status_code=403))
    assert gate.admit() is not None and pauses == [1, 2]  # refused again: a longer pause in a row


def test_while_a_probe_is_out_the_others_wait_for_its_answer() -> None:
    gate = KeyGate(lambda n: 0.0)
    gate.sent(REFUSED)
    assert gate.admit() is None  # the pause (0 s) is over: this one probes
    answers: List[Optional[Tuple[UnauthorizedError, float]]] = []
    waiter = threading.Thread(target=lambda: answers.append(gate.admit()))
    waiter.start()
    time.sleep(0.05)
    assert answers == []  # held until the probe's answer
    gate.sent(InternalServerError("503", status_code=503))  # the server answered: it took the key
    waiter.join(5)
    assert answers == [None] and gate.admit() is None


def test_a_probe_without_an_answer_leaves_the_gate_closed_for_the_next_probe() -> None:
    gate = KeyGate(lambda n: 0.0)
    gate.sent(REFUSED)
    assert gate.admit() is None
    gate.sent(ConnectError("refused connection"))  # no answer: the key's state is still unknown
    assert gate.admit() is None  # the next send probes again (the pause is 0 s here)
    gate.sent(REFUSED)
    time.sleep(0.01)
    assert gate.admit() is None
    gate.sent(None)
    assert gate.admit() is None and gate.admit() is None  # open
