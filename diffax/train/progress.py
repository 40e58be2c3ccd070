"""One console progress line for training, sampling and likelihoods.

On a terminal the line is rewritten in place; otherwise (a log file, a test's captured
output) each update is a line of its own.
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
