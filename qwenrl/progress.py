"""Progress of a long command, with an estimate of the time left, on stderr.

    progress = Progress("arena auto", total=2000, unit="battles")
    for k in range(2000):
        ...
        progress.update(k + 1)
    # arena auto: 500/2000 battles (25%), 12s elapsed, about 36s left

On a terminal the line redraws in place; otherwise (a log file, CI) a new line is written at
most every ``every_s`` seconds and at the end, so a long run shows signs of life without
flooding the log.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def duration(seconds: float) -> str:
    """``45s``, ``4m05s``, ``1h12m``."""
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def time_left(elapsed: float, done: float, total: float) -> str:
    """``about 4m05s left`` at the pace so far (``…`` before anything is done)."""
    if done <= 0:
        return "time left not known yet"
    return f"about {duration(elapsed / done * max(0.0, total - done))} left"


class Progress:
    """``what: done/total unit (pct%), elapsed, about … left`` on ``stream`` (stderr)."""

    def __init__(self, what: str, total: int, unit: str = "", stream: TextIO | None = None, every_s: float = 15.0,
                 clock=time.perf_counter) -> None:
        self.what, self.total, self.unit = what, max(0, int(total)), unit
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self.clock = clock
        self.start = clock()
        self._last = -float("inf")
        self.done = 0

    def line(self) -> str:
        elapsed = self.clock() - self.start
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        unit = f" {self.unit}" if self.unit else ""
        left = "" if self.done >= self.total else f", {time_left(elapsed, self.done, self.total)}"
        return f"{self.what}: {self.done}/{self.total}{unit}{pct}, {duration(elapsed)} elapsed{left}"

    def update(self, done: int) -> None:
        self.done = min(int(done), self.total) if self.total else int(done)
        now, finished = self.clock(), self.done >= self.total
        if self.live:
            self.stream.write("\r" + self.line() + ("\n" if finished else ""))
        elif finished or now - self._last >= self.every_s:
            self.stream.write(self.line() + "\n")
            self._last = now
        else:
            return
        self.stream.flush()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)
