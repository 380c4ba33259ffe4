"""Event ids come in batches (one os.urandom call for many): each is handed out once, in any thread,
and a forked child never hands out the ids its parent had made."""

from __future__ import annotations

import os
import threading
import uuid
from typing import List

from minipub import _ids
from minipub.request import new_event_id

from .children import exit_code_of_fork


def test_ids_across_batches_are_uuid4_text_and_unique() -> None:
    ids = [new_event_id() for _ in range(3 * _ids.BATCH + 5)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_threads_taking_ids_at_once_never_get_the_same_one() -> None:
    found: List[List[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def take(mine: List[str]) -> None:
        start.wait()
        mine.extend(new_event_id() for _ in range(5 * _ids.BATCH))

    threads = [threading.Thread(target=take, args=(mine,)) for mine in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [text for mine in found for text in mine]
    assert len(every) == 8 * 5 * _ids.BATCH and len(set(every)) == len(every)


def test_a_forked_child_never_hands_out_the_ids_its_parent_made() -> None:
    new_event_id()  # the parent now holds a batch of ids not handed out yet
    assert _ids._ready.ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, " ".join(new_event_id() for _ in range(20)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    assert exit_code_of_fork(pid) == 0
    parent = [new_event_id() for _ in range(20)]
    assert len(child) == 20 and not set(child) & set(parent)
