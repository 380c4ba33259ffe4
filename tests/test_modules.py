"""A module another thread is still importing is waited for, never used half-initialized."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from minipub._modules import loaded_module


def test_a_module_being_imported_is_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "minipub_slow_module.py").write_text(
        "import time\nSTARTED = True\ntime.sleep(0.5)\nREADY = 'yes'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importer = threading.Thread(target=__import__, args=("minipub_slow_module",))
    importer.start()
    try:
        deadline = time.monotonic() + 5
        while "minipub_slow_module" not in sys.modules and time.monotonic() < deadline:
            time.sleep(0.001)
        half = sys.modules["minipub_slow_module"]
        assert not hasattr(half, "READY")  # what a plain sys.modules lookup would have used
        module = loaded_module("minipub_slow_module")
        assert module is not None and module.READY == "yes"
    finally:
        importer.join()
        sys.modules.pop("minipub_slow_module", None)


def test_a_module_nobody_imported_is_not_imported() -> None:
    assert loaded_module("minipub_never_imported_module") is None
    assert "minipub_never_imported_module" not in sys.modules
