"""The command line's pure parts, in process: bulk's line rules and ids, the progress display."""

from __future__ import annotations

import io
import json
from typing import Any, Dict, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minipub.cli.bulk import FIELDS, LineError, default_rejects_path, derived_id, parse_line
from minipub.cli.progress import Progress, format_duration

texts = st.text(max_size=200)


@given(st.integers(1, 10**9), texts, st.integers(1, 10**9), texts)
def test_derived_ids_are_stable_and_tell_lines_apart(n1: int, t1: str, n2: int, t2: str) -> None:
    assert derived_id(n1, t1) == derived_id(n1, t1)
    assert (derived_id(n1, t1) == derived_id(n2, t2)) == ((n1, t1) == (n2, t2))
    assert len(derived_id(n1, t1)) == len("bulk-") + 32


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=10)


@given(st.dictionaries(st.text(max_size=12), json_values, max_size=8), st.integers(1, 10**6))
def test_a_line_is_accepted_exactly_when_its_fields_are_known_and_complete(line: Dict[str, Any], number: int) -> None:
    text = json.dumps(line)
    fields = {k: v for k, v in line.items() if not k.startswith("_")}
    acceptable = set(fields) <= set(FIELDS) and {"tenant_id", "topic", "data"} <= set(fields)
    try:
        parsed = parse_line(number, text)
    except LineError:
        assert not acceptable
        return
    assert acceptable
    assert parsed["id"] == (fields.get("id") or derived_id(number, text))
    assert {k: v for k, v in parsed.items() if k != "id"} == {k: v for k, v in fields.items() if k != "id"}


@pytest.mark.parametrize("text", ["not json", "[1]", '"x"', "null"])
def test_a_line_that_is_not_an_object_is_refused(text: str) -> None:
    with pytest.raises(LineError):
        parse_line(1, text)


def test_default_rejects_path() -> None:
    assert str(default_rejects_path("data/events.ndjson")) == "data/events.rejects.ndjson"
    assert str(default_rejects_path("events")) == "events.rejects.ndjson"
    assert str(default_rejects_path("-")) == "stdin.rejects.ndjson"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@given(st.integers(0, 10_000), st.lists(st.integers(0, 10_000), max_size=60))
def test_plain_progress_prints_at_most_three_lines(total: int, steps: List[int]) -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(total, out, tty=False, clock=clock)
    done = 0
    for step in steps:
        clock.now += 0.5
        done = min(total, done + step)
        progress.update(done, 0)
    progress.finish(done, 0)
    lines = out.getvalue().splitlines()
    assert len(lines) <= 3 and "\r" not in out.getvalue()
    assert all(line.startswith("minipub: ") for line in lines)


def test_the_bar_on_a_terminal() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(200, out, tty=True, clock=clock)
    clock.now = 1.0
    progress.update(50, 2)
    progress.update(60, 2)  # within the redraw interval: not drawn
    clock.now = 2.0
    progress.update(100, 3)
    progress.finish(200, 3)
    frames = out.getvalue().split("\r")[1:]
    assert frames[0].startswith("[######..................] 50/200 events  25%  50/s  ETA 3s  failures 2")
    assert frames[1].startswith("[############............] 100/200 events  50%  50/s  ETA 2s  failures 3")
    assert frames[2].startswith("[########################] 200/200 events 100%") and frames[2].endswith("\n")
    assert len(frames) == 3


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 42.4, 185, 3725, -3)] == ["0s", "42s", "3m05s", "1h02m", "0s"]
