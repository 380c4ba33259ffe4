"""Progress of a long command on stderr: a redrawn bar on a terminal, a few plain lines otherwise."""

from __future__ import annotations

import time
from typing import Callable, Optional, TextIO

__all__ = ["Progress", "format_duration"]

#: Plain (not a terminal) output reports at these fractions of the total: at most three lines.
MILESTONES = (0.25, 0.5, 0.75)
BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class Progress:
    """``update(done, failed)`` as often as you like; it redraws at most every ``interval`` seconds."""

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        tty: Optional[bool] = None,
        quiet: bool = False,
        label: str = "events",
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.quiet = quiet
        self.label = label
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._drawn_at = float("-inf")
        self._milestone = 0
        self._width = 0

    def rate(self, done: int) -> float:
        elapsed = self.clock() - self.started
        return done / elapsed if elapsed > 0 else 0.0

    def line(self, done: int, failed: int) -> str:
        """The bar: done/total, percent, rate, ETA, failures."""
        fraction = done / self.total if self.total else 1.0
        filled = int(BAR_WIDTH * fraction)
        rate = self.rate(done)
        eta = format_duration((self.total - done) / rate) if rate > 0 and done < self.total else "-"
        return (f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done:,}/{self.total:,} {self.label} "
                f"{fraction:4.0%}  {rate:,.0f}/s  ETA {eta}  failures {failed:,}")

    def update(self, done: int, failed: int) -> None:
        if self.quiet:
            return
        now = self.clock()
        if self.tty:
            if now - self._drawn_at >= self.interval:
                self._drawn_at = now
                self._draw(self.line(done, failed))
            return
        fraction = done / self.total if self.total else 1.0
        reached = self._milestone
        while reached < len(MILESTONES) and fraction >= MILESTONES[reached]:
            reached += 1
        if reached > self._milestone and done < self.total:
            self._milestone = reached
            self.stream.write(f"minipub: {done:,}/{self.total:,} {self.label} ({fraction:.0%}), "
                              f"{self.rate(done):,.0f}/s, {failed:,} failed\n")
            self.stream.flush()

    def finish(self, done: int, failed: int) -> None:
        """Draw the last state and end the bar's line (on a terminal)."""
        if self.tty and not self.quiet:
            self._draw(self.line(done, failed))
            self.stream.write("\n")
            self.stream.flush()

    def clear(self) -> None:
        """Blank the bar's line (before printing something else); the next update redraws it."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
            self._drawn_at = float("-inf")

    def _draw(self, text: str) -> None:
        pad = " " * max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + pad)
        self.stream.flush()
