"""One console progress line for training, sampling and likelihoods.

On a terminal the line is rewritten in place; otherwise (a log file, a test's captured
output) each update is a line of its own.

Why not tqdm (installed with tensorflow-datasets): what a training log must keep is every
metrics update, one line each. Measured with ``python tools/bench_progress.py --out
tools/bench_progress.md`` (20 updates of a 2000-step run, 50 ms apart): written to a log file,
tqdm produces one physical line of carriage-return-separated states (2 newlines, 12 ``\r``;
``grep loss`` finds 1 line, and its 0.1 s ``mininterval`` never showed 10 of the 20 updates),
this class 20 lines, one per update (0 ``\r``); on a terminal both rewrite one line. tqdm on
terminals only would still need these lines for logs: two writers for one line, so the class
stays (60 lines, no dependency).
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """``label done/total [#####---] 12s extra`` on stdout.

    Args:
      label: what is counted (``"step"``, ``"sample"``, ``"likelihood"``).
      total: the count at completion.
      enabled: print at all (only the main process of a multi-process job prints).

    Example:
      >>> bar = Progress("step", 4, tty=False)
      step 0/4 [------------------------] 0s
      >>> bar.update(4, "loss 0.5")
      step 4/4 [########################] 0s loss 0.5
      >>> bar.close()
    """

    width = 24

    def __init__(self, label: str, total: int, *, enabled: bool = True,
                 tty: bool | None = None):
        self.label, self.total, self.enabled = label, max(int(total), 1), enabled
        self.start = time.perf_counter()
        self.tty = enabled and (sys.stdout.isatty() if tty is None else tty)
        self.update(0)

    def update(self, done: int, extra: str = "") -> None:
        """Shows ``done`` of ``total`` and ``extra`` (metrics)."""
        if not self.enabled:
            return
        filled = int(self.width * min(done, self.total) / self.total)
        elapsed = time.perf_counter() - self.start
        line = (f"{self.label} {done}/{self.total} [{'#' * filled}{'-' * (self.width - filled)}"
                f"] {elapsed:.0f}s {extra}").rstrip()
        sys.stdout.write(("\r" + line) if self.tty else (line + "\n"))
        sys.stdout.flush()

    def message(self, text: str) -> None:
        """A line of its own (after the progress line on a terminal)."""
        if self.enabled:
            sys.stdout.write(("\n" if self.tty else "") + text + "\n")
            sys.stdout.flush()

    def close(self) -> None:
        """Ends the progress line on a terminal."""
        if self.tty:
            sys.stdout.write("\n")
            sys.stdout.flush()
